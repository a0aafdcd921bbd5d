#!/usr/bin/env bash
# Property-based API tests: schemathesis (PyPI, pinned) against the live server, driven by the
# document the server itself serves at /openapi.json (openapi/openapi.json).
#
#   1. a venv under target/schemathesis-venv with schemathesis==$SCHEMATHESIS_VERSION,
#   2. the release binary (SCHEMATHESIS_BINARY=path skips the build),
#   3. `mock-upstream` and `serve` on 127.0.0.1 (serve on port 0, its port read from its log;
#      the mock on a free port, again on another if that one is taken first): the example registry
#      (examples/connectors_registry.json) against the mock, with --console, --admin-token and
#      --webhook-secret so every documented route is live,
#   4. `schemathesis run` with the checks below. A 5xx fails the run unless it is the
#      documented 502 (upstream failed) or 504 (upstream timed out); any status, Content-Type,
#      header or body outside the document fails it too.
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
MOCK_TOKEN=$(sed -n 's/^pub[^ ]* const TOKEN: &str = "\(.*\)";$/\1/p' src/mock_upstream.rs)
[ -n "$MOCK_TOKEN" ] || fail "cannot read the mock upstream's TOKEN from src/mock_upstream.rs"
mkdir -p "$TMP/secrets"
printf '%s' "$MOCK_TOKEN" > "$TMP/secrets/items_api_token"
printf '%s' "demo-api-key" > "$TMP/secrets/items_api_key"
printf '{"api_base_url": "http://127.0.0.1:%s", "auth_base_url": "http://127.0.0.1:%s"}\n' \
  "$MOCK_PORT" "$MOCK_PORT" > "$TMP/variables.json"

"$BIN" serve --registry examples/connectors_registry.json --listen "127.0.0.1:0" \
  --allow-private-upstreams --secrets-dir "$TMP/secrets" --variables-file "$TMP/variables.json" \
  --console --admin-token "$ADMIN_TOKEN" --webhook-secret "$WEBHOOK_SECRET" \
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
EOF

# One worker: with several, Hypothesis parses lambda sources from threads, which CPython
# 3.11.7's ast module can fail at ("AST constructor recursion depth mismatch").
step "schemathesis run $BASE/openapi.json (max $MAX_EXAMPLES examples per operation, seed $SEED)"
rc=0
(
  cd "$TMP"   # keeps any file schemathesis writes out of the work tree
  "$VENV/bin/schemathesis" --no-color --config-file "$TMP/schemathesis.toml" run "$BASE/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --header "Authorization: Bearer $ADMIN_TOKEN" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --suppress-health-check all
) || rc=$?

echo "runs by connector and outcome during the run (connector_runs_total):"
python3 -c 'import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines():
    if line.startswith("connector_runs_total{") and "(unknown)" not in line:
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
echo "schemathesis.sh: ok"
