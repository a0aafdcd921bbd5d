#!/usr/bin/env python3
"""End-to-end check of the Grafana dashboard against a real server and a real Prometheus.

Starts, all on 127.0.0.1 with ephemeral ports and a temporary directory:
  * `connector-runtime mock-upstream` (with latency),
  * `connector-runtime serve` on deploy/connectors_registry.json with deploy/secrets and a
    variables file pointing at the mock (the same registry and secrets as docker-compose.yml;
    the demo's built-in registry has no OAuth connector, so token cache series would never
    appear with `demo`), and the caller identity of docker-compose.yml: the demo key from
    deploy/demo-jwks.json (member-items reads user.* and tenant_id; the member's token comes
    from `connector-runtime demo token`, so a deploy JWKS that is not the demo key fails here),
  * `prometheus` with a temporary config scraping the server every second and temporary
    storage.

Then it drives traffic with urllib (successful runs of every connector, upstream 4xx/5xx, a
failing OAuth token endpoint, a client error) in a bounded background loop, resolves the
dashboard's template variables the way Grafana does (label_values through the Prometheus
API, "All" -> allValue), and runs every `expr` of the dashboard JSON through
/api/v1/query. Each must return a non-empty result that is not all NaN, whose series carry
the labels the panel's legend uses; an expression with an `or vector(...)` fallback must
also return data without it. Every metric name the dashboard uses must be exposed by the
server's /metrics. Prints a table and a closing `N passed, N failed` line; cleans up every
process it started.

Usage: scripts/e2e/prometheus_dashboard.py [--binary target/release/connector-runtime]
       [--prometheus prometheus] [--dashboard grafana/dashboards/connector-runtime.json]
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What Grafana would put for its built-in interval variables, given a 1 s scrape interval
# (Grafana's $__rate_interval is at least four scrape intervals; 15 s leaves margin).
BUILTINS = {
    "__rate_interval": "15s",
    "__interval": "5s",
    "__interval_ms": "5000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# --------------------------------------------------------------------------- processes

PROCS: list[tuple[str, subprocess.Popen]] = []


def start(name: str, argv: list[str], logdir: Path) -> subprocess.Popen:
    log = open(logdir / f"{name}.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    PROCS.append((name, proc))
    return proc


def stop_all() -> None:
    for _, proc in reversed(PROCS):
        if proc.poll() is None:
            proc.terminate()
    deadline = time.time() + 10
    for _, proc in reversed(PROCS):
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    PROCS.clear()


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def free_port() -> int:
    """A port that was free a moment ago: another process may take it before the program
    that is given it binds it, so whoever uses this must retry on a bind failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_alive(logdir: Path) -> None:
    for name, proc in PROCS:
        if proc.poll() is not None:
            tail = (logdir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"FAIL: {name} exited with {proc.returncode}; its log ends:\n{tail}")


PORT_ATTEMPTS = 5


def start_on_free_port(name: str, argv_for, listening, bind_failed: str, logdir: Path,
                       timeout: float = 60.0) -> int:
    """Starts `argv_for(port)` on a free port and returns the port once `listening(port, log)`
    holds, where `log` is the log so far. A port taken by another process between
    free_port() and the bind makes the program exit with `bind_failed` in its log: then it
    is started again on another port. `listening` must only hold for this process (a line
    it logs after binding, or something only it would answer), never for whoever else may
    have the port."""
    log_path = logdir / f"{name}.log"
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        proc = start(name, argv_for(port), logdir)
        deadline = time.time() + timeout
        while proc.poll() is None:
            if listening(port, log_path.read_text(errors="replace")):
                return port
            if time.time() > deadline:
                raise SystemExit(f"FAIL: {name} did not listen on 127.0.0.1:{port} within "
                                 f"{timeout:.0f}s; its log ends:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        if bind_failed not in log_path.read_text(errors="replace"):
            check_alive(logdir)  # exited for another reason: fail with its log
        PROCS.remove((name, proc))
        print(f"e2e: 127.0.0.1:{port} was taken before {name} bound it; another port")
    raise SystemExit(f"FAIL: {name}: {PORT_ATTEMPTS} free ports in a row were taken before it bound them")


def server_port(logdir: Path, timeout: float = 30.0) -> int:
    """The port of `connector-runtime serve --listen 127.0.0.1:0 --log-format json` started
    as "server": the `port` field of its "connector-runtime serving" line."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in (logdir / "server.log").read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message") == "connector-runtime serving" and isinstance(event.get("port"), int):
                return event["port"]
        check_alive(logdir)
        time.sleep(0.05)
    raise SystemExit(f"FAIL: the server logged no port within {timeout:.0f}s")


# --------------------------------------------------------------------------- HTTP

def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(url: str, what: str, logdir: Path, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        check_alive(logdir)
        try:
            status, _ = http("GET", url, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.2)
    raise SystemExit(f"FAIL: {what} not ready at {url} after {timeout:.0f}s ({last})")


def prom_get(prom: str, path: str, params: list[tuple[str, str]]) -> dict:
    url = f"{prom}{path}?{urllib.parse.urlencode(params)}"
    status, body = http("GET", url, timeout=15)
    try:
        doc = json.loads(body)
    except ValueError:
        raise SystemExit(f"FAIL: Prometheus answered HTTP {status} with non-JSON to {url}")
    return doc


# --------------------------------------------------------------------------- traffic

# (method, path, headers, body, expected HTTP status) — one "round" of traffic. Together
# they produce every series the dashboard reads: ok runs of simple and composite
# connectors, upstream 2xx/4xx/5xx, token cache misses and hits (account-profile), token
# fetch errors (legacy-partner-profile's token endpoint answers 503) and a client error
# (get-item without its path parameter). member-items runs as the demo member (MEMBER gets
# the token's Authorization header in main()).
JSON = {"Content-Type": "application/json"}
MEMBER: dict[str, str] = {}
ROUND = [
    ("POST", "/connectors/composite/auth-and-fetch-user/execute", JSON, b'{"clientId": "widget-42"}', 200),
    ("POST", "/connectors/composite/user-with-items/execute?limit=3", {}, b"", 200),
    ("GET", "/connectors/get-item/execute", {"X-Path-Params": "item_id=itm_1"}, None, 200),
    ("GET", "/connectors/search-items/execute?limit=2&q=item", {}, None, 200),
    ("POST", "/connectors/echo-payload/execute", JSON, b'{"hello": "world"}', 200),
    ("GET", "/connectors/account-profile/execute", {}, None, 200),
    ("GET", "/connectors/account-profile/execute", {}, None, 200),
    ("GET", "/connectors/upstream-status/execute", {}, None, 200),
    ("GET", "/connectors/upstream-status/execute", {"X-Path-Params": "code=503"}, None, 502),
    ("GET", "/connectors/upstream-status/execute", {"X-Path-Params": "code=404"}, None, 502),
    ("GET", "/connectors/legacy-partner-profile/execute", {}, None, 502),
    ("GET", "/connectors/get-item/execute", {}, None, 400),
    ("POST", "/connectors/composite/member-items/execute", MEMBER, b"", 200),
    # Chain control: parallel steps, a for_each, a skipped step, a step retried on 503 that
    # continues after its error (step states and retries series).
    ("POST", "/connectors/composite/item-overview/execute", {}, b"", 200),
]


class Traffic(threading.Thread):
    """Sends ROUND over and over (bounded in time), counting answers."""

    def __init__(self, base: str, max_seconds: float):
        super().__init__(daemon=True)
        self.base = base
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.sent = 0
        self.unexpected: list[str] = []
        self.error: str | None = None

    def one_round(self) -> None:
        for method, path, headers, body, expected in ROUND:
            status, payload = http(method, self.base + path, body, headers)
            self.sent += 1
            if status != expected and len(self.unexpected) < 20:
                self.unexpected.append(f"{method} {path} -> {status} (expected {expected}): "
                                       f"{payload[:200]!r}")

    def run(self) -> None:
        deadline = time.time() + self.max_seconds
        try:
            while not self.stop_event.is_set() and time.time() < deadline:
                self.one_round()
                self.stop_event.wait(0.1)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = repr(e)


# --------------------------------------------------------------------------- dashboard

def panels_of(panels: list[dict]):
    for p in panels:
        yield p
        yield from panels_of(p.get("panels", []))  # collapsed rows nest their panels


def dashboard_targets(dash: dict):
    for p in panels_of(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield p, t


def structural_problems(dash: dict) -> list[str]:
    problems = []
    ids = [p.get("id") for p in panels_of(dash.get("panels", []))]
    if len(ids) != len(set(ids)):
        problems.append(f"panel ids are not unique: {ids}")
    for p in panels_of(dash.get("panels", [])):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        gp = p.get("gridPos", {})
        if not all(k in gp for k in ("x", "y", "w", "h")) or gp.get("x", 0) + gp.get("w", 0) > 24:
            problems.append(f"{where}: bad gridPos {gp}")
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            problems.append(f"{where}: no targets")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(refs) != len(set(refs)) or None in refs:
            problems.append(f"{where}: refIds missing or repeated: {refs}")
        for t in p.get("targets", []):
            if not t.get("expr"):
                problems.append(f"{where}: target {t.get('refId')} has no expr")
            ds = t.get("datasource") or p.get("datasource") or {}
            if ds.get("type") != "prometheus":
                problems.append(f"{where}: target {t.get('refId')} is not a Prometheus query")
        if not p.get("description"):
            problems.append(f"{where}: no description")
    cells: dict[tuple[int, int], str] = {}
    for p in dash.get("panels", []):
        gp = p.get("gridPos", {})
        for x in range(gp.get("x", 0), gp.get("x", 0) + gp.get("w", 0)):
            for y in range(gp.get("y", 0), gp.get("y", 0) + gp.get("h", 0)):
                if (x, y) in cells:
                    problems.append(f"panel {p.get('title')!r} overlaps {cells[(x, y)]!r} at x={x} y={y}")
                    break
                cells[(x, y)] = p.get("title")
            else:
                continue
            break
    return problems


VAR_RE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(name)

    return VAR_RE.sub(repl, expr)


LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.S)


def variable_query(var: dict) -> str:
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or var.get("definition") or ""


def resolve_variables(dash: dict, prom: str, deadline: float) -> tuple[dict[str, str], list[dict]]:
    """Resolves query variables in order, as Grafana would; returns values and report rows."""
    values: dict[str, str] = {}
    rows = []
    for var in dash.get("templating", {}).get("list", []):
        name, kind = var["name"], var.get("type")
        if kind == "datasource":
            values[name] = (var.get("current") or {}).get("value", "prometheus")
            continue
        if kind in ("constant", "custom", "textbox", "interval"):
            values[name] = str(var.get("query", ""))
            continue
        if kind != "query":
            raise SystemExit(f"FAIL: variable {name}: type {kind!r} is not handled by this check")
        query = variable_query(var)
        m = LABEL_VALUES_RE.match(query)
        if not m:
            raise SystemExit(f"FAIL: variable {name}: only label_values(...) queries are checked, got {query!r}")
        selector, label = m.group(1), m.group(2)
        found: list[str] = []
        while True:
            if selector:
                sel = substitute(selector, values)
                doc = prom_get(prom, "/api/v1/series", [("match[]", sel), ("start", str(time.time() - 600))])
                if doc.get("status") != "success":
                    raise SystemExit(f"FAIL: variable {name}: {sel}: {doc.get('error')}")
                found = sorted({s[label] for s in doc["data"] if label in s})
            else:
                doc = prom_get(prom, f"/api/v1/label/{label}/values", [])
                found = sorted(doc.get("data") or [])
            if found or time.time() > deadline:
                break
            time.sleep(1)
        ok = bool(found)
        rows.append({"what": f"variable ${name}", "query": query, "n": len(found),
                     "sample": ", ".join(found[:4]) + (" ..." if len(found) > 4 else ""),
                     "ok": ok, "why": "" if ok else "label_values returned nothing"})
        if var.get("includeAll") and var.get("allValue"):
            values[name] = var["allValue"]
        elif var.get("multi") or var.get("includeAll"):
            values[name] = "(" + "|".join(re.escape(v) for v in found) + ")" if found else ""
        else:
            values[name] = found[0] if found else ""
    return values, rows


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:connector|process)_[a-z0-9_]+)\b", expr))


def exposed_families(metrics_text: str) -> set[str]:
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.split(r"[{\s]", line, maxsplit=1)[0]
        names.add(name)
    return names


OR_VECTOR_RE = re.compile(r"\s*\bor\s+vector\s*\(\s*[-+0-9.eE]+\s*\)")


def run_query(prom: str, expr: str) -> tuple[bool, str, list]:
    doc = prom_get(prom, "/api/v1/query", [("query", expr), ("time", f"{time.time():.3f}")])
    if doc.get("status") != "success":
        return False, f"{doc.get('errorType')}: {doc.get('error')}", []
    data = doc["data"]
    if data["resultType"] == "scalar":
        return True, "", [{"metric": {}, "value": data["result"]}]
    if data["resultType"] != "vector":
        return False, f"unexpected result type {data['resultType']}", []
    return True, "", data["result"]


def judge(result: list, legend: str) -> tuple[bool, str]:
    if not result:
        return False, "empty result"
    vals = [float(r["value"][1]) for r in result]
    if all(math.isnan(v) for v in vals):
        return False, "every series is NaN"
    needed = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend or ""))
    for r in result:
        missing = needed - set(r["metric"])
        if missing:
            return False, f"legend labels {sorted(missing)} missing from {r['metric']}"
    return True, ""


def fmt_value(result: list) -> str:
    for r in result:
        v = float(r["value"][1])
        if not math.isnan(v):
            return f"{v:.4g}"
    return "NaN"


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=str(ROOT / "target/release/connector-runtime"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--dashboard", default=str(ROOT / "grafana/dashboards/connector-runtime.json"))
    ap.add_argument("--registry", default=str(ROOT / "deploy/connectors_registry.json"))
    ap.add_argument("--secrets-dir", default=str(ROOT / "deploy/secrets"))
    ap.add_argument("--jwks-file", default=str(ROOT / "deploy/demo-jwks.json"),
                    help="JWKS the server trusts for the demo issuer (docker-compose.yml's)")
    ap.add_argument("--latency-ms", type=int, default=5)
    ap.add_argument("--warmup", type=float, default=8.0,
                    help="seconds of traffic before the first query")
    ap.add_argument("--timeout", type=float, default=90.0,
                    help="seconds the queries get to return data")
    ap.add_argument("--k6-script", default=str(ROOT / "load/k6.js"),
                    help="k6 script smoke-run through scripts/e2e/k6_smoke.mjs (needs node, curl)")
    ap.add_argument("--skip-k6", action="store_true", help="do not smoke-run the k6 script")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    for path in (args.binary, args.dashboard, args.registry, args.jwks_file):
        if not Path(path).exists():
            raise SystemExit(f"FAIL: {path} does not exist")
    if not shutil.which(args.prometheus) and not Path(args.prometheus).exists():
        raise SystemExit(f"FAIL: no prometheus binary ({args.prometheus}); install Debian's "
                         "'prometheus' package (scripts/e2e.sh does)")

    dash = json.loads(Path(args.dashboard).read_text())
    problems = structural_problems(dash)
    if problems:
        raise SystemExit("FAIL: dashboard structure:\n  " + "\n  ".join(problems))

    tmp = Path(tempfile.mkdtemp(prefix="connector-runtime-e2e-"))
    atexit.register(lambda: None if args.keep else shutil.rmtree(tmp, ignore_errors=True))
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print(f"e2e: temp dir {tmp}")
    # The server binds port 0 and logs the port it got. The mock upstream and Prometheus log
    # the address they were given, not the one they bound, so they get a free port and are
    # started again if another process took it first.
    mock_port = start_on_free_port(
        "mock-upstream",
        lambda port: [args.binary, "mock-upstream", "--listen", f"127.0.0.1:{port}",
                      "--latency-ms", str(args.latency_ms)],
        # Printed once the listener is bound; a mock that lost the port exits instead.
        lambda port, log: f"mock-upstream listening on http://127.0.0.1:{port} " in log,
        "cannot listen on", tmp, timeout=30)
    upstream = f"http://127.0.0.1:{mock_port}"
    (tmp / "variables.json").write_text(json.dumps({"api_base_url": upstream, "auth_base_url": upstream}))
    token = subprocess.run([args.binary, "demo", "token", "--sub", "member-dashboard"], capture_output=True,
                           text=True, timeout=30)
    if token.returncode != 0 or token.stdout.strip().count(".") != 2:
        raise SystemExit(f"FAIL: `connector-runtime demo token` failed: {(token.stderr or token.stdout)[-500:]}")
    MEMBER["Authorization"] = f"Bearer {token.stdout.strip()}"
    start("server", [args.binary, "serve", "--registry", args.registry,
                     "--listen", "127.0.0.1:0", "--allow-private-upstreams",
                     "--variables-file", str(tmp / "variables.json"),
                     "--secrets-dir", args.secrets_dir, "--workers", "2",
                     # as docker-compose.yml: the demo key (public; for local work only)
                     "--identity-issuer", "connector-runtime-demo",
                     "--identity-audience", "connector-runtime-demo",
                     "--identity-jwks-file", args.jwks_file, "--tenant-id", "demo-community",
                     "--log-format", "json"], tmp)
    base = f"http://127.0.0.1:{server_port(tmp)}"
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: connector-runtime\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{base.removeprefix('http://')}']\n")
    storage = str(tmp / "prometheus-data")

    def our_prometheus(port: int, _log: str) -> bool:
        # Ready, and ours: its flags name our storage directory (another Prometheus could
        # hold the port for the moment before ours exits on the bind failure).
        try:
            status, body = http("GET", f"http://127.0.0.1:{port}/api/v1/status/flags", timeout=2)
            return status == 200 and storage in json.loads(body)["data"].values()
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError, AttributeError):
            return False

    prom_port = start_on_free_port(
        "prometheus",
        lambda port: [args.prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                      f"--storage.tsdb.path={storage}",
                      f"--web.listen-address=127.0.0.1:{port}",
                      "--storage.tsdb.retention.time=1h", "--log.level=warn"],
        our_prometheus, "address already in use", tmp)
    prom = f"http://127.0.0.1:{prom_port}"
    wait_for(f"{base}/readyz", "connector-runtime", tmp)
    wait_for(f"{prom}/-/ready", "prometheus", tmp, timeout=60)
    print(f"e2e: server {base}, mock upstream {upstream}, prometheus {prom}")

    status, body = http("GET", f"{base}/metrics")
    if status != 200:
        raise SystemExit(f"FAIL: GET {base}/metrics answered HTTP {status}: the server exposes no metrics")

    traffic = Traffic(base, max_seconds=args.warmup + args.timeout + 30)
    traffic.one_round()  # once in the foreground: wrong statuses here mean a broken setup
    if traffic.unexpected:
        raise SystemExit("FAIL: unexpected answers from the server:\n  " + "\n  ".join(traffic.unexpected))
    traffic.start()
    warm_until = time.time() + args.warmup

    k6_rows = []
    if not args.skip_k6:
        # The load script's own requests, through a synchronous shim of the k6 API: its
        # paths, headers and expected statuses must match the real registry.
        node, curl = shutil.which("node"), shutil.which("curl")
        if not node or not curl:
            k6_rows.append({"what": f"{Path(args.k6_script).name} smoke run", "query": "", "n": 0,
                            "sample": "", "ok": False, "why": "needs node and curl (or --skip-k6)"})
        else:
            proc = subprocess.run([node, str(ROOT / "scripts/e2e/k6_smoke.mjs"), args.k6_script, base, "20"],
                                  capture_output=True, text=True, timeout=300)
            out = (proc.stdout + proc.stderr).strip()
            print("e2e: " + out.replace("\n", "\ne2e: "))
            k6_rows.append({"what": f"{Path(args.k6_script).name} smoke run (k6 API shim)", "query": out,
                            "n": 0, "sample": "", "ok": proc.returncode == 0,
                            "why": "" if proc.returncode == 0 else out.splitlines()[-1] if out else "failed"})
    time.sleep(max(0.0, warm_until - time.time()))
    check_alive(tmp)

    # Every metric the dashboard uses must be on /metrics (a clearer failure than "no data").
    _, body = http("GET", f"{base}/metrics")
    exposed = exposed_families(body.decode())
    used = set().union(*(metric_names(t["expr"]) for _, t in dashboard_targets(dash)))
    used |= set().union(*(metric_names(variable_query(v)) for v in dash.get("templating", {}).get("list", [])))
    missing = sorted(m for m in used if m not in exposed)

    deadline = time.time() + args.timeout
    values, rows = resolve_variables(dash, prom, deadline)
    rows = k6_rows + rows

    checks = []  # (panel title, refId, label, expr, legend)
    for panel, t in dashboard_targets(dash):
        try:
            expr = substitute(t["expr"], values)
        except KeyError as e:
            rows.append({"what": f"{panel['title']} [{t['refId']}]", "query": t["expr"], "n": 0,
                         "sample": "", "ok": False, "why": f"unknown variable ${e.args[0]}"})
            continue
        checks.append((f"{panel['title']} [{t['refId']}]", expr, t.get("legendFormat", "")))
        if OR_VECTOR_RE.search(expr):
            checks.append((f"{panel['title']} [{t['refId']}] without 'or vector()'",
                           OR_VECTOR_RE.sub("", expr), t.get("legendFormat", "")))

    pending = list(range(len(checks)))
    outcome: dict[int, dict] = {}
    while pending:
        still = []
        for i in pending:
            what, expr, legend = checks[i]
            ok, why, result = run_query(prom, expr)
            if ok:
                ok, why = judge(result, legend)
            outcome[i] = {"what": what, "query": expr, "n": len(result),
                          "sample": fmt_value(result) if result else "", "ok": ok, "why": why}
            if not ok:
                still.append(i)
        pending = still
        if not pending or time.time() > deadline:
            break
        check_alive(tmp)
        time.sleep(1)
    rows += [outcome[i] for i in range(len(checks))]

    traffic.stop_event.set()
    traffic.join(timeout=15)

    for m in missing:
        rows.append({"what": f"metric {m}", "query": "GET /metrics", "n": 0, "sample": "",
                     "ok": False, "why": "not exposed by the server"})

    width = min(70, max(len(r["what"]) for r in rows))
    print()
    print(f"{'check':<{width}}  {'series':>6}  {'value':>10}  result")
    print(f"{'-' * width}  {'-' * 6}  {'-' * 10}  ------")
    for r in rows:
        verdict = "ok" if r["ok"] else f"FAIL: {r['why']}"
        print(f"{r['what'][:width]:<{width}}  {r['n']:>6}  {r['sample'][:10]:>10}  {verdict}")
    failed = [r for r in rows if not r["ok"]]
    for r in failed:
        print(f"\nFAILED {r['what']}:\n  {r['query']}\n  -> {r['why']}")
    print(f"\ne2e: traffic sent {traffic.sent} requests"
          + (f"; unexpected answers: {traffic.unexpected[:3]}" if traffic.unexpected else "")
          + (f"; traffic error: {traffic.error}" if traffic.error else ""))
    if traffic.unexpected or traffic.error:
        failed.append({"what": "traffic"})
        rows.append({"what": "traffic", "ok": False})
    print(f"prometheus-dashboard: {len(rows) - len(failed)} passed, {len(failed)} failed")
    if failed and not args.keep:
        for name, _ in PROCS:
            log = (tmp / f"{name}.log").read_text(errors="replace")
            if log.strip():
                print(f"\n--- {name}.log (last 40 lines)\n" + "\n".join(log.splitlines()[-40:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
