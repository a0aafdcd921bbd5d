#!/usr/bin/env python3
"""connector-runtime benchmarks: one command, figures as ratios measured in the same run.

    python3 bench/run.py                                   # scenarios A-F, ours only
    python3 bench/run.py --scenarios F --rounds 1 --seconds 2   # one scenario, quickly
    python3 bench/run.py --peer "bare-actix=PORT=18092 exec /path/bare-actix-peer:18092"
    python3 bench/run.py --scenarios A --traced             # A with tracing on, next to off
    python3 bench/run.py --scenarios A --https              # A against nginx over TLS, next to HTTP

Builds the release binary, starts the upstreams (nginx from bench/nginx.conf on :18081 for
A, C, D, E; `connector-runtime mock-upstream --latency-ms 50` on :18082 for B and F), starts the
runtime on each scenario's registry (bench/scenarios/), drives it with wrk, and prints a
table: runs/s, p50, p99, server CPU microseconds per run (utime+stime of the server and all
its processes, from /proc), peak RSS, non-2xx count. Peers (`NAME=SHELL COMMAND:PORT`) run
scenario A in turn with ours (A B A B ...), and every row shows its ratio to the first
target; the targets of the performance issue are checked and printed as PASS/FAIL.

--https adds scenario A against the same nginx over TLS: the harness makes a CA and a leaf
for 127.0.0.1 with the openssl CLI, nginx also listens with ssl on 127.0.0.1:18443 (HTTP/1.1,
keep-alive as on :18081), and a second server runs A's registry with https:// URLs and
`--upstream-ca-file` naming that CA; both run in turn (A B A B) and the row shows its ratio to
plain-HTTP A, with the issue's verdict (HTTPS runs/s >= 0.80x HTTP) and how many connections
nginx accepted while each was measured (its stub_status), to show they were kept alive.

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

Needs: wrk and nginx (`apt-get install -y wrk nginx-light`; B and F alone need no nginx), a Rust
toolchain; openssl for --https.
"""
import argparse
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
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "connector-runtime")
TICK = os.sysconf("SC_CLK_TCK")
OURS_PORT = 18094
SLOW_UPSTREAM = ("B", "F")  # scenarios against `mock-upstream --latency-ms 50` on :18082
NGINX_TLS_PORT = 18443  # --https: the same nginx server, with ssl

SCENARIOS = {
    "A": dict(registry="a_auth_and_fetch.json", path="/connectors/composite/auth-and-fetch-user/execute",
              script="wrk_post.lua", body=None, conns=64, expect=b"Ada Lovelace"),
    "B": dict(registry="b_slow_upstream.json", path="/connectors/composite/auth-and-fetch-user/execute",
              script="wrk_post.lua", body=None, conns=1000, expect=b"Ada Lovelace", chain_latency=0.100),
    "C": dict(registry="c_five_steps.json", path="/connectors/composite/order-catalog-items/execute",
              script="wrk_post.lua", body="c_payload.json", conns=64, expect=b"confirmation"),
    "E": dict(registry="e_cached_step.json", path="/connectors/composite/auth-and-fetch-user/execute",
              script="wrk_post.lua", body=None, conns=64, expect=b"Ada Lovelace"),
    "D": dict(registry="d_simple_path_params.json", path="/connectors/get-item/execute?limit=5",
              script="wrk_get_item.lua", body=None, conns=64, expect=b"itm_042"),
    # Two targets of ours, the first the baseline: the same two steps one after the other,
    # then both at once. The answer holds both steps' bodies (composite response_body).
    "F": dict(registry="f_parallel_steps.json", path="/connectors/composite/item-and-listing/execute",
              script="wrk_post.lua", body=None, conns=64, expect=(b'"item": {"id":"itm_042"', b'"count":3'),
              step_latency=0.050,
              variants=[("sequential", "f_sequential_steps.json"), ("parallel", "f_parallel_steps.json")]),
}


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


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


def wrk(url, script, body, seconds, conns):
    env = dict(os.environ, BENCH_BODY=os.path.join(HERE, body) if body else "")
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


def check_answer(port, path, scenario):
    sc = SCENARIOS[scenario]
    body = open(os.path.join(HERE, sc["body"]), "rb").read() if sc["body"] else b'{"clientId":"widget-42"}'
    method = "GET" if sc["script"] == "wrk_get_item.lua" else "POST"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=None if method == "GET" else body,
                                 method=method, headers={"Content-Type": "application/json",
                                                         "X-Path-Params": "item_id=itm_042"})
    answer = urllib.request.urlopen(req, timeout=10).read()
    expected = sc["expect"] if isinstance(sc["expect"], tuple) else (sc["expect"],)
    for want in expected:
        assert want in answer, (scenario, want, answer[:300])


def start(cmd, port, env=None):
    p = subprocess.Popen(cmd, shell=isinstance(cmd, str), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    wait_port(port)
    return p


def stop(p):
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


def ours_command(registry, port=OURS_PORT):
    registry = os.path.join(HERE, "scenarios", registry)
    return [BIN, "serve", "--registry", registry, "--listen", f"127.0.0.1:{port}",
            "--allow-private-upstreams", "--registry-poll-secs", "0"]


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


def make_pki(directory):
    """A CA and a leaf it signs for 127.0.0.1 (and localhost), with the openssl CLI, in
    `directory`; returns (ca.pem, leaf.pem, leaf.key)."""
    ca, ca_key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    leaf, leaf_key = os.path.join(directory, "leaf.pem"), os.path.join(directory, "leaf.key")
    csr, ext = os.path.join(directory, "leaf.csr"), os.path.join(directory, "leaf.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=connector-runtime bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("req", *ec, "-keyout", leaf_key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", leaf,
        "-days", "2", "-extfile", ext)
    return ca, leaf, leaf_key


def nginx_tls_lines(leaf, leaf_key):
    """What --https adds to nginx's server block: a TLS listener (HTTP/1.1, the same
    keep-alive settings) and stub_status on the plain one, to count accepted connections."""
    return (f"    listen 127.0.0.1:{NGINX_TLS_PORT} ssl reuseport backlog=4096;\n"
            f"    ssl_certificate {leaf};\n"
            f"    ssl_certificate_key {leaf_key};\n"
            "    ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    location = /nginx_status { stub_status; }\n")


def https_registry(directory, registry):
    """`registry` (of bench/scenarios/) with its nginx URLs on the TLS listener; its path."""
    text = open(os.path.join(HERE, "scenarios", registry)).read()
    plain = "http://127.0.0.1:18081/"
    assert plain in text, registry
    path = os.path.join(directory, registry.replace(".json", "_https.json"))
    with open(path, "w") as f:
        f.write(text.replace(plain, f"https://127.0.0.1:{NGINX_TLS_PORT}/"))
    return path


def nginx_accepts():
    """nginx's stub_status counters: (connections accepted, requests) so far."""
    text = urllib.request.urlopen("http://127.0.0.1:18081/nginx_status", timeout=5).read().decode()
    accepts, _handled, requests = (int(x) for x in text.splitlines()[2].split())
    return accepts, requests


def measure(name, proc, port, scenario, seconds, results):
    sc = SCENARIOS[scenario]
    c0 = cpu_seconds(proc.pid)
    res = wrk(f"http://127.0.0.1:{port}{sc['path']}", sc["script"], sc["body"], seconds, sc["conns"])
    res["cpu_us"] = (cpu_seconds(proc.pid) - c0) / max(res["total"], 1) * 1e6
    res["rss"] = peak_rss_mib(proc.pid)
    results.setdefault((scenario, name), []).append(res)
    print(f"  {scenario} {name}: {res['rps']:.0f} runs/s p99 {res['p99']:.2f} ms cpu {res['cpu_us']:.0f} us/run",
          file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="A,B,C,D,E,F")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--peer", action="append", default=[], help="NAME=SHELL COMMAND:PORT (scenario A)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--traced", action="store_true",
                    help="scenario A also with tracing on (100%% sampling, OTLP/HTTP export to a local receiver)")
    ap.add_argument("--https", action="store_true",
                    help="scenario A also against nginx over TLS (a CA made with openssl, --upstream-ca-file)")
    a = ap.parse_args()
    scenarios = [s.strip().upper() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}: the scenarios are {', '.join(sorted(SCENARIOS))}")
    if a.https and "A" not in scenarios:
        raise SystemExit("--https measures scenario A: include A in --scenarios")
    needs_nginx = any(s not in SLOW_UPSTREAM for s in scenarios)
    for tool in ("wrk", "nginx") if needs_nginx else ("wrk",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install -y wrk nginx-light")
    if a.https and not shutil.which("openssl"):
        raise SystemExit("openssl is missing: apt-get install -y openssl")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # B opens ~3000 sockets
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    results, upstreams, upstream_ms = {}, [], None
    tls_dir = tempfile.TemporaryDirectory(prefix="connector-bench-tls-") if a.https else None
    try:
        if needs_nginx:
            conf = "/tmp/connector-bench-nginx.conf"
            text = open(os.path.join(HERE, "nginx.conf")).read().replace("@BENCH_DIR@", HERE)
            if a.https:
                ca, leaf, leaf_key = make_pki(tls_dir.name)
                listen = "    listen 127.0.0.1:18081 reuseport backlog=4096;\n"
                assert listen in text, "bench/nginx.conf's listen line moved"
                text = text.replace(listen, listen + nginx_tls_lines(leaf, leaf_key))
            with open(conf, "w") as f:
                f.write(text)
            upstreams.append(start(["nginx", "-c", conf], 18081))
            if a.https:
                wait_port(NGINX_TLS_PORT)
        if any(s in SLOW_UPSTREAM for s in scenarios):
            upstreams.append(start([BIN, "mock-upstream", "--listen", "127.0.0.1:18082", "--latency-ms", "50",
                                    "--workers", "1"], 18082))
        if "B" in scenarios:
            # The floor of B, measured in the same run: the upstream alone at the same
            # concurrency. A runtime that cost nothing would keep 1000 upstream calls in flight
            # and make two per run, so it could run at most half the upstream's own rate (its
            # 50 ms timer rounds up a little, so this is below the nominal 1000 / 0.1 s).
            wrk("http://127.0.0.1:18082/users/me", "wrk_get_me.lua", None, 2, SCENARIOS["B"]["conns"])
            alone = [wrk("http://127.0.0.1:18082/users/me", "wrk_get_me.lua", None, 4, SCENARIOS["B"]["conns"])
                     for _ in range(2)]
            upstream_ms = (statistics.median(r["rps"] for r in alone), statistics.median(r["mean"] for r in alone))
            print(f"  B upstream alone: {upstream_ms[0]:.0f} calls/s, mean {upstream_ms[1]:.2f} ms", file=sys.stderr)
        for scenario in scenarios:
            # Peers run first so that every ratio is "against the first target", the baseline.
            targets = []
            if scenario == "A":
                for peer in a.peer:
                    name, rest = peer.split("=", 1)
                    cmd, port = rest.rsplit(":", 1)
                    targets.append((name, cmd, int(port)))
            if "variants" in SCENARIOS[scenario]:
                for i, (name, registry) in enumerate(SCENARIOS[scenario]["variants"]):
                    targets.append((name, ours_command(registry, OURS_PORT + i), OURS_PORT + i))
            else:
                targets.append(("ours", ours_command(SCENARIOS[scenario]["registry"]), OURS_PORT))
            if scenario == "A" and a.traced:
                receiver = otlp_receiver()
                upstreams.append(receiver)
                traced = ours_command(SCENARIOS[scenario]["registry"], OURS_PORT + 9) + [
                    "--otlp-endpoint", f"http://127.0.0.1:{receiver.port}"]
                targets.append(("ours-traced", traced, OURS_PORT + 9))
            if scenario == "A" and a.https:
                https = ours_command(https_registry(tls_dir.name, SCENARIOS[scenario]["registry"]), OURS_PORT + 8) + [
                    "--upstream-ca-file", ca]
                targets.append(("ours-https", https, OURS_PORT + 8))
            procs = []
            try:
                for name, cmd, port in targets:
                    p = start(cmd, port)
                    procs.append((name, p, port))
                    check_answer(port, SCENARIOS[scenario]["path"], scenario)
                    wrk(f"http://127.0.0.1:{port}{SCENARIOS[scenario]['path']}", SCENARIOS[scenario]["script"],
                        SCENARIOS[scenario]["body"], 2, SCENARIOS[scenario]["conns"])  # warm-up
                for _ in range(a.rounds):
                    for name, p, port in procs:
                        counted = a.https and scenario == "A" and name in ("ours", "ours-https")
                        before = nginx_accepts() if counted else None
                        measure(name, p, port, scenario, a.seconds, results)
                        if counted:
                            after = nginx_accepts()
                            # The status request itself is one connection and one request.
                            results[(scenario, name)][-1]["accepts"] = after[0] - before[0] - 1
                            results[(scenario, name)][-1]["upstream_requests"] = after[1] - before[1] - 1
            finally:
                for _, p, _ in procs:
                    stop(p)
    finally:
        for p in upstreams:
            stop(p)
        if tls_dir:
            tls_dir.cleanup()
    report(results, scenarios, a, upstream_ms)


def report(results, scenarios, a, upstream_ms=None):
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    print(f"\nrounds={a.rounds} seconds={a.seconds} (medians; CPU and RSS of the server process tree)")
    print(f"{'scenario':8} {'target':12} {'conns':>5} {'runs/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'CPU us/run':>10} {'peak RSS MiB':>12} {'non-2xx':>7} {'vs first':>8}")
    for scenario in scenarios:
        names = [n for (s, n) in results if s == scenario]
        first = results[(scenario, names[0])]
        for name in names:
            rows = results[(scenario, name)]
            print(f"{scenario:8} {name:12} {SCENARIOS[scenario]['conns']:5d} {med(rows, 'rps'):9.0f} "
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
    if ("A", "ours") in results and ("A", "ours-traced") in results:
        ours, traced = results[("A", "ours")], results[("A", "ours-traced")]
        print(f"A traced vs not: {med(traced, 'rps') / med(ours, 'rps'):.2f}x runs/s, "
              f"{med(traced, 'cpu_us') / med(ours, 'cpu_us'):.2f}x CPU per run, "
              f"{med(traced, 'p99') / med(ours, 'p99'):.2f}x p99")
        verdicts.append(("A CPU per run traced <= 1.10x untraced",
                         med(traced, "cpu_us") / med(ours, "cpu_us"), 1.10, False))
    if ("A", "ours") in results and ("A", "ours-https") in results:
        plain, https = results[("A", "ours")], results[("A", "ours-https")]
        conns = lambda rows, k: sum(r[k] for r in rows)
        print(f"A HTTPS vs HTTP upstream: {med(https, 'rps') / med(plain, 'rps'):.2f}x runs/s, "
              f"{med(https, 'cpu_us') / med(plain, 'cpu_us'):.2f}x CPU per run, "
              f"{med(https, 'p99') / med(plain, 'p99'):.2f}x p99; connections nginx accepted while "
              f"measured (kept alive after the warm-up): HTTPS {conns(https, 'accepts')} for "
              f"{conns(https, 'upstream_requests')} upstream requests, HTTP {conns(plain, 'accepts')} for "
              f"{conns(plain, 'upstream_requests')}")
        verdicts.append(("A HTTPS runs/s >= 0.80x plain HTTP", med(https, "rps") / med(plain, "rps"), 0.80, True))
    if ("A", "ours") in results and ("A", "bare-actix") in results:
        ours, bare = results[("A", "ours")], results[("A", "bare-actix")]
        verdicts += [
            ("A throughput >= 0.85x bare-actix", med(ours, "rps") / med(bare, "rps"), 0.85, True),
            ("A CPU per run <= 1.3x bare-actix", med(ours, "cpu_us") / med(bare, "cpu_us"), 1.3, False),
            ("A p99 <= 1.3x bare-actix", med(ours, "p99") / med(bare, "p99"), 1.3, False),
            ("A peak RSS <= 32 MiB", max(r["rss"] for r in ours), 32, False),
        ]
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
    for scenario, name in (("C", "ours"), ("D", "ours"), ("F", "sequential"), ("F", "parallel")):
        if (scenario, name) in results:
            bad = sum(r["bad"] for r in results[(scenario, name)])
            label = scenario if name == "ours" else f"{scenario} {name}"
            verdicts.append((f"{label} zero non-2xx", bad, 0, False))
    for label, value, limit, at_least in verdicts:
        ok = value >= limit if at_least else value <= limit
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.2f}")


if __name__ == "__main__":
    main()
