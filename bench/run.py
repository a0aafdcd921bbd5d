#!/usr/bin/env python3
"""connector-runtime benchmarks: one command, every target of the performance issue printed as
PASS/FAIL with its figures, each ratio measured in the same run.

    python3 bench/run.py --all                             # everything below; the summary ends it
    python3 bench/run.py                                   # scenarios A-F and AV (A with its floors)
    python3 bench/run.py --scenarios A --rounds 1 --seconds 3   # A, bare-actix, nginx-lua, quickly
    python3 bench/run.py --scenarios A --instructions      # + callgrind instructions per run
    python3 bench/run.py --scenarios AV                    # A with a verified caller token, next to A
    python3 bench/run.py --growth --scenarios ''           # cost growth alone (chain length, body size)
    python3 bench/run.py --upstream-port 18981 --ports 18900   # while another nginx holds 18081
    python3 bench/run.py --scenarios A --traced             # A with tracing on, next to off
    python3 bench/run.py --scenarios '' --instructions --traced --no-floors   # tracing's instructions alone
    python3 bench/run.py --scenarios A --https              # A against nginx over TLS, next to HTTP
    python3 bench/run.py --peer "node=PORT=18090 exec node server.js:18090"   # any other server of A

Builds the release binary, starts the upstreams (nginx from bench/nginx.conf on
127.0.0.1:--upstream-port for A, C, D, E, AV and --growth; `connector-runtime mock-upstream
--latency-ms 50` on the next port for B and F), starts the runtime on each scenario's registry
(bench/scenarios/, its upstream URLs moved to those ports), drives it with wrk, and prints a
table: runs/s, p50, p99, server CPU microseconds per run (utime+stime of the server and all its
processes, from /proc), peak RSS, non-2xx count. The targets measured in a group run in turn
(A B C A B C ...), so their ratios share the machine's state: a ratio is the median of the
rounds' own ratios (round i of one target against round i of the other), its range printed
beside it. Every PASS/FAIL line is printed in one block at the end ("summary").

The floors of scenario A (bench/peers/, on by default when the tools are there; --floors makes
them required, --no-floors skips them): `bare-actix`, actix-web + awc doing the two calls
hard-coded (built with `cargo build --release --manifest-path bench/peers/bare-actix/Cargo.toml
--target-dir target/bench-peers`), and `nginx-lua`, the same two calls in nginx + Lua, Kong's
and OpenResty's stack (needs `apt-get install -y libnginx-mod-http-lua lua-cjson`). They run in
turn with ours; targets: ours' runs/s >= 0.95x the faster floor, CPU per run <= 1.15x the
leaner floor, p99 <= 1.30x the better floor's p99, peak RSS <= 32 MiB.

--instructions counts callgrind instructions per run (bench/instructions.py: 300 warm-up
requests, then 2,000 sequential ones on one keep-alive connection; deterministic, unlike
wall-clock figures on a shared machine) for bare-actix, nginx-lua (one worker, master_process
off) and ours (--workers 1), and AV when it is measured; target: ours <= 1.10x bare-actix.
With --growth it also counts each growth row. Needs valgrind.

AV is A whose second step sends `X-User-Id: {{ user.id }}` (the upstream answers 403 without
it): every request carries `Authorization: Bearer <token>`, an EdDSA (Ed25519) JWT the harness
signs with the openssl CLI, verified by the runtime against a JWKS file (--identity-issuer,
--identity-jwks-file). One token for every request, as a page sends the same token with each of
its calls (the runtime reuses a verified token; docs/spec.md section 9). A and AV run in turn;
target: AV's CPU per run <= 1.15x A's.

--growth measures how cost grows: composites of 1, 2, 5, 10 and 20 steps, each step GETting a
1 KB JSON body and the next one reading it with `from_json` (the composite's response_body
reads the last), and the 2-step chain with 100 KB and 1 MB bodies (nginx serves generated
files). Columns: CPU per run, per step, per extra step ((cost(N) - cost(1)) / (N - 1), the
marginal cost, which fixed per-request costs do not flatter), and per extra KB of body read
((cost(S) - cost(1 KB)) / (2 (S - 1 KB))). Verdicts: "linear" when the marginal cost per step
of the N-step chain is <= 1.3x that of the 2-step chain, and the marginal cost per KB at 1 MB
<= 1.3x that at 100 KB; else "SUPER-LINEAR". With --instructions the verdicts use instruction
counts (deterministic), else CPU per run (noisy on a shared machine).

--https adds scenario A against the same nginx over TLS: the harness makes a CA and a leaf
for 127.0.0.1 with the openssl CLI, nginx also listens with ssl on the upstream port + 2
(HTTP/1.1, keep-alive as on the plain port), and a second server runs A's registry with
https:// URLs and `--upstream-ca-file` naming that CA; both run in turn (A B A B) and the row
shows its ratio to plain-HTTP A, with the issue's verdict (HTTPS runs/s >= 0.80x HTTP) and how
many connections nginx accepted while each was measured (its stub_status), to show they were
kept alive. --traced adds A with 100% sampling exported to a local OTLP receiver (target: CPU
per run <= 1.10x untraced).

--all: scenarios A-F and AV, the floors, --https, --traced, --instructions, --growth and, when
bench/large_registry.py exists, its `main(argv)` (start-up, memory and reload of a large
registry) against the same upstream.

Scenarios:
  A  the seed's 2-step auth-and-fetch composite, fast upstream, 64 callers
  B  the same chain with 50 ms upstream latency per step, 1000 callers
  C  5-step chain with response_body transforms, a 10 KB payload, a {% for %} over a list
  D  simple connector with a path parameter and a query override
  E  A whose second step's answer is cacheable (Cache-Control: public, max-age=60): every
     run after the first serves step 2 from the response cache (Cache Hit), step 1 still
     calls the token endpoint
  F  chain control: a composite with two independent GET steps against the 50 ms upstream,
     64 callers, run with "execution": "parallel" and, as the baseline in the same run, the
     same registry with "execution": "sequential" (A B A B); reports the p50 of both and
     parallel/sequential (about 0.5: parallel takes one step's 50 ms, sequential two)
  AV A with a verified caller token whose second step reads user.id, next to A

Ports: nginx on --upstream-port (default 18081), the 50 ms mock on +1, nginx's TLS listener on
+2; the servers measured from --ports BASE (default 18090): bare-actix BASE+2, ours BASE+4 (and
+5 for a second variant), nginx-lua BASE+8, ours over HTTPS BASE+12, traced BASE+13, the growth
rows from BASE+20, the large registry BASE+40. The harness refuses to start when a port it
needs already answers.

Needs: wrk and nginx (`apt-get install -y wrk nginx-light`; B and F alone need no nginx), a Rust
toolchain; openssl for --https and AV; libnginx-mod-http-lua and lua-cjson for the nginx-lua
floor; valgrind for --instructions.
"""
import argparse
import base64
import contextlib
import glob
import importlib.util
import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import instructions  # noqa: E402  (bench/instructions.py, beside this file)

BIN = os.path.join(ROOT, "target", "release", "connector-runtime")
TICK = os.sysconf("SC_CLK_TCK")
SLOW_UPSTREAM = ("B", "F")  # scenarios against `mock-upstream --latency-ms 50` (upstream port + 1)
BARE_DIR = os.path.join(HERE, "peers", "bare-actix")
BARE_TARGET = os.path.join(ROOT, "target", "bench-peers")
BARE_BIN = os.path.join(BARE_TARGET, "release", "bare-actix-peer")
LUA_CONF = os.path.join(HERE, "peers", "nginx-lua", "nginx.conf")
LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so"
IDENTITY_ISSUER = "connector-runtime-bench"
IDENTITY_SUB = "usr_bench"  # bench/nginx.conf's /users/me/verified wants it as X-User-Id
GROWTH_CONNS = 16
GROWTH_STEPS = (1, 2, 5, 10, 20)
GROWTH_SIZES_KB = (100, 1024)  # with 2 steps; the 1 KB reference is the 2-step row
LINEAR_LIMIT = 1.3

A_PATH = "/connectors/composite/auth-and-fetch-user/execute"
SCENARIOS = {
    "A": dict(registry="a_auth_and_fetch.json", path=A_PATH,
              script="wrk_post.lua", body=None, conns=64, expect=b"Ada Lovelace"),
    "B": dict(registry="b_slow_upstream.json", path=A_PATH,
              script="wrk_post.lua", body=None, conns=1000, expect=b"Ada Lovelace", chain_latency=0.100),
    "C": dict(registry="c_five_steps.json", path="/connectors/composite/order-catalog-items/execute",
              script="wrk_post.lua", body="c_payload.json", conns=64, expect=b"confirmation"),
    "E": dict(registry="e_cached_step.json", path=A_PATH,
              script="wrk_post.lua", body=None, conns=64, expect=b"Ada Lovelace"),
    "D": dict(registry="d_simple_path_params.json", path="/connectors/get-item/execute?limit=5",
              script="wrk_get_item.lua", body=None, conns=64, expect=b"itm_042"),
    # Two targets of ours, the first the baseline: the same two steps one after the other,
    # then both at once. The answer holds both steps' bodies (composite response_body).
    "F": dict(registry="f_parallel_steps.json", path="/connectors/composite/item-and-listing/execute",
              script="wrk_post.lua", body=None, conns=64, expect=(b'"item": {"id":"itm_042"', b'"count":3'),
              step_latency=0.050,
              variants=[("sequential", "f_sequential_steps.json"), ("parallel", "f_parallel_steps.json")]),
    # A, then A whose second step reads user.id from the caller's verified token.
    "AV": dict(registry="av_verified_user.json", path=A_PATH,
               script="wrk_post.lua", body=None, conns=64, expect=b"Ada Lovelace",
               variants=[("A", "a_auth_and_fetch.json"), ("verified", "av_verified_user.json")]),
}
ORDER = ["A", "B", "C", "D", "E", "F", "AV"]


class Ports:
    """Every port the harness listens on or drives, from --upstream-port and --ports."""

    def __init__(self, upstream, base):
        self.upstream, self.slow, self.tls = upstream, upstream + 1, upstream + 2
        self.bare, self.ours, self.lua = base + 2, base + 4, base + 8
        self.https, self.traced, self.growth, self.large = base + 12, base + 13, base + 20, base + 40


def wait_port(port, timeout=60, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server for port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def port_free(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return False
    except OSError:
        return True


def tree(pid):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total / TICK


def peak_rss_mib(pid):
    """VmHWM: the highest resident set size each process reached, summed."""
    total = 0
    for p in tree(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def wrk(url, script, body, seconds, conns, env_extra=None):
    env = dict(os.environ, BENCH_BODY=os.path.join(HERE, body) if body else "", BENCH_TOKEN="")
    env.update(env_extra or {})
    threads = 2 if conns > 256 else 1
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                          "-s", os.path.join(HERE, script), url], capture_output=True, text=True, env=env).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"wrk failed:\n{out}")

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v if u == "ms" else v * 1000

    avg = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", out)
    mean = float(avg.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[avg.group(2)] if avg else 0.0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return dict(rps=float(m.group(1)), total=int(re.search(r"(\d+) requests in", out).group(1)),
                p50=pct(50), p99=pct(99), mean=mean, bad=(int(bad.group(1)) if bad else 0) +
                (sum(int(x) for x in errs.groups()) if errs else 0))


class Target:
    """One server measured: its name, command (argv list or shell string), port, process
    environment, and what its callers send (extra headers, wrk's environment)."""

    def __init__(self, name, cmd, port, env=None, token=None):
        self.name, self.cmd, self.port, self.env, self.token = name, cmd, port, env, token
        self.proc = None

    def headers(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def wrk_env(self):
        return {"BENCH_TOKEN": self.token} if self.token else {}


def request_of(sc, target):
    """The request of scenario `sc` as `target`'s callers send it (for the answer check and
    callgrind): method, path, body, headers, the byte strings the answer must hold."""
    body = open(os.path.join(HERE, sc["body"]), "rb").read() if sc["body"] else b'{"clientId":"widget-42"}'
    get = sc["script"] == "wrk_get_item.lua"
    headers = {"Content-Type": "application/json"}
    if get:
        headers["X-Path-Params"] = "item_id=itm_042"
    headers.update(target.headers())
    expect = sc["expect"] if isinstance(sc["expect"], tuple) else (sc["expect"],)
    return dict(method="GET" if get else "POST", path=sc["path"], body=None if get else body,
                headers=headers, expect=expect)


def check_answer(sc, target):
    r = request_of(sc, target)
    req = urllib.request.Request(f"http://127.0.0.1:{target.port}{r['path']}", data=r["body"],
                                 method=r["method"], headers=r["headers"])
    try:
        answer = urllib.request.urlopen(req, timeout=30).read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{target.name} answered {e.code}: {e.read()[:300]!r}")
    for want in r["expect"]:
        if want not in answer:
            raise SystemExit(f"{target.name}: {want!r} is not in its answer {answer[:300]!r}")


def start(cmd, port, env=None):
    p = subprocess.Popen(cmd, shell=isinstance(cmd, str), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    wait_port(port, proc=p)
    return p


def stop(p):
    if p is None:
        return
    if isinstance(p, _Receiver):
        p.stop()
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def render_registry(work, registry, ports, https=False):
    """`registry` (a file of bench/scenarios/, or a path) with its upstream URLs on this run's
    ports (plain or, with `https`, the TLS listener); the path of the copy in `work`."""
    src = registry if os.path.isabs(registry) else os.path.join(HERE, "scenarios", registry)
    text = open(src).read()
    nginx = f"https://127.0.0.1:{ports.tls}/" if https else f"http://127.0.0.1:{ports.upstream}/"
    if https:
        assert "http://127.0.0.1:18081/" in text, registry
    text = text.replace("http://127.0.0.1:18081/", nginx).replace(
        "http://127.0.0.1:18082/", f"http://127.0.0.1:{ports.slow}/")
    name = os.path.basename(src).replace(".json", "_https.json" if https else ".json")
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def ours_command(registry_path, port, *extra):
    return [BIN, "serve", "--registry", registry_path, "--listen", f"127.0.0.1:{port}",
            "--allow-private-upstreams", "--registry-poll-secs", "0", *extra]


class _Receiver:
    """A local OTLP/HTTP receiver for `--traced`: accepts every export (in this process, so
    its work is not counted in the server's CPU)."""

    def __init__(self, server, thread):
        self.server, self.thread, self.port = server, thread, server.server_address[1]
        self.pid = None

    def stop(self):
        self.server.shutdown()


def otlp_receiver():
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        # Keep-alive, as a collector is: the exporter keeps its one connection.
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return _Receiver(server, thread)


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, input=data).stdout


def make_pki(directory):
    """A CA and a leaf it signs for 127.0.0.1 (and localhost), with the openssl CLI, in
    `directory`; returns (ca.pem, leaf.pem, leaf.key)."""
    ca, ca_key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    leaf, leaf_key = os.path.join(directory, "leaf.pem"), os.path.join(directory, "leaf.key")
    csr, ext = os.path.join(directory, "leaf.csr"), os.path.join(directory, "leaf.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=connector-runtime bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", *ec, "-keyout", leaf_key, "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", leaf,
            "-days", "2", "-extfile", ext)
    return ca, leaf, leaf_key


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_identity(directory):
    """An Ed25519 key (openssl CLI), its JWKS file and a caller token it signs (EdDSA, issuer
    IDENTITY_ISSUER, sub IDENTITY_SUB, valid for a day); returns (jwks path, token)."""
    key = os.path.join(directory, "identity.key")
    openssl("genpkey", "-algorithm", "ed25519", "-out", key)
    public = openssl("pkey", "-in", key, "-pubout", "-outform", "DER")[-32:]  # SPKI ends with the raw key
    jwks = os.path.join(directory, "identity-jwks.json")
    with open(jwks, "w") as f:
        json.dump({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(public), "kid": "bench",
                             "alg": "EdDSA", "use": "sig"}]}, f)
    now = int(time.time())
    header = {"alg": "EdDSA", "typ": "JWT", "kid": "bench"}
    claims = {"iss": IDENTITY_ISSUER, "sub": IDENTITY_SUB, "email": "bench@example.com",
              "given_name": "Bench", "iat": now, "exp": now + 86400}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    data = os.path.join(directory, "token.input")
    with open(data, "w") as f:
        f.write(signing_input)
    signature = openssl("pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", data)
    return jwks, f"{signing_input}.{b64url(signature)}"


def nginx_tls_lines(port, leaf, leaf_key):
    """What --https adds to nginx's server block: a TLS listener (HTTP/1.1, the same
    keep-alive settings) and stub_status on the plain one, to count accepted connections."""
    return (f"    listen 127.0.0.1:{port} ssl reuseport backlog=4096;\n"
            f"    ssl_certificate {leaf};\n"
            f"    ssl_certificate_key {leaf_key};\n"
            "    ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    location = /nginx_status { stub_status; }\n")


def nginx_accepts(ports):
    """nginx's stub_status counters: (connections accepted, requests) so far."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{ports.upstream}/nginx_status", timeout=5).read().decode()
    accepts, _handled, requests = (int(x) for x in text.splitlines()[2].split())
    return accepts, requests


def upstream_conf(work, ports, tls=None):
    """bench/nginx.conf rendered for this run: its port, pid and temp paths, the growth bodies'
    directory, and (with `tls` = (leaf, key)) the TLS listener."""
    text = open(os.path.join(HERE, "nginx.conf")).read()
    text = text.replace("@BENCH_DIR@", HERE).replace("@WORK_DIR@", work)
    text = text.replace("/tmp/connector-bench-nginx", os.path.join(work, "upstream-nginx"))
    listen = "    listen 127.0.0.1:18081 reuseport backlog=4096;\n"
    assert listen in text, "bench/nginx.conf's listen line moved"
    mine = listen.replace("18081", str(ports.upstream))
    if tls:
        mine += nginx_tls_lines(ports.tls, *tls)
    conf = os.path.join(work, "upstream-nginx.conf")
    with open(conf, "w") as f:
        f.write(text.replace(listen, mine))
    return conf


def lua_conf(work, ports, single=False):
    """bench/peers/nginx-lua/nginx.conf on this run's ports; `single`: one worker and no master
    process (for callgrind)."""
    text = open(LUA_CONF).read()
    for old, new in (("server 127.0.0.1:18081;", f"server 127.0.0.1:{ports.upstream};"),
                     ("listen 127.0.0.1:18098;", f"listen 127.0.0.1:{ports.lua};"),
                     ("/tmp/peers-nginx-lua", os.path.join(work, "lua-nginx"))):
        assert old in text, f"bench/peers/nginx-lua/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    if single:
        text = text.replace("worker_processes 2;", "worker_processes 1;\nmaster_process off;")
    conf = os.path.join(work, "lua-nginx-1.conf" if single else "lua-nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf


def floors_missing():
    """Why the floors cannot run here, or None."""
    if not shutil.which("cargo"):
        return "cargo is missing (bare-actix)"
    if not os.path.exists(LUA_MODULE) or not glob.glob("/usr/lib/*/lua/5.1/cjson.so"):
        return "nginx-lua needs apt-get install -y libnginx-mod-http-lua lua-cjson"
    return None


def build_bare():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", os.path.join(BARE_DIR, "Cargo.toml"),
                    "--target-dir", BARE_TARGET], cwd=ROOT, check=True)


def floor_targets(work, ports, single=False):
    os.makedirs(os.path.join(work, "lua-prefix", "logs"), exist_ok=True)
    bare_env = dict(os.environ, PORT=str(ports.bare), UPSTREAM=f"http://127.0.0.1:{ports.upstream}")
    return [Target("bare-actix", [BARE_BIN], ports.bare, env=bare_env),
            Target("nginx-lua", ["nginx", "-e", "stderr", "-c", lua_conf(work, ports, single),
                                 "-p", os.path.join(work, "lua-prefix")], ports.lua)]


def measure(sc, label, target, seconds, results):
    c0 = cpu_seconds(target.proc.pid)
    res = wrk(f"http://127.0.0.1:{target.port}{sc['path']}", sc["script"], sc["body"], seconds, sc["conns"],
              target.wrk_env())
    res["cpu_us"] = (cpu_seconds(target.proc.pid) - c0) / max(res["total"], 1) * 1e6
    res["rss"] = peak_rss_mib(target.proc.pid)
    results.setdefault((label, target.name), []).append(res)
    print(f"  {label} {target.name}: {res['rps']:.0f} runs/s p99 {res['p99']:.2f} ms cpu {res['cpu_us']:.0f} us/run",
          file=sys.stderr)


def run_group(label, sc, targets, a, results, ports=None, count_accepts=()):
    """Start every target, check its answer, warm it up, then measure them in turn for
    a.rounds rounds; stops them at the end."""
    try:
        for t in targets:
            t.proc = start(t.cmd, t.port, t.env)
            check_answer(sc, t)
            wrk(f"http://127.0.0.1:{t.port}{sc['path']}", sc["script"], sc["body"], 2, sc["conns"], t.wrk_env())
        for _ in range(a.rounds):
            for t in targets:
                counted = t.name in count_accepts
                before = nginx_accepts(ports) if counted else None
                measure(sc, label, t, a.seconds, results)
                if counted:
                    after = nginx_accepts(ports)
                    # The status request itself is one connection and one request.
                    results[(label, t.name)][-1]["accepts"] = after[0] - before[0] - 1
                    results[(label, t.name)][-1]["upstream_requests"] = after[1] - before[1] - 1
    finally:
        for t in targets:
            if t.proc:
                stop(t.proc)
                t.proc = None


# --growth ------------------------------------------------------------------------------------

def growth_body(kb):
    """A JSON document of exactly `kb` KiB: {"items": [...], "pad": "x...", "next": "cursor-<kb>k"}
    (`next` last, so reading it means reading the whole text)."""
    size, items = kb * 1024, []
    head, tail = '{"items":[', f'],"pad":"@","next":"cursor-{kb}k"}}'
    length = len(head) + len(tail) - 1
    while True:
        i = len(items)
        item = json.dumps({"id": f"itm_{i:06d}", "name": f"Item {i}", "price": i % 97 + 0.5,
                           "tags": ["alpha", "beta"], "in_stock": i % 3 != 0}, separators=(",", ":"))
        grown = length + len(item) + (1 if items else 0)
        if grown > size:
            break
        items.append(item)
        length = grown
    return head + ",".join(items) + tail.replace("@", "x" * (size - length))


def write_growth_bodies(work):
    os.makedirs(os.path.join(work, "growth"), exist_ok=True)
    for kb in (1,) + GROWTH_SIZES_KB:
        text = growth_body(kb)
        json.loads(text)
        with open(os.path.join(work, "growth", f"{kb}k.json"), "w") as f:
            f.write(text)


def growth_registry(work, ports, steps, kb):
    """A composite of `steps` GET steps on the `kb` KiB body; step k reads step k-1's body with
    from_json (a header), the composite's response_body reads the last one's."""
    url = f"http://127.0.0.1:{ports.upstream}/growth/{kb}k.json"
    chain = []
    for k in range(1, steps + 1):
        step = {"name": f"s{k}", "url": url, "method": "GET", "headers": []}
        if k > 1:
            step["headers"].append({"key": "X-Prev", "value": f"{{{{ steps['s{k - 1}'].body | from_json | attr('next') }}}}"})
        chain.append(step)
    registry = {"composite_connectors": [{
        "name": "Growth", "permalink": "growth", "steps": chain,
        "response_body": f"{{\"steps\": {steps}, \"next\": {{{{ (steps['s{steps}'].body | from_json).next | tojson }}}}}}",
        "response_content_type": "application/json"}]}
    path = os.path.join(work, f"growth_{steps}_steps_{kb}k.json")
    with open(path, "w") as f:
        json.dump(registry, f, indent=1)
    return path


GROWTH_SC = dict(path="/connectors/composite/growth/execute", script="wrk_post.lua", body=None,
                 conns=GROWTH_CONNS, expect=(b'"next": "cursor-',))


def growth_rows():
    return [(n, 1) for n in GROWTH_STEPS] + [(2, kb) for kb in GROWTH_SIZES_KB]


def run_growth(a, work, ports, results, counts):
    targets = []
    for i, (n, kb) in enumerate(growth_rows()):
        reg = growth_registry(work, ports, n, kb)
        targets.append(Target(f"{n}x{kb}k", ours_command(reg, ports.growth + i), ports.growth + i))
    run_group("growth", GROWTH_SC, targets, a, results)
    if a.instructions:
        for i, (n, kb) in enumerate(growth_rows()):
            t = targets[i]
            # Fewer runs for long chains and big bodies (valgrind runs ~50x slower): the count
            # is exact either way, as the counters are zeroed after the warm-up.
            runs = max(100, 2000 // n) if kb == 1 else 200 if kb < 1024 else 40
            cmd = t.cmd + ["--workers", "1"]
            counts[("growth", t.name)] = instructions.count(f"growth-{t.name}", t.port, cmd, request_of(GROWTH_SC, t),
                                                            warmup=max(10, runs // 10), runs=runs,
                                                            keep=a.callgrind_dir)
            print(f"  growth {t.name}: {counts[('growth', t.name)]:,.0f} instructions per run", file=sys.stderr)


def size_label(kb):
    return f"{kb // 1024} MB" if kb % 1024 == 0 else f"{kb} KB"


def report_growth(results, counts):
    """The growth table and its verdicts (PASS/FAIL lines)."""
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    cpu = {(n, kb): med(results[("growth", f"{n}x{kb}k")], "cpu_us") for n, kb in growth_rows()}
    have_counts = all(("growth", f"{n}x{kb}k") in counts for n, kb in growth_rows())
    ins = {(n, kb): counts[("growth", f"{n}x{kb}k")] for n, kb in growth_rows()} if have_counts else None
    basis, cost = ("instructions", ins) if ins else ("CPU us", cpu)
    print(f"\ngrowth: {GROWTH_CONNS} callers; each step GETs a body and the next reads it with from_json; "
          f"verdicts on {basis} per run (marginal costs; <= {LINEAR_LIMIT}x the reference row is linear)")
    head = (f"{'chain':>6} {'body':>6} {'runs/s':>8} {'p99 ms':>8} {'CPU us/run':>10} {'us/step':>8} "
            f"{'us/+step':>8} {'us/+KB':>7}")
    if ins:
        head += f" {'instr/run':>11} {'instr/+step':>11} {'instr/+KB':>10}"
    print(head + "  verdict")
    verdicts = []
    per_step = lambda c, n: (c[(n, 1)] - c[(1, 1)]) / (n - 1)
    per_kb = lambda c, kb: (c[(2, kb)] - c[(2, 1)]) / (2 * (kb - 1))
    for n, kb in growth_rows():
        rows = results[("growth", f"{n}x{kb}k")]
        line = (f"{n:6d} {size_label(kb):>6} {med(rows, 'rps'):8.0f} {med(rows, 'p99'):8.2f} {cpu[(n, kb)]:10.1f} "
                f"{cpu[(n, kb)] / n:8.1f} ")
        line += f"{per_step(cpu, n):8.1f} " if kb == 1 and n > 1 else f"{'':8} "
        line += f"{per_kb(cpu, kb):7.3f}" if kb > 1 else f"{'':7}"
        if ins:
            line += f" {ins[(n, kb)]:11,.0f} "
            line += f"{per_step(ins, n):11,.0f} " if kb == 1 and n > 1 else f"{'':11} "
            line += f"{per_kb(ins, kb):10,.1f}" if kb > 1 else f"{'':10}"
        if kb == 1 and n == 1:
            verdict = "(fixed cost)"
        elif (kb == 1 and n == 2) or kb == GROWTH_SIZES_KB[0]:
            verdict = "(reference)"
        else:
            ratio = per_step(cost, n) / per_step(cost, 2) if kb == 1 else per_kb(cost, kb) / per_kb(cost, GROWTH_SIZES_KB[0])
            verdict = f"{'linear' if ratio <= LINEAR_LIMIT else 'SUPER-LINEAR'} ({ratio:.2f}x)"
            what = (f"growth: cost per extra step of the {n}-step chain <= {LINEAR_LIMIT}x the 2-step chain's"
                    if kb == 1 else f"growth: cost per extra KB of {size_label(kb)} bodies <= {LINEAR_LIMIT}x that of "
                    f"{size_label(GROWTH_SIZES_KB[0])} ones")
            verdicts.append((f"{what} ({basis})", ratio, LINEAR_LIMIT, False))
        print(f"{line}  {verdict}")
    return verdicts


# --instructions --------------------------------------------------------------------------------

def run_instructions(a, work, ports, counts, with_floors, identity):
    sc = SCENARIOS["A"]
    targets = floor_targets(work, ports, single=True) if with_floors else []
    targets.append(Target("ours", ours_command(render_registry(work, sc["registry"], ports), ports.ours,
                                               "--workers", "1"), ports.ours))
    if identity:
        jwks, token = identity
        av = render_registry(work, SCENARIOS["AV"]["registry"], ports)
        targets.append(Target("ours-verified", ours_command(av, ports.ours + 1, "--workers", "1",
                                                            "--identity-issuer", IDENTITY_ISSUER,
                                                            "--identity-jwks-file", jwks),
                              ports.ours + 1, token=token))
    receiver = None
    if a.traced:
        # 100% sampling (the default sampler), exported to a receiver in this process: the
        # export thread's work is counted, the receiver's is not.
        receiver = otlp_receiver()
        targets.append(Target("ours-traced", ours_command(render_registry(work, sc["registry"], ports),
                                                          ports.traced, "--workers", "1",
                                                          "--otlp-endpoint", f"http://127.0.0.1:{receiver.port}"),
                              ports.traced))
    try:
        for t in targets:
            counts[("A", t.name)] = instructions.count(t.name, t.port, t.cmd, request_of(sc, t), env=t.env,
                                                       keep=a.callgrind_dir)
            print(f"  A {t.name}: {counts[('A', t.name)]:,.0f} instructions per run", file=sys.stderr)
    finally:
        if receiver:
            receiver.stop()


def report_instructions(counts):
    names = [n for (s, n) in counts if s == "A"]
    if not names:
        return []
    print(f"\ninstructions per run, scenario A (callgrind, one worker, {instructions.RUNS:,} sequential runs "
          f"after {instructions.WARMUP} warm-up)")
    bare = counts.get(("A", "bare-actix"))
    for name in names:
        ratio = f"{counts[('A', name)] / bare:6.2f}x bare-actix" if bare else ""
        print(f"  {name:14} {counts[('A', name)]:>11,.0f}  {ratio}")
    verdicts = []
    if bare and ("A", "ours") in counts:
        lua = counts.get(("A", "nginx-lua"))
        beside = f"; nginx-lua {lua / bare:.2f}x" if lua else ""
        verdicts.append((f"A instructions per run <= 1.10x bare-actix ({counts[('A', 'ours')]:,.0f} vs "
                         f"{bare:,.0f}{beside})", counts[("A", "ours")] / bare, 1.10, False))
    if ("A", "ours-verified") in counts and ("A", "ours") in counts:
        verdicts.append(("AV instructions per run <= 1.15x A's", counts[("A", "ours-verified")] / counts[("A", "ours")],
                         1.15, False))
    if ("A", "ours-traced") in counts and ("A", "ours") in counts:
        verdicts.append(("A traced instructions per run <= 1.10x untraced (issue 16)",
                         counts[("A", "ours-traced")] / counts[("A", "ours")], 1.10, False))
    return verdicts


# the large registry (bench/large_registry.py, another helper's) -------------------------------

class _Tee(io.TextIOBase):
    def __init__(self, out):
        self.out, self.text = out, []

    def write(self, s):
        self.out.write(s)
        self.text.append(s)
        return len(s)

    def flush(self):
        self.out.flush()


def run_large_registry(ports):
    """bench/large_registry.py's main(argv) against this run's upstream; its PASS/FAIL lines."""
    path = os.path.join(HERE, "large_registry.py")
    if not os.path.exists(path):
        return []
    spec = importlib.util.spec_from_file_location("large_registry", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "main"):
        return []
    print("\nlarge registry (bench/large_registry.py)")
    tee = _Tee(sys.stdout)
    try:
        with contextlib.redirect_stdout(tee):
            status = mod.main(["--upstream-port", str(ports.upstream), "--port", str(ports.large), "--no-build"])
    except SystemExit as e:
        status = e.code
    lines = [l for l in "".join(tee.text).splitlines() if l.startswith(("PASS", "FAIL"))]
    if status not in (0, None) and not any(l.startswith("FAIL") for l in lines):
        lines.append(f"FAIL  large registry: bench/large_registry.py ended with {status}")
    return lines


# main ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(ORDER), help="comma-separated, of " + ",".join(ORDER))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--peer", action="append", default=[], help="NAME=SHELL COMMAND:PORT (scenario A)")
    ap.add_argument("--no-build", action="store_true")
    floors = ap.add_mutually_exclusive_group()
    floors.add_argument("--floors", action="store_true", default=None,
                        help="scenario A's floors (bare-actix, nginx-lua) are required (default: run them when "
                        "cargo and the nginx Lua module are present)")
    floors.add_argument("--no-floors", dest="floors", action="store_false")
    ap.add_argument("--instructions", action="store_true", help="callgrind instructions per run (needs valgrind)")
    ap.add_argument("--callgrind-dir", metavar="DIR",
                    help="with --instructions: keep every callgrind dump in DIR (for callgrind_annotate)")
    ap.add_argument("--growth", action="store_true", help="cost growth with chain length and body size")
    ap.add_argument("--traced", action="store_true",
                    help="scenario A also with tracing on (100%% sampling, OTLP/HTTP export to a local receiver)")
    ap.add_argument("--https", action="store_true",
                    help="scenario A also against nginx over TLS (a CA made with openssl, --upstream-ca-file)")
    ap.add_argument("--upstream-port", type=int, default=18081,
                    help="the bench nginx's port (the 50 ms mock takes the next one, nginx's TLS listener +2)")
    ap.add_argument("--ports", type=int, default=18090, metavar="BASE", help="first of the servers' ports")
    ap.add_argument("--all", action="store_true",
                    help="every scenario, the floors, --https, --traced, --instructions, --growth, the large registry")
    a = ap.parse_args()
    if a.all:
        a.scenarios, a.https, a.traced, a.instructions, a.growth = ",".join(ORDER), True, True, True, True
        if a.floors is None:
            a.floors = True
    scenarios = [s.strip().upper() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}: the scenarios are {', '.join(ORDER)}")
    if (a.https or a.peer or (a.traced and not a.instructions)) and "A" not in scenarios:
        raise SystemExit("--https, --traced and --peer measure scenario A: include A in --scenarios "
                         "(--traced with --instructions counts A's instructions whatever --scenarios says)")
    ports = Ports(a.upstream_port, a.ports)
    wants_a = "A" in scenarios or a.instructions
    missing = floors_missing() if wants_a and a.floors is not False else None
    if missing and a.floors:
        raise SystemExit(f"the floors cannot run: {missing}")
    with_floors = wants_a and a.floors is not False and not missing
    if missing:
        print(f"note: scenario A's floors are skipped ({missing}); their targets are not checked", file=sys.stderr)
    needs_nginx = a.growth or a.instructions or any(s not in SLOW_UPSTREAM for s in scenarios)
    for tool in ("wrk", "nginx") if needs_nginx else ("wrk",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install -y wrk nginx-light")
    if (a.https or "AV" in scenarios) and not shutil.which("openssl"):
        raise SystemExit("openssl is missing: apt-get install -y openssl")
    if a.instructions and not shutil.which("callgrind_control"):
        raise SystemExit("valgrind is missing: apt-get install -y valgrind")
    used = [ports.upstream] if needs_nginx else []
    used += [ports.slow] if any(s in SLOW_UPSTREAM for s in scenarios) else []
    used += [ports.tls] if a.https else []
    busy = [p for p in used if not port_free(p)]
    if busy:
        raise SystemExit(f"port(s) {', '.join(map(str, busy))} already answer (another nginx?): "
                         "pass --upstream-port with a free port (and --ports for the servers)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # B opens ~3000 sockets
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        if with_floors:
            build_bare()
    elif with_floors and not os.path.exists(BARE_BIN):
        build_bare()
    results, counts, upstreams, upstream_ms, extra = {}, {}, [], None, []
    work = tempfile.mkdtemp(prefix="connector-bench-")
    os.chmod(work, 0o755)  # nginx's workers (nobody) serve the growth bodies from it
    try:
        identity = make_identity(work) if ("AV" in scenarios) else None
        ca = None
        if needs_nginx:
            tls = None
            if a.https:
                ca, leaf, leaf_key = make_pki(work)
                tls = (leaf, leaf_key)
            if a.growth:
                write_growth_bodies(work)
            upstreams.append(start(["nginx", "-e", "stderr", "-c", upstream_conf(work, ports, tls)], ports.upstream))
            if a.https:
                wait_port(ports.tls)
        if any(s in SLOW_UPSTREAM for s in scenarios):
            upstreams.append(start([BIN, "mock-upstream", "--listen", f"127.0.0.1:{ports.slow}", "--latency-ms", "50",
                                    "--workers", "1"], ports.slow))
        if "B" in scenarios:
            # The floor of B, measured in the same run: the upstream alone at the same
            # concurrency. A runtime that cost nothing would keep 1000 upstream calls in flight
            # and make two per run, so it could run at most half the upstream's own rate (its
            # 50 ms timer rounds up a little, so this is below the nominal 1000 / 0.1 s).
            me = f"http://127.0.0.1:{ports.slow}/users/me"
            wrk(me, "wrk_get_me.lua", None, 2, SCENARIOS["B"]["conns"])
            alone = [wrk(me, "wrk_get_me.lua", None, 4, SCENARIOS["B"]["conns"]) for _ in range(2)]
            upstream_ms = (statistics.median(r["rps"] for r in alone), statistics.median(r["mean"] for r in alone))
            print(f"  B upstream alone: {upstream_ms[0]:.0f} calls/s, mean {upstream_ms[1]:.2f} ms", file=sys.stderr)
        for scenario in scenarios:
            sc = SCENARIOS[scenario]
            # Floors and peers run first so that every ratio is "against the first target".
            targets, counted = [], ()
            if scenario == "A":
                if with_floors:
                    targets += floor_targets(work, ports)
                for peer in a.peer:
                    name, rest = peer.split("=", 1)
                    cmd, port = rest.rsplit(":", 1)
                    targets.append(Target(name, cmd, int(port)))
            if "variants" in sc:
                for i, (name, registry) in enumerate(sc["variants"]):
                    extra_args, token = (), None
                    if scenario == "AV" and name == "verified":
                        extra_args = ("--identity-issuer", IDENTITY_ISSUER, "--identity-jwks-file", identity[0])
                        token = identity[1]
                    targets.append(Target(name, ours_command(render_registry(work, registry, ports), ports.ours + i,
                                                             *extra_args), ports.ours + i, token=token))
            else:
                targets.append(Target("ours", ours_command(render_registry(work, sc["registry"], ports), ports.ours),
                                      ports.ours))
            if scenario == "A" and a.traced:
                receiver = otlp_receiver()
                upstreams.append(receiver)
                traced = ours_command(render_registry(work, sc["registry"], ports), ports.traced,
                                      "--otlp-endpoint", f"http://127.0.0.1:{receiver.port}")
                targets.append(Target("ours-traced", traced, ports.traced))
            if scenario == "A" and a.https:
                https = ours_command(render_registry(work, sc["registry"], ports, https=True), ports.https,
                                     "--upstream-ca-file", ca)
                targets.append(Target("ours-https", https, ports.https))
                counted = ("ours", "ours-https")
            names = [t.name for t in targets]
            if len(set(names)) != len(names):
                raise SystemExit(f"scenario {scenario}: two targets share a name ({', '.join(names)})")
            run_group(scenario, sc, targets, a, results, ports, counted)
        if a.growth:
            run_growth(a, work, ports, results, counts)
        if a.instructions:
            run_instructions(a, work, ports, counts, with_floors, identity)
        if a.all:
            extra = run_large_registry(ports)
    finally:
        for p in upstreams:
            stop(p)
        shutil.rmtree(work, ignore_errors=True)
    verdicts = report(results, scenarios, a, upstream_ms)
    if a.growth:
        verdicts += report_growth(results, counts)
    verdicts += report_instructions(counts)
    lines = [verdict_line(*v) for v in verdicts] + extra
    print(f"\nsummary ({sum(l.startswith('PASS') for l in lines)} PASS, {sum(l.startswith('FAIL') for l in lines)} FAIL)")
    for line in lines:
        print(line)
    return 1 if any(l.startswith("FAIL") for l in lines) else 0


def verdict_line(label, value, limit, at_least):
    ok = value >= limit if at_least else value <= limit
    return f"{'PASS' if ok else 'FAIL'}  {label}: {value:.2f} ({'>=' if at_least else '<='} {limit:g})"


def report(results, scenarios, a, upstream_ms=None):
    """The scenario table and its verdicts: (label, value, limit, at_least) tuples."""
    med = lambda rows, k: statistics.median(r[k] for r in rows)

    def paired(top, bottom, k):
        """The ratio top/bottom of `k` as the median of the rounds' own ratios (the targets of a
        group run in turn, A B A B ..., so round i of each shares the machine's state, which
        drifts by more than 10% over a minute here), and the rounds' lowest and highest
        ratio, printed so that the noise is seen."""
        ratios = [t[k] / b[k] for t, b in zip(top, bottom)]
        return statistics.median(ratios), min(ratios), max(ratios)

    def spread(label, r):
        return f"{label} {r[0]:.2f}x (rounds {r[1]:.2f}-{r[2]:.2f})"

    if not any(s in scenarios for (s, _) in results):
        return []
    print(f"\nrounds={a.rounds} seconds={a.seconds} (medians; CPU and RSS of the server process tree)")
    print(f"{'scenario':8} {'target':13} {'conns':>5} {'runs/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'CPU us/run':>10} {'peak RSS MiB':>12} {'non-2xx':>7} {'vs first':>8}")
    for scenario in scenarios:
        names = [n for (s, n) in results if s == scenario]
        if not names:
            continue
        first = results[(scenario, names[0])]
        for name in names:
            rows = results[(scenario, name)]
            print(f"{scenario:8} {name:13} {SCENARIOS[scenario]['conns']:5d} {med(rows, 'rps'):9.0f} "
                  f"{med(rows, 'p50'):8.2f} {med(rows, 'p99'):8.2f} {med(rows, 'cpu_us'):10.1f} "
                  f"{max(r['rss'] for r in rows):12.1f} {sum(r['bad'] for r in rows):7d} "
                  f"{med(rows, 'rps') / med(first, 'rps'):8.2f}")
    print()
    if ("A", "ours") in results and ("E", "ours") in results:
        a_rows, e_rows = results[("A", "ours")], results[("E", "ours")]
        print(f"E vs A (step 2 from the response cache): {med(e_rows, 'rps') / med(a_rows, 'rps'):.2f}x runs/s, "
              f"{med(e_rows, 'cpu_us') / med(a_rows, 'cpu_us'):.2f}x CPU per run, "
              f"{med(e_rows, 'p99') / med(a_rows, 'p99'):.2f}x p99")
    verdicts = []
    floors = [n for n in ("bare-actix", "nginx-lua") if ("A", n) in results]
    if ("A", "ours") in results and floors:
        ours = results[("A", "ours")]
        fig = {n: {k: med(results[("A", n)], k) for k in ("rps", "cpu_us", "p99")} for n in floors}
        faster = max(floors, key=lambda n: fig[n]["rps"])
        leaner = min(floors, key=lambda n: fig[n]["cpu_us"])
        better = min(floors, key=lambda n: fig[n]["p99"])
        print("A floors: " + "; ".join(f"{n} {fig[n]['rps']:.0f} runs/s, {fig[n]['cpu_us']:.1f} us CPU per run, "
                                       f"p99 {fig[n]['p99']:.2f} ms" for n in floors))
        # Round by round: the faster, leaner and better floor of that round.
        rounds = list(zip(*(results[("A", n)] for n in floors)))
        best = lambda k, pick: [{k: pick(r[k] for r in rnd)} for rnd in rounds]
        rps = paired(ours, best("rps", max), "rps")
        cpu = paired(ours, best("cpu_us", min), "cpu_us")
        p99 = paired(ours, best("p99", min), "p99")
        print("A vs the floors, round by round: " + "; ".join(
            (spread("runs/s", rps), spread("CPU per run", cpu), spread("p99", p99))))
        verdicts += [
            (f"A runs/s >= 0.95x the faster floor (medians: {faster} {fig[faster]['rps']:.0f}, ours "
             f"{med(ours, 'rps'):.0f}; rounds {rps[1]:.2f}-{rps[2]:.2f})", rps[0], 0.95, True),
            (f"A CPU per run <= 1.15x the leaner floor (medians: {leaner} {fig[leaner]['cpu_us']:.1f} us, "
             f"ours {med(ours, 'cpu_us'):.1f} us; rounds {cpu[1]:.2f}-{cpu[2]:.2f})", cpu[0], 1.15, False),
            (f"A p99 <= 1.30x the better floor's (medians: {better} {fig[better]['p99']:.2f} ms, ours "
             f"{med(ours, 'p99'):.2f} ms; rounds {p99[1]:.2f}-{p99[2]:.2f})", p99[0], 1.30, False),
        ]
    if ("A", "ours") in results:
        verdicts.append(("A peak RSS <= 32 MiB", max(r["rss"] for r in results[("A", "ours")]), 32, False))
    if ("A", "ours") in results and ("A", "ours-traced") in results:
        ours, traced = results[("A", "ours")], results[("A", "ours-traced")]
        cpu = paired(traced, ours, "cpu_us")
        print("A traced vs not, round by round: " + "; ".join(
            spread(label, paired(traced, ours, k)) for label, k in
            (("runs/s", "rps"), ("CPU per run", "cpu_us"), ("p99", "p99"))))
        verdicts.append((f"A CPU per run traced <= 1.10x untraced (rounds {cpu[1]:.2f}-{cpu[2]:.2f})",
                         cpu[0], 1.10, False))
    if ("A", "ours") in results and ("A", "ours-https") in results:
        plain, https = results[("A", "ours")], results[("A", "ours-https")]
        conns = lambda rows, k: sum(r[k] for r in rows)
        print(f"A HTTPS vs HTTP upstream: {med(https, 'rps') / med(plain, 'rps'):.2f}x runs/s, "
              f"{med(https, 'cpu_us') / med(plain, 'cpu_us'):.2f}x CPU per run, "
              f"{med(https, 'p99') / med(plain, 'p99'):.2f}x p99; connections nginx accepted while "
              f"measured (kept alive after the warm-up): HTTPS {conns(https, 'accepts')} for "
              f"{conns(https, 'upstream_requests')} upstream requests, HTTP {conns(plain, 'accepts')} for "
              f"{conns(plain, 'upstream_requests')}")
        rps = paired(https, plain, "rps")
        verdicts.append((f"A HTTPS runs/s >= 0.80x plain HTTP (rounds {rps[1]:.2f}-{rps[2]:.2f})",
                         rps[0], 0.80, True))
    if ("AV", "A") in results and ("AV", "verified") in results:
        plain, verified = results[("AV", "A")], results[("AV", "verified")]
        print(f"AV (verified caller token, step 2 reads user.id) vs A: "
              f"{med(verified, 'rps') / med(plain, 'rps'):.2f}x runs/s, "
              f"{med(verified, 'cpu_us') / med(plain, 'cpu_us'):.2f}x CPU per run, "
              f"{med(verified, 'p99') / med(plain, 'p99'):.2f}x p99")
        cpu = paired(verified, plain, "cpu_us")
        verdicts.append((f"AV CPU per run <= 1.15x A's (rounds {cpu[1]:.2f}-{cpu[2]:.2f})", cpu[0], 1.15, False))
    if ("B", "ours") in results:
        ours = results[("B", "ours")]
        nominal = SCENARIOS["B"]["conns"] / SCENARIOS["B"]["chain_latency"]
        ideal = upstream_ms[0] / 2 if upstream_ms else nominal
        if upstream_ms:
            print(f"B: upstream alone {upstream_ms[0]:.0f} calls/s at {SCENARIOS['B']['conns']} callers "
                  f"(mean {upstream_ms[1]:.1f} ms per call) -> ideal {ideal:.0f} runs/s for a 2-call chain; "
                  f"vs the nominal {nominal:.0f} runs/s: {med(ours, 'rps') / nominal:.2f}")
        verdicts += [
            ("B throughput >= 90% of conns / chain latency (upstream measured alone)", med(ours, "rps") / ideal, 0.90, True),
            ("B peak RSS <= 128 MiB", max(r["rss"] for r in ours), 128, False),
        ]
    if ("F", "parallel") in results and ("F", "sequential") in results:
        par, seq = results[("F", "parallel")], results[("F", "sequential")]
        step_ms = SCENARIOS["F"]["step_latency"] * 1000
        ratio = med(par, "p50") / med(seq, "p50")
        print(f"F (2 independent steps, {step_ms:.0f} ms upstream each): p50 parallel {med(par, 'p50'):.2f} ms, "
              f"sequential {med(seq, 'p50'):.2f} ms -> parallel/sequential {ratio:.2f} "
              f"(ideal 0.50: one step's {step_ms:.0f} ms instead of two); "
              f"runs/s {med(par, 'rps') / med(seq, 'rps'):.2f}x")
        verdicts += [
            ("F p50 parallel/sequential <= 0.60", ratio, 0.60, False),
            (f"F p50 parallel <= 1.3x one step ({step_ms:.0f} ms)", med(par, "p50") / step_ms, 1.3, False),
        ]
    for scenario, name in (("A", "ours"), ("C", "ours"), ("D", "ours"), ("E", "ours"), ("F", "sequential"),
                           ("F", "parallel"), ("AV", "verified")):
        if (scenario, name) in results:
            bad = sum(r["bad"] for r in results[(scenario, name)])
            label = scenario if name in ("ours", "verified") else f"{scenario} {name}"
            verdicts.append((f"{label} zero non-2xx", bad, 0, False))
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
