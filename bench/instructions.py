#!/usr/bin/env python3
"""Instructions per run: the CPU work one run costs a server, counted by valgrind's callgrind,
so the figure repeats to within a fraction of a percent whatever else the machine is doing
(wall-clock figures on a shared machine move by +-10% between runs).

The server runs under callgrind; the harness sends WARMUP requests on one keep-alive
connection, zeroes the counters, sends RUNS more, dumps, and divides the instructions of the
dump (every process's, with --trace-children=yes) by RUNS. Requests are sequential, so this is
the cost of the work itself, not of contention. The upstream (bench/nginx.conf, started by
bench/run.py) must be listening.

bench/run.py --instructions calls `count()` for the floors and ours; standalone, for scenario A:
  python3 bench/instructions.py ours 18094 target/release/connector-runtime serve \\
      --registry bench/scenarios/a_auth_and_fetch.json --listen 127.0.0.1:18094 \\
      --allow-private-upstreams --workers 1
Needs: valgrind (Debian package), which provides callgrind_control.
CALLGRIND_ARGS (environment) adds callgrind options, e.g. the whole call chain of one function
in the dump (`bench/run.py --instructions --callgrind-dir D` keeps it):
  CALLGRIND_ARGS="--separate-callers16=mi_arenas_page_alloc_fresh"
"""
import glob
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

WARMUP, RUNS = 300, 2000
PATH = "/connectors/composite/auth-and-fetch-user/execute"
A_REQUEST = dict(method="POST", path=PATH, body=b'{"clientId":"widget-42"}',
                 headers={"Content-Type": "application/json"}, expect=(b"Ada Lovelace",))


def count(name, port, cmd, request=None, warmup=WARMUP, runs=RUNS, env=None, keep=None):
    """Instructions per run of `cmd` (a server listening on 127.0.0.1:`port`) answering
    `request` (method, path, body, headers, expect: byte strings the answer must hold).
    With `keep` (a directory), the dumps are copied there as NAME.callgrind.PID, for
    `callgrind_annotate --inclusive=yes`."""
    if not shutil.which("callgrind_control"):
        raise SystemExit("valgrind is missing: apt-get install -y valgrind")
    request = request or A_REQUEST
    work = tempfile.mkdtemp(prefix="connector-bench-callgrind-")
    out = os.path.join(work, name)
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
                               "--trace-children=yes"] + os.environ.get("CALLGRIND_ARGS", "").split() + list(cmd),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              start_new_session=True)
    try:
        for _ in range(1200):
            if server.poll() is not None:
                raise SystemExit(f"{name}: exited with {server.returncode} under valgrind: {' '.join(cmd)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.connect()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"{name}: nothing listening on {port}")

        def run(n):
            for _ in range(n):
                conn.request(request["method"], request["path"], body=request["body"], headers=request["headers"])
                r = conn.getresponse()
                body = r.read()
                if r.status != 200 or any(want not in body for want in request["expect"]):
                    raise SystemExit(f"{name}: answered {r.status} {body[:160]!r}")

        run(warmup)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True)
        run(runs)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True)
        total = 0
        for _ in range(50):  # the dump is written asynchronously
            time.sleep(0.2)
            dumps = glob.glob(out + ".*.1")  # the dump made after zeroing, one per process
            if dumps and all(_totals(f) is not None for f in dumps):
                total = sum(_totals(f) for f in dumps)
                if keep:
                    os.makedirs(keep, exist_ok=True)
                    for f in dumps:
                        shutil.copy(f, os.path.join(keep, f"{name}.callgrind.{f.rsplit('.', 2)[1]}"))
                break
        if not total:
            raise SystemExit(f"{name}: no callgrind dump found in {work}")
        return total / runs
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(work, ignore_errors=True)


def _totals(path):
    m = re.search(r"^(?:totals|summary):\s+(\d+)", open(path, errors="replace").read(), re.M)
    return int(m.group(1)) if m else None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3:
        raise SystemExit(__doc__)
    name, port, cmd = argv[0], int(argv[1]), argv[2:]
    print(f"{name}: {count(name, port, cmd):,.0f} instructions per run")


if __name__ == "__main__":
    main()
