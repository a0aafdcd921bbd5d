#!/usr/bin/env bash
# Property-based API tests: schemathesis (PyPI, pinned) against the live server, driven by the
# document the server itself serves at /openapi.json (openapi/openapi.json).
#
#   1. a venv under target/schemathesis-venv with schemathesis==$SCHEMATHESIS_VERSION,
#   2. the release binary (SCHEMATHESIS_BINARY=path skips the build),
#   3. `mock-upstream` and `serve` on 127.0.0.1 (serve on port 0, its port read from its log;
#      the mock on a free port, again on another if that one is taken first): the example registry
#      (examples/connectors_registry.json) against the mock, with --console, --admin-token and
#      --webhook-secret so every documented route is live, and caller identity trusting the
#      mock's demo key (its JWKS at /demo-idp/jwks.json, on loopback), without which the
#      example's member-items (user.*, tenant_id) would keep the registry from loading,
#   4. `schemathesis run` with the checks below. A 5xx fails the run unless it is the
#      documented 502 (upstream failed) or 504 (upstream timed out); any status, Content-Type,
#      header or body outside the document fails it too. Credentials go by security scheme:
#      the admin token to the operator API (adminToken), a demo member's token from
#      `connector-runtime demo token` to the execution routes (memberToken; optional there, but
#      schemathesis sends a configured credential on every case, so the refusals are step 5),
#   5. identity probes through the same checks (schemathesis' Python API): member-items
#      without a token and with a refused one, get-item with a refused one (401
#      IDENTITY_REQUIRED / IDENTITY_INVALID and their WWW-Authenticate), member-items with the
#      member's token (200, the member in the answer).
#
# Exits non-zero on any finding. Runnable by hand; CI runs it from .ci/run.
# SCHEMATHESIS_MAX_EXAMPLES (default 100) and SCHEMATHESIS_SEED (default fixed) tune a run;
# SCHEMATHESIS_KEEP=1 keeps the server and mock logs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/target/schemathesis-venv"
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-100}
SEED=${SCHEMATHESIS_SEED:-20240917}
ADMIN_TOKEN="schemathesis-admin-token"
WEBHOOK_SECRET="schemathesis-webhook-secret"

fail() { echo "schemathesis.sh: FAIL: $*" >&2; exit 1; }
step() { echo; echo "== schemathesis: $*"; }

# ---------------------------------------------------------------------------- schemathesis
step "schemathesis $SCHEMATHESIS_VERSION in $VENV"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || fail "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
fi
"$VENV/bin/schemathesis" --version

# ---------------------------------------------------------------------------- binary
if [ -n "${SCHEMATHESIS_BINARY:-}" ]; then
  BIN=$(realpath "$SCHEMATHESIS_BINARY")
  step "using $BIN (SCHEMATHESIS_BINARY; no build)"
else
  step "cargo build --release"
  cargo build --release
  BIN="$ROOT/target/release/connector-runtime"
fi
[ -x "$BIN" ] || fail "no $BIN"

# ---------------------------------------------------------------------------- servers
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${SCHEMATHESIS_KEEP:-}" ]; then echo "schemathesis.sh: logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# A port that was free a moment ago: another process may take it before ours binds it.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The mock upstream prints the address it was given, not the one it bound, so it cannot use
# port 0: it gets a free port and, when another process takes that port first (the mock then
# exits with "cannot listen on"), another one. It is up once it prints its "listening" line,
# which it does only after binding (whoever else may hold the port never prints it).
# Sets MOCK_PORT.
start_mock() {
  local attempt port pid
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    "$BIN" mock-upstream --listen "127.0.0.1:$port" >"$TMP/mock.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
      if grep -q "mock-upstream listening on http://127.0.0.1:$port " "$TMP/mock.log"; then
        MOCK_PORT=$port
        PIDS+=("$pid")
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      tail -20 "$TMP/mock.log" >&2
      fail "the mock upstream did not listen on 127.0.0.1:$port within 30 s"
    fi
    wait "$pid" 2>/dev/null || true
    if ! grep -q "cannot listen on" "$TMP/mock.log"; then
      tail -20 "$TMP/mock.log" >&2
      fail "the mock upstream exited at start"
    fi
    echo "schemathesis.sh: 127.0.0.1:$port was taken before the mock bound it; another port"
  done
  fail "the mock upstream lost 5 free ports in a row to other processes"
}

# The server binds port 0 and logs the port it got: the `port` field of its JSON
# "connector-runtime serving" line. Prints it once it is there.
server_port() {
  python3 -c 'import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if isinstance(event, dict) and event.get("message") == "connector-runtime serving" and isinstance(event.get("port"), int):
        print(event["port"])
        break' "$1"
}

start_mock
# The example registry reads these secrets; the token is the one the mock upstream accepts.
MOCK_SRC=src/mock_upstream/mod.rs
MOCK_TOKEN=$(sed -n 's/^pub[^ ]* const TOKEN: &str = "\(.*\)";$/\1/p' "$MOCK_SRC")
[ -n "$MOCK_TOKEN" ] || fail "cannot read the mock upstream's TOKEN from $MOCK_SRC"
mkdir -p "$TMP/secrets"
printf '%s' "$MOCK_TOKEN" > "$TMP/secrets/items_api_token"
printf '%s' "demo-api-key" > "$TMP/secrets/items_api_key"
printf '{"api_base_url": "http://127.0.0.1:%s", "auth_base_url": "http://127.0.0.1:%s"}\n' \
  "$MOCK_PORT" "$MOCK_PORT" > "$TMP/variables.json"

# Caller identity: the mock serves the JWKS of the demo's built-in key (public knowledge: for
# tests and demos only), and `demo token` prints a member token signed by it (iss = aud =
# connector-runtime-demo, valid 12 h). An http JWKS URL is accepted on loopback only.
JWKS_URL="http://127.0.0.1:$MOCK_PORT/demo-idp/jwks.json"
MEMBER_TOKEN=$("$BIN" demo token --sub member-schemathesis) || fail "connector-runtime demo token failed"
[ -n "$MEMBER_TOKEN" ] || fail "connector-runtime demo token printed nothing"

"$BIN" serve --registry examples/connectors_registry.json --listen "127.0.0.1:0" \
  --allow-private-upstreams --secrets-dir "$TMP/secrets" --variables-file "$TMP/variables.json" \
  --console --admin-token "$ADMIN_TOKEN" --webhook-secret "$WEBHOOK_SECRET" \
  --identity-issuer connector-runtime-demo --identity-audience connector-runtime-demo \
  --identity-jwks-url "$JWKS_URL" --tenant-id demo-community \
  --workers 2 --step-timeout-ms 5000 --log-format json >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
PORT=""
for _ in $(seq 1 300); do
  PORT=$(server_port "$TMP/server.log")
  [ -n "$PORT" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -40 "$TMP/server.log" >&2
    fail "the server exited at start"
  fi
  sleep 0.1
done
[ -n "$PORT" ] || { tail -40 "$TMP/server.log" >&2; fail "the server logged no port within 30 s"; }
BASE="http://127.0.0.1:$PORT"
step "mock upstream on 127.0.0.1:$MOCK_PORT, server on $BASE"

ready=0
for _ in $(seq 1 100); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$BASE/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  tail -40 "$TMP/server.log" >&2
  fail "the server did not become ready on $BASE"
fi

# ---------------------------------------------------------------------------- run
# not_a_server_error: 2xx-4xx plus the documented 502/504 (an upstream that failed or timed
# out is the contract's answer, not a server bug). Every other 5xx is a finding.
# Half of the generated permalinks (and X-Path-Params) are real ones, so runs reach the
# upstream through the templates instead of stopping at 404 CONNECTOR_NOT_FOUND.
PERMALINKS=$(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(", ".join(json.dumps(c["permalink"]) for c in r.get("connectors", []) + r.get("composite_connectors", [])))' \
  examples/connectors_registry.json) || fail "cannot read the permalinks of examples/connectors_registry.json"
cat > "$TMP/schemathesis.toml" <<EOF
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "502", "504"]

[dictionaries.permalinks]
values = [$PERMALINKS]

[dictionaries.path-params]
values = ["item_id=itm_042", "item_id=itm_001", "item_id=", "item_id=..", "other=1"]

[parameters]
"path.permalink" = { dictionary = "permalinks", probability = 0.5 }
"header.X-Path-Params" = { dictionary = "path-params", probability = 0.5 }

# By security scheme (components.securitySchemes), not one global Authorization header: with
# identity on, a token sent to an execution route is always verified, so the admin token there
# would be 401 IDENTITY_INVALID for every connector and no run would reach an upstream.
[auth.openapi.adminToken]
bearer = "$ADMIN_TOKEN"

[auth.openapi.memberToken]
bearer = "$MEMBER_TOKEN"
EOF

# One worker: with several, Hypothesis parses lambda sources from threads, which CPython
# 3.11.7's ast module can fail at ("AST constructor recursion depth mismatch").
step "schemathesis run $BASE/openapi.json (max $MAX_EXAMPLES examples per operation, seed $SEED)"
rc=0
(
  cd "$TMP"   # keeps any file schemathesis writes out of the work tree
  "$VENV/bin/schemathesis" --no-color --config-file "$TMP/schemathesis.toml" run "$BASE/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --suppress-health-check all
) || rc=$?

# The schemathesis run sends the member token on every execution case it authenticates, so
# the identity refusals are probed here, through the same checks: member-items without a
# token (401 IDENTITY_REQUIRED, WWW-Authenticate: Bearer) and with a refused one (401
# IDENTITY_INVALID, Bearer error="invalid_token"), get-item with a refused one (any token sent
# is verified), and member-items with the member's token (200, the member in the answer).
step "identity probes against the document (401 IDENTITY_REQUIRED / IDENTITY_INVALID, 200 with the token)"
cat > "$TMP/identity_probes.py" <<'PY'
import json
import sys

import schemathesis
from schemathesis.specs.openapi import checks as oc

base, member_token = sys.argv[1], sys.argv[2]
schema = schemathesis.openapi.from_url(base + "/openapi.json")
simple = schema["/connectors/{permalink}/execute"]["GET"]
composite = schema["/connectors/composite/{permalink}/execute"]["POST"]
checks = [oc.status_code_conformance, oc.content_type_conformance,
          oc.response_headers_conformance, oc.response_schema_conformance]
refused = {"Authorization": "Bearer not.a.token"}
member = {"Authorization": "Bearer " + member_token}
probes = [
    ("POST member-items, no token", composite, "member-items", {}, {}, 401, "IDENTITY_REQUIRED", "Bearer"),
    ("POST member-items, a refused token", composite, "member-items", {}, refused, 401, "IDENTITY_INVALID",
     'Bearer error="invalid_token"'),
    ("GET get-item, a refused token", simple, "get-item", {"X-Path-Params": "item_id=itm_042"}, refused, 401,
     "IDENTITY_INVALID", 'Bearer error="invalid_token"'),
    ("POST member-items, the member's token", composite, "member-items", {}, member, 200, None, None),
]
failed = 0
for label, op, permalink, headers, auth, status, code, challenge in probes:
    case = op.Case(path_parameters={"permalink": permalink}, headers={**headers, **auth})
    response = case.call(base_url=base)
    problems = []
    try:
        case.validate_response(response, checks=checks)
    except Exception as e:  # a FailureGroup: what the document does not allow
        problems.append(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    body = {}
    try:
        body = json.loads(response.text)
    except ValueError:
        pass
    if response.status_code != status:
        problems.append(f"status {response.status_code}, expected {status}")
    if code is not None and (body.get("errors") or {}).get("code") != code:
        problems.append(f"code {(body.get('errors') or {}).get('code')!r}, expected {code!r}")
    if challenge is not None and response.headers.get("www-authenticate") != [challenge]:
        problems.append(f"WWW-Authenticate {response.headers.get('www-authenticate')}, expected [{challenge!r}]")
    if code is None and body.get("member") != "member-schemathesis":
        problems.append(f"member {body.get('member')!r}, expected 'member-schemathesis'")
    failed += bool(problems)
    print(f"  {'ok  ' if not problems else 'FAIL'} {label}: {response.status_code} "
          f"{code or body.get('member')}" + "".join(f"\n       {p}" for p in problems))
sys.exit(1 if failed else 0)
PY
"$VENV/bin/python" "$TMP/identity_probes.py" "$BASE" "$MEMBER_TOKEN" || rc_probes=$?

echo "runs by connector and outcome, and member tokens by result, during the run"
echo "(connector_runs_total, connector_identity_verifications_total):"
python3 -c 'import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines():
    if line.startswith(("connector_runs_total{", "connector_identity_verifications_total{")) and "(unknown)" not in line:
        print("  " + line)' "$BASE/metrics" || true

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  tail -40 "$TMP/server.log" >&2
  fail "the server exited during the run"
fi
# actix logs requests it cannot parse (schemathesis sends some) at ERROR; a panic is a bug.
if grep -q 'panicked' "$TMP/server.log"; then
  grep 'panicked' "$TMP/server.log" | head -20 >&2
  fail "the server panicked during the run"
fi
[ "$rc" = 0 ] || fail "schemathesis found problems (exit $rc); see above"
[ "${rc_probes:-0}" = 0 ] || fail "an identity probe did not answer as documented; see above"
echo "schemathesis.sh: ok"
