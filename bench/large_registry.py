#!/usr/bin/env python3
"""connector-runtime with a large registry (issue 19): start-up, memory and reload of 10,000 connectors.

    python3 bench/large_registry.py                       # 5,000 simple + 5,000 composites
    python3 bench/large_registry.py --connectors 2000 --no-build
    python3 bench/large_registry.py --write-only /tmp/reg.json   # only write the registry

Generates a registry (deterministic) the way registry authors write one: templated URLs with
path and query parameters, headers with `get_secret(...)`, JSON request bodies reading
`request.body_text | from_json`, a second step reading the first one's answer, some
`response_body` transforms; every connector's text differs (resource, field and secret names),
as in a real registry. The calls go to the bench upstream (nginx, bench/nginx.conf, on
127.0.0.1:--upstream-port; an upstream that already answers there is used as it is, else this
starts one): the connectors that wrk calls use only its `/oauth/token` and `/users/me`.

It starts the release server on the registry and measures:
  * ready: from starting the process to the first `GET /readyz` 200;
  * RSS after ready (VmRSS of /proc/PID/status) and the peak (VmHWM) at the end;
  * reload: the registry file is changed (a few connectors edited) and the server sent SIGHUP
    while wrk drives a simple connector and a composite; the reload's own duration is
    `connector_registry_load_duration_seconds` (read and build), and the time from the signal
    to `connector_registry_loads_total{result="ok"}` counting it is measured from outside;
  * failed requests while it reloads: wrk's non-2xx responses and socket errors;
  * CPU: the server's user + system time to ready, and that of its thread `main` (where the
    registry actor builds) over the reload: on a busy machine the wall-clock figures mostly measure
    the wait for a core.

The server is given the file through a symlink into another directory, so the file watcher
(which watches the symlink's directory) does not see the edit and SIGHUP alone reloads it.

Prints a table and a PASS/FAIL line per target. `main(argv)` returns the exit status (1 when a
target fails), so bench/run.py can call it.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from run import stop  # bench/run.py: SIGTERM the process group, SIGKILL after 10 s
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "connector-runtime")
SERVER_PORT = 18650
TOKEN = "tok-4f2a9c"  # what the bench upstream's /oauth/token hands out and /users/me wants

TARGETS = {"ready_s": 2.0, "rss_mib": 128.0, "reload_s": 2.0, "failed": 0}

RESOURCES = ["items", "orders", "invoices", "customers", "tickets", "projects", "accounts", "products",
             "shipments", "contacts", "leads", "assets", "events", "payments", "reports", "tasks"]
FIELDS = ["id", "name", "status", "created_at", "owner", "total", "currency", "email", "title", "priority"]
SECRET_FAMILIES = 50  # API families: each has its own token and client secret


def simple_connector(i, port, rev=0):
    """Simple connector `i`. Connector 0 is one of wrk's targets: GET /users/me."""
    res = RESOURCES[i % len(RESOURCES)]
    family = i % SECRET_FAMILIES
    fields = ",".join(FIELDS[(i + k) % len(FIELDS)] for k in range(3))
    base = f"http://127.0.0.1:{port}"
    if i == 0:
        url = base + "/users/me?account={{ pathParams.account_id }}&expand={{ pathParams.expand }}"
    else:
        url = base + f"/v{1 + i % 3}/{res}/{{{{ pathParams.account_id }}}}/{res}-{i}?expand={{{{ pathParams.expand }}}}"
    connector = {
        "name": f"Get {res.title()} {i}",
        "permalink": f"get-{res}-{i}",
        "url": url,
        "method": "GET",
        "path_parameters": [{"key": "account_id"}, {"key": "expand", "value": "summary"}],
        "query_parameters": [
            {"key": "limit", "value": str(10 + i % 40), "overridable": True},
            {"key": "fields", "value": fields},
            {"key": "since", "value": "{{ now(-86400 * %d) }}" % (1 + i % 7)},
        ],
        "headers": [
            {"key": "Accept", "value": "application/json"},
            {"key": "Authorization", "value": "Bearer {{ get_secret('api_token_%d') }}" % family},
            {"key": "X-Client", "value": f"widget-{res}-{i % 97}"},
        ],
    }
    if i % 5 == 4:  # a write: POST with a JSON body built from the caller's
        connector["method"] = "POST"
        connector["headers"].append({"key": "Content-Type", "value": "application/json"})
        connector["request_body"] = (
            '{"%s": {"name": "{{ body_text | from_json | attr(\'name\') }}", '
            '"quantity": {{ (body_text | from_json).quantity | default(1) }}, "source": "connector-%d"}}' % (res, i))
    if i % 2 == 0:  # a transform of the answer
        picked = ", ".join(f"'{f}': doc.{f}" for f in ("id", "name", FIELDS[i % len(FIELDS)]))
        connector["response_body"] = (
            "{% set doc = response.body | from_json %}{{ {" + picked + ", 'connector': " + str(i) + "} | tojson }}")
        connector["response_content_type"] = "application/json"
    if rev and i % 1000 == 1:  # the edit a reload publishes
        connector["headers"][2]["value"] += f"-rev{rev}"
    return connector


def composite_connector(i, port, rev=0):
    """Two-step composite `i`: a token, then a call with it. Composite 0 is wrk's target."""
    res = RESOURCES[(i * 7) % len(RESOURCES)]
    family = i % SECRET_FAMILIES
    base = f"http://127.0.0.1:{port}"
    auth = {
        "name": "auth",
        "url": base + "/oauth/token",
        "method": "POST",
        "headers": [
            {"key": "Content-Type", "value": "application/json"},
            {"key": "X-Client-Secret", "value": "{{ get_secret('client_secret_%d') }}" % family},
        ],
        "request_body": (
            '{"client_id": "{{ request.body_text | from_json | attr(\'clientId\') }}", '
            '"grant_type": "client_credentials", "scope": "%s:read %s:write", "audience": "aud-%d"}' % (res, res, i)),
    }
    fetch_url = base + "/users/me" if i == 0 else base + f"/{res}/{{{{ steps.auth.body | from_json | attr('account') }}}}/items-{i}"
    fetch = {
        "name": "fetch",
        "url": fetch_url,
        "method": "GET",
        "headers": [
            {"key": "Authorization", "value": "Bearer {{ steps.auth.body | from_json | attr('access_token') }}"},
            {"key": "X-Request-Source", "value": f"composite-{i}"},
        ],
        "query_parameters": [
            {"key": "page_size", "value": "{{ request.query_parameters.page_size | default('%d', true) }}" % (20 + i % 30)},
            {"key": "view", "value": res},
        ],
    }
    if i % 2 == 1:
        # The first step answers the token alone; the second reads it as it is.
        auth["response_body"] = "{{ response.body | from_json | attr('access_token') }}"
        fetch["headers"][0]["value"] = "Bearer {{ steps.auth.body }}"
        if i != 0:
            fetch["url"] = base + f"/{res}/me/items-{i}"
    if i % 3 == 0:
        fetch["response_body"] = (
            "{% set u = response.body | from_json %}"
            "{{ {'id': u.id, 'name': u.name, '" + FIELDS[i % len(FIELDS)] + "': u.get('" + FIELDS[i % len(FIELDS)]
            + "'), 'composite': " + str(i) + "} | tojson }}")
        fetch["response_content_type"] = "application/json"
    if rev and i % 1000 == 1:
        fetch["headers"][1]["value"] += f"-rev{rev}"
    return {"name": f"Sync {res.title()} {i}", "permalink": f"sync-{res}-{i}", "steps": [auth, fetch]}


def registry(simple, composite, port, rev=0):
    """The registry as a dict: `simple` simple connectors and `composite` composites."""
    return {
        "connectors": [simple_connector(i, port, rev) for i in range(simple)],
        "composite_connectors": [composite_connector(i, port, rev) for i in range(composite)],
    }


def write_registry(path, simple, composite, port, rev=0):
    text = json.dumps(registry(simple, composite, port, rev), indent=1)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return len(text)


def write_secrets(directory):
    os.makedirs(directory, exist_ok=True)
    for family in range(SECRET_FAMILIES):
        for name, value in ((f"api_token_{family}", TOKEN), (f"client_secret_{family}", f"cs-{family}")):
            with open(os.path.join(directory, name), "w") as f:
                f.write(value)


def answers(port, timeout=0.5):
    try:
        socket.create_connection(("127.0.0.1", port), timeout).close()
        return True
    except OSError:
        return False


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_s(pid, tid=None):
    """utime + stime of process `pid` (or of its thread `tid`), in seconds."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port, name, labels=""):
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r"\s+(\S+)"
    m = re.search(r"^" + pattern + r"$", text.decode(), re.M)
    return float(m.group(1)) if m else None


def start_upstream(port):
    """The bench nginx on `port` unless something answers there already; the process or None."""
    if answers(port):
        return None
    if not shutil.which("nginx"):
        raise SystemExit("nginx is missing: apt-get install -y nginx-light")
    conf = tempfile.NamedTemporaryFile("w", prefix="connector-large-nginx-", suffix=".conf", delete=False)
    text = open(os.path.join(HERE, "nginx.conf")).read().replace("@BENCH_DIR@", HERE)
    text = text.replace("listen 127.0.0.1:18081", f"listen 127.0.0.1:{port}")
    text = text.replace("/tmp/connector-bench-nginx.pid", conf.name + ".pid")
    conf.write(text)
    conf.close()
    p = subprocess.Popen(["nginx", "-c", conf.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    end = time.time() + 10
    while not answers(port):
        if time.time() > end or p.poll() is not None:
            raise SystemExit(f"nginx did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    return p


def wrk_script(directory, name, method, body, headers):
    path = os.path.join(directory, name)
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_wrk(url, script, seconds, conns, out):
    res = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", script, url],
                         capture_output=True, text=True).stdout
    total = re.search(r"(\d+) requests in", res)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", res)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", res)
    out.append(dict(url=url, total=int(total.group(1)) if total else 0,
                    non2xx=int(bad.group(1)) if bad else 0,
                    socket=sum(int(x) for x in errs.groups()) if errs else 0, raw=res))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connectors", type=int, default=10_000, help="half simple, half two-step composites")
    ap.add_argument("--upstream-port", type=int, default=18081)
    ap.add_argument("--port", type=int, default=SERVER_PORT, help="the server's port")
    ap.add_argument("--bin", default=BIN)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--seconds", type=int, default=6, help="wrk's run, with the SIGHUP in its middle")
    ap.add_argument("--conns", type=int, default=4, help="wrk connections per target connector")
    ap.add_argument("--write-only", metavar="PATH", help="write the registry (and secrets beside it) and stop")
    a = ap.parse_args(argv)
    simple, composite = a.connectors - a.connectors // 2, a.connectors // 2
    if a.write_only:
        size = write_registry(a.write_only, simple, composite, a.upstream_port)
        write_secrets(os.path.join(os.path.dirname(os.path.abspath(a.write_only)), "secrets"))
        print(f"wrote {a.write_only}: {simple} simple + {composite} composite connectors, {size / 1e6:.1f} MB; "
              f"secrets in {os.path.join(os.path.dirname(os.path.abspath(a.write_only)), 'secrets')}")
        return 0
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.TemporaryDirectory(prefix="connector-large-")
    data_dir, serve_dir = os.path.join(work.name, "data"), os.path.join(work.name, "serve")
    os.makedirs(data_dir)
    os.makedirs(serve_dir)
    data = os.path.join(data_dir, "connectors_registry.json")
    served = os.path.join(serve_dir, "connectors_registry.json")
    size = write_registry(data, simple, composite, a.upstream_port)
    os.symlink(data, served)
    secrets = os.path.join(work.name, "secrets")
    write_secrets(secrets)
    upstream = start_upstream(a.upstream_port)
    server = None
    log = open(os.path.join(work.name, "server.log"), "w+")
    try:
        t0 = time.perf_counter()
        server = subprocess.Popen([a.bin, "serve", "--registry", served, "--listen", f"127.0.0.1:{a.port}",
                                   "--allow-private-upstreams", "--registry-poll-secs", "0", "--secrets-dir", secrets],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        ready = None
        while time.perf_counter() - t0 < 120:
            if server.poll() is not None:
                log.seek(0)
                raise SystemExit(f"the server exited ({server.returncode}):\n{log.read()[-3000:]}")
            try:
                if http_get(f"http://127.0.0.1:{a.port}/readyz", timeout=1)[0] == 200:
                    ready = time.perf_counter() - t0
                    break
            except OSError:
                pass
            time.sleep(0.01)
        if ready is None:
            raise SystemExit("the server was not ready within 120 s")
        time.sleep(0.5)  # let start-up's transient allocations settle
        ready_cpu = cpu_s(server.pid)
        rss = status_kib(server.pid, "VmRSS") / 1024
        hwm_ready = status_kib(server.pid, "VmHWM") / 1024
        build_s = metric(a.port, "connector_registry_load_duration_seconds")

        simple_url = f"http://127.0.0.1:{a.port}/connectors/{simple_connector(0, a.upstream_port)['permalink']}/execute"
        composite_url = (f"http://127.0.0.1:{a.port}/connectors/composite/"
                         f"{composite_connector(0, a.upstream_port)['permalink']}/execute")
        get_script = wrk_script(work.name, "get.lua", "GET", None, {"X-Path-Params": "account_id=acc-1"})
        post_script = wrk_script(work.name, "post.lua", "POST", '{"clientId":"widget-42"}',
                                 {"Content-Type": "application/json"})
        for url, method, body, headers, want in (
                (simple_url, "GET", None, {"X-Path-Params": "account_id=acc-1"}, b"Ada Lovelace"),
                (composite_url, "POST", b'{"clientId":"widget-42"}', {"Content-Type": "application/json"},
                 b"Ada Lovelace")):
            req = urllib.request.Request(url, data=body, method=method, headers=headers)
            answer = urllib.request.urlopen(req, timeout=10).read()
            if want not in answer:
                raise SystemExit(f"{url} answered {answer[:300]!r}")

        loads_before = metric(a.port, "connector_registry_loads_total", 'result="ok"') or 0
        write_registry(data, simple, composite, a.upstream_port, rev=1)
        results = []
        threads = [threading.Thread(target=run_wrk, args=(u, s, a.seconds, a.conns, results))
                   for u, s in ((simple_url, get_script), (composite_url, post_script))]
        for t in threads:
            t.start()
        time.sleep(a.seconds / 3)
        # The registry actor, which builds, runs on the thread named `main` (the actix
        # system's, which main.rs starts with a larger stack).
        main_tid = next((int(t) for t in os.listdir(f"/proc/{server.pid}/task")
                         if open(f"/proc/{server.pid}/task/{t}/comm").read().strip() == "main"), server.pid)
        main_cpu = cpu_s(server.pid, main_tid)
        signalled = time.perf_counter()
        os.kill(server.pid, signal.SIGHUP)
        reload_wall = None
        while time.perf_counter() - signalled < 60:
            if (metric(a.port, "connector_registry_loads_total", 'result="ok"') or 0) > loads_before:
                reload_wall = time.perf_counter() - signalled
                break
            time.sleep(0.01)
        reload_cpu = cpu_s(server.pid, main_tid) - main_cpu
        reload_s = metric(a.port, "connector_registry_load_duration_seconds")
        for t in threads:
            t.join()
        failed_loads = metric(a.port, "connector_registry_loads_total", 'result="failed"') or 0
        time.sleep(0.5)
        rss_after = status_kib(server.pid, "VmRSS") / 1024
        hwm = status_kib(server.pid, "VmHWM") / 1024
    finally:
        stop(server)
        stop(upstream)
    requests = sum(r["total"] for r in results)
    failed = sum(r["non2xx"] + r["socket"] for r in results)
    if reload_wall is None:
        log.seek(0)
        print(log.read()[-3000:], file=sys.stderr)
    work.cleanup()

    print(f"\nregistry: {simple} simple + {composite} two-step composite connectors, {size / 1e6:.1f} MB of JSON")
    rows = [
        ("ready (start -> /readyz 200)", f"{ready:.2f} s"),
        ("registry build at start", f"{build_s:.2f} s" if build_s is not None else "-"),
        ("server CPU to ready (user + sys)", f"{ready_cpu:.2f} s"),
        ("RSS after ready (VmRSS)", f"{rss:.1f} MiB"),
        ("peak RSS at ready (VmHWM)", f"{hwm_ready:.1f} MiB"),
        ("per connector (RSS / connectors)", f"{rss * 1024 / max(a.connectors, 1):.1f} KiB"),
        ("reload build (load duration metric)", f"{reload_s:.2f} s" if reload_s is not None else "-"),
        ("reload, SIGHUP -> published", f"{reload_wall:.2f} s" if reload_wall is not None else "never"),
        ("reload CPU (thread `main`, user + sys)", f"{reload_cpu:.2f} s"),
        ("RSS after reload (VmRSS)", f"{rss_after:.1f} MiB"),
        ("peak RSS over the run (VmHWM)", f"{hwm:.1f} MiB"),
        ("requests during the wrk run", f"{requests}"),
        ("failed (non-2xx + socket errors)", f"{failed}"),
        ("failed registry loads", f"{failed_loads:.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:{width}}  {v:>12}")
    for r in results:
        if r["non2xx"] or r["socket"]:
            print(f"  {r['url']}: {r['non2xx']} non-2xx, {r['socket']} socket errors", file=sys.stderr)
    verdicts = [
        ("large registry ready", ready, TARGETS["ready_s"], "s"),
        ("large registry RSS after ready", rss, TARGETS["rss_mib"], "MiB"),
        ("large registry reload", reload_wall if reload_wall is not None else float("inf"), TARGETS["reload_s"], "s"),
        ("large registry failed requests during reload", failed, TARGETS["failed"], ""),
    ]
    ok_all = requests > 0 and failed_loads == 0
    print()
    for label, value, limit, unit in verdicts:
        ok = value <= limit
        ok_all &= ok
        shown = f"{value:.2f} {unit}".strip() if unit else f"{value}"
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {shown} (<= {limit:g}{' ' + unit if unit else ''})")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
