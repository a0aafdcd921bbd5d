#!/usr/bin/env python3
"""End-to-end test of scale-out through Redis (docs/spec.md §11, issue 15).

Starts, all on 127.0.0.1 with free ports and a temporary directory:
  * a token upstream (http.server in this process): `POST /oauth/token` answers after a delay
    and counts token requests per client_id; `/data/NAME` checks the bearer token;
    `/cacheable/NAME` answers `Cache-Control: public, max-age=60`; `/quota/NAME`, `/plain`
    and `POST /echo` count what they get,
  * `redis-server` (memory only),
  * three replicas of `connector-runtime serve` sharing that Redis (`--redis-url`,
    `--shared-state-key-file`),
  * `nginx` in front of the replicas (for the rolling restart).

Then it checks, in order:
  1. 60 concurrent runs of one OAuth connector spread over the replicas make exactly one token
     request, and every data call carries that token;
  2. Redis holds no token or client secret in clear, and every key starts `connector-runtime:`;
  3. a cacheable answer fetched through replica 1 is a `Cache Hit` on replicas 2 and 3 (the
     upstream sees one request);
  4. a quota of 5 (`rate_limit`) holds across replicas: 5 runs spread over them pass, the 6th
     is 429 `RATE_LIMITED` with `Retry-After`, and the upstream saw 5 (a simple connector and
     a composite);
  5. Redis stopped (SIGTERM) mid-load: every run succeeds, `/readyz` stays 200 on every
     replica, `connector_shared_state_errors_total` rises;
  6. Redis started again on the same port: the replicas reconnect by themselves and sharing
     resumes (a fresh grant is fetched once for all replicas, a new cacheable answer is shared);
  7. Redis frozen (SIGSTOP, slower than `--redis-timeout-ms`) mid-load: the same as 5, and
     after SIGCONT sharing works again;
  8. rolling restart behind nginx: 16 callers loop GET and POST executes through nginx while
     each replica in turn gets SIGTERM, exits, is started again on its port and becomes ready:
     no request fails.

With --no-redis only step 8 runs, on replicas without Redis (for a binary without shared
state). Prints one line per check and a closing `N passed, N failed` line; every process it
started is stopped before it exits (also on failure), and the logs of processes that failed
are printed.

Usage: scripts/e2e/shared_state.py [--binary target/release/connector-runtime]
       [--redis-server redis-server] [--nginx nginx] [--no-redis] [--keep]
"""

from __future__ import annotations

import argparse
import atexit
import collections
import datetime
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECRET = "e2e-client-secret-" + secrets.token_hex(8)
KEY_PREFIX = b"connector-runtime:"
# In every cacheable answer: cached answers are sealed in Redis too, so it must never show.
CACHE_MARKER = "e2e-cached-answer-" + secrets.token_hex(8)


class Fatal(Exception):
    """A failure after which the remaining checks cannot run."""


# --------------------------------------------------------------------------- checks

class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}" + (f" ({detail})" if detail else ""), flush=True)
        else:
            self.failed.append(what)
            print(f"  FAIL  {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok


CHECKS = Checks()
check = CHECKS.check


def section(title: str) -> None:
    print(f"\n-- {title}", flush=True)


# --------------------------------------------------------------------------- processes

class Proc:
    """A child process with its own log file."""

    def __init__(self, name: str, argv: list[str], logdir: Path):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.stopping = False  # set when we stop it: an exit after that is expected
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        PROCS.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """Sends `sig` and waits; kills after `timeout`. Returns the exit status (None if it
        had to be killed)."""
        self.stopping = True
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return None

    def failed(self) -> bool:
        """Exited on its own, or with a failure status after we stopped it."""
        rc = self.popen.poll()
        if rc is None:
            return False
        return not self.stopping or rc not in (0, -signal.SIGTERM)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


PROCS: list[Proc] = []


def stop_all() -> None:
    for proc in reversed(PROCS):
        if proc.alive():
            proc.stopping = True
            proc.popen.send_signal(signal.SIGCONT)
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.time() + 15
    for proc in reversed(PROCS):
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            print(f"e2e: {proc.name} (pid {proc.pid}) did not stop within 15 s of SIGTERM: killed")
            proc.popen.kill()
            proc.popen.wait()


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def free_port() -> int:
    """A port that was free a moment ago (whoever binds it must cope with losing it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float, interval: float = 0.05):
    """Polls `cond()` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.time() >= deadline:
            return None
        time.sleep(interval)


def listening_sockets(pid: int) -> list[str]:
    """The addresses process `pid` listens on (TCP, from /proc: its socket inodes matched
    against /proc/net/tcp and tcp6), as "host:port"."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10 or cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            addr, port = cols[1].split(":")
            raw = bytes.fromhex(addr)
            if v6:
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                host = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                host = socket.inet_ntop(socket.AF_INET, raw[::-1])
            found.append(f"{host}:{int(port, 16)}")
    return found


def check_loopback_only(extra: dict[str, list[str]]) -> None:
    """Every process this script started (and its own upstream) listens on 127.0.0.1 only."""
    where = dict(extra)
    for p in PROCS:
        if p.alive():
            where[p.name] = listening_sockets(p.pid)
    outside = {name: [a for a in addrs if not a.startswith("127.0.0.1:")] for name, addrs in where.items()}
    outside = {k: v for k, v in outside.items() if v}
    check("every process listens on 127.0.0.1 only", not outside and all(where.values()),
          ", ".join(f"{k} {' '.join(v)}" for k, v in where.items()) if not outside else f"{outside}")


# --------------------------------------------------------------------------- HTTP client

class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, elapsed: float):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"HTTP {self.status} {self.text()[:200]!r}"


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 20.0) -> Reply:
    """One request on a connection of its own (so no stale keep-alive connection can fail
    it); raises OSError / http.client.HTTPException when there is no answer."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    path = u.path + (f"?{u.query}" if u.query else "")
    start = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                     time.perf_counter() - start)
    finally:
        conn.close()


def try_request(method: str, url: str, **kw) -> Reply | None:
    try:
        return request(method, url, **kw)
    except (OSError, http.client.HTTPException):
        return None


def server_timing_desc(reply: Reply, entry: str) -> str | None:
    """The `desc` of Server-Timing entry `entry` (e.g. `cache`)."""
    header = reply.headers.get("server-timing", "")
    for part in re.findall(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+', header):
        fields = [f.strip() for f in part.split(";")]
        if fields and fields[0] == entry:
            for f in fields[1:]:
                if f.startswith("desc="):
                    return f[5:].strip('"')
    return None


# --------------------------------------------------------------------------- metrics

METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        if m:
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            out.append((m.group(1), dict(LABEL_RE.findall(m.group(2) or "")), value))
    return out


def metric(samples, name: str, **labels) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None if there is none."""
    found = [v for n, ls, v in samples if n == name and all(ls.get(k) == v2 for k, v2 in labels.items())]
    return sum(found) if found else None


# --------------------------------------------------------------------------- Redis

class RespError(Exception):
    pass


class Resp:
    """A minimal RESP2 client: enough to SCAN keys and read values of every type."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def cmd(self, *args):
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise RespError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RespError(f"unexpected RESP reply {line[:40]!r}")


def redis_dump(port: int) -> dict[bytes, tuple[bytes, list[bytes]]]:
    """Every key with its type and every byte string stored under it."""
    out = {}
    with Resp(port) as r:
        cursor = b"0"
        keys: list[bytes] = []
        while True:
            cursor, batch = r.cmd("SCAN", cursor, "COUNT", 1000)
            keys += batch
            if cursor == b"0":
                break
        for key in keys:
            kind = r.cmd("TYPE", key)
            if kind == b"string":
                values = [r.cmd("GET", key) or b""]
            elif kind == b"hash":
                values = r.cmd("HGETALL", key) or []
            elif kind == b"list":
                values = r.cmd("LRANGE", key, 0, -1) or []
            elif kind == b"set":
                values = r.cmd("SMEMBERS", key) or []
            elif kind == b"zset":
                values = r.cmd("ZRANGE", key, 0, -1, "WITHSCORES") or []
            elif kind == b"stream":
                values = [json.dumps(r.cmd("XRANGE", key, "-", "+"), default=repr).encode()]
            else:
                values = []  # gone between SCAN and TYPE
            out[key] = (kind, [v for v in values if isinstance(v, bytes)])
    return out


def redis_ping(port: int) -> bool:
    try:
        with Resp(port, timeout=1) as r:
            return r.cmd("PING") == b"PONG"
    except (OSError, RespError):
        return False


class Redis:
    """redis-server on 127.0.0.1, memory only; started again on the same port by start()."""

    def __init__(self, binary: str, tmp: Path):
        self.binary = binary
        self.tmp = tmp
        self.port: int | None = None
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> None:
        attempts = 5 if self.port is None else 1
        for _ in range(attempts):
            port = self.port or free_port()
            self.starts += 1
            proc = Proc(f"redis-{self.starts}", [
                self.binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                "--save", "", "--appendonly", "no", "--dir", str(self.tmp), "--daemonize", "no",
                "--loglevel", "notice"], self.tmp)
            ok = wait_until(lambda: not proc.alive() or
                            ("Ready to accept connections" in proc.log() and redis_ping(port)), 15)
            if ok and proc.alive():
                self.port, self.proc = port, proc
                return
            if proc.alive():
                raise Fatal(f"redis-server did not become ready on 127.0.0.1:{port} within 15 s; "
                            f"its log ends:\n{proc.tail()}")
            if "Address already in use" not in proc.log() or self.port is not None:
                raise Fatal(f"redis-server exited with {proc.popen.returncode}; its log ends:\n{proc.tail()}")
            PROCS.remove(proc)  # lost the port race: not a failure of redis
            print(f"e2e: 127.0.0.1:{port} was taken before redis-server bound it; another port")
        raise Fatal("redis-server: 5 free ports in a row were taken before it bound them")

    def stop(self) -> int | None:
        assert self.proc
        return self.proc.stop(timeout=10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


# --------------------------------------------------------------------------- upstream

class Upstream:
    """The token and data upstream, in this process (ThreadingHTTPServer on 127.0.0.1)."""

    def __init__(self, token_delay: float):
        self.token_delay = token_delay
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.tokens: dict[str, str] = {}  # token -> client_id
        self.bad: list[str] = []  # requests that were refused, for the report
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def answer(self, status: int, doc, headers: dict | None = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                path = urllib.parse.urlsplit(self.path).path
                body = self.body()
                if path == "/oauth/token":
                    form = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
                    cid = form.get("client_id", "")
                    upstream.count(f"token:{cid}")
                    if form.get("grant_type") != "client_credentials" or form.get("client_secret") != CLIENT_SECRET:
                        upstream.refuse(f"token request with bad form {sorted(form)}")
                        return self.answer(401, {"error": "invalid_client"})
                    time.sleep(upstream.token_delay)  # so concurrent runs really overlap
                    token = f"e2e-access-token-{cid}-{secrets.token_hex(16)}"
                    with upstream.lock:
                        upstream.tokens[token] = cid
                    return self.answer(200, {"access_token": token, "token_type": "Bearer",
                                             "expires_in": 3600})
                if path == "/echo":
                    upstream.count("echo")
                    time.sleep(0.02)
                    return self.answer(200, {"echo": body.decode(errors="replace")})
                return self.answer(404, {"error": f"no POST {path}"})

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                parts = path.strip("/").split("/")
                if parts[0] == "data" and len(parts) == 2:
                    upstream.count(f"data:{parts[1]}")
                    auth = self.headers.get("Authorization", "")
                    token = auth.removeprefix("Bearer ")
                    with upstream.lock:
                        cid = upstream.tokens.get(token) if auth.startswith("Bearer ") else None
                    if cid is None:
                        upstream.refuse(f"/data/{parts[1]} with Authorization {auth[:40]!r}")
                        return self.answer(401, {"error": "invalid_token"})
                    return self.answer(200, {"data": parts[1], "client_id": cid})
                if parts[0] == "cacheable" and len(parts) == 2:
                    n = upstream.count(f"cacheable:{parts[1]}")
                    return self.answer(200, {"name": parts[1], "served": n, "marker": CACHE_MARKER},
                                       {"Cache-Control": "public, max-age=60"})
                if parts[0] == "quota" and len(parts) == 2:
                    n = upstream.count(f"quota:{parts[1]}")
                    return self.answer(200, {"quota": parts[1], "served": n})
                if path == "/plain":
                    upstream.count("plain")
                    time.sleep(0.02)  # so SIGTERM finds runs in flight
                    return self.answer(200, {"plain": True})
                return self.answer(404, {"error": f"no GET {path}"})

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # 60 runs at once: the default backlog of 5 drops SYNs

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, key: str) -> int:
        with self.lock:
            self.counts[key] += 1
            return self.counts[key]

    def get(self, key: str) -> int:
        with self.lock:
            return self.counts[key]

    def refuse(self, what: str) -> None:
        with self.lock:
            self.bad.append(what)

    def issued_tokens(self) -> list[str]:
        with self.lock:
            return list(self.tokens)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- registry

def registry(up: str) -> dict:
    def oauth(client_id: str) -> dict:
        return {"type": "oauth_client_credentials", "config": {
            "client_id": client_id, "client_secret": "{{ get_secret('client_secret') }}",
            "token_url": f"{up}/oauth/token", "scope": "e2e"}}

    def token_connector(name: str) -> dict:
        # One grant (client_id) per connector, so each check starts with no token anywhere.
        return {"name": name, "url": f"{up}/data/{name}", "cache": "off",
                "authentication": oauth(f"e2e-{name}")}

    def cacheable(name: str) -> dict:
        return {"name": name, "url": f"{up}/cacheable/{name}"}

    quota = {"requests": 5, "per_seconds": 60}
    return {
        "connectors": [
            token_connector("token-burst"),
            token_connector("token-after-restart"),
            token_connector("token-after-stall"),
            token_connector("token-outage"),
            cacheable("cached-shared"),
            cacheable("cached-after-restart"),
            cacheable("cached-after-stall"),
            cacheable("cached-outage"),
            {"name": "quota-simple", "url": f"{up}/quota/simple", "cache": "off", "rate_limit": quota},
            {"name": "plain", "url": f"{up}/plain", "cache": "off"},
            {"name": "rr-get", "url": f"{up}/plain", "cache": "off"},
            {"name": "rr-post", "method": "POST", "url": f"{up}/echo",
             "headers": [{"key": "Content-Type", "value": "application/json"}],
             "request_body": "{{ body_text }}"},
        ],
        "composite_connectors": [
            {"name": "quota-composite", "rate_limit": quota, "steps": [
                {"name": "call", "url": f"{up}/quota/composite", "cache": "off"}]},
            {"name": "quota-step", "steps": [
                {"name": "call", "url": f"{up}/quota/step", "cache": "off", "rate_limit": quota}]},
            # A quota nobody reaches: every run of it is one Redis operation (tokens and
            # cached answers are served from the replica's own copy once it has one).
            {"name": "nudge", "rate_limit": {"requests": 1_000_000, "per_seconds": 1}, "steps": [
                {"name": "call", "url": f"{up}/plain", "cache": "off"}]},
            {"name": "rr-chain", "steps": [
                {"name": "first", "url": f"{up}/plain", "cache": "off"},
                {"name": "fetch", "url": f"{up}/data/rr-chain", "cache": "off",
                 "authentication": oauth("e2e-rr-chain")}]},
        ],
    }


# --------------------------------------------------------------------------- replicas

class Replica:
    def __init__(self, index: int, binary: str, common: list[str], tmp: Path):
        self.index = index
        self.name = f"replica-{index}"
        self.binary = binary
        self.common = common
        self.tmp = tmp
        self.port: int | None = None
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serving(self, proc: Proc, port: int) -> bool:
        for line in proc.log().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message") == "connector-runtime serving" and event.get("port") == port:
                return True
        return False

    def start(self) -> float:
        """Starts it (on its port, or a free one the first time) and waits for /readyz 200;
        returns the seconds that took."""
        attempts = 5 if self.port is None else 1
        t0 = time.time()
        for _ in range(attempts):
            port = self.port or free_port()
            self.starts += 1
            name = self.name if self.starts == 1 else f"{self.name}.start{self.starts}"
            proc = Proc(name, [self.binary, "serve", *self.common, "--listen", f"127.0.0.1:{port}"], self.tmp)
            if wait_until(lambda: not proc.alive() or self._serving(proc, port), 30) and proc.alive():
                self.port, self.proc = port, proc
                ready = wait_until(lambda: (r := try_request("GET", f"{self.base}/readyz", timeout=2))
                                   and r.status == 200, 30, 0.05)
                if not ready:
                    raise Fatal(f"{self.name}: /readyz not 200 within 30 s; its log ends:\n{proc.tail()}")
                return time.time() - t0
            if proc.alive():
                raise Fatal(f"{self.name} logged no 'connector-runtime serving' within 30 s; "
                            f"its log ends:\n{proc.tail()}")
            if "cannot listen on" not in proc.log() or self.port is not None:
                raise Fatal(f"{self.name} exited with {proc.popen.returncode}; its log ends:\n{proc.tail()}")
            PROCS.remove(proc)
            print(f"e2e: 127.0.0.1:{port} was taken before {self.name} bound it; another port")
        raise Fatal(f"{self.name}: 5 free ports in a row were taken before it bound them")

    def metrics(self):
        r = try_request("GET", f"{self.base}/metrics", timeout=5)
        if r is None or r.status != 200:
            raise Fatal(f"{self.name}: GET /metrics answered {r!r}")
        return parse_metrics(r.text())

    def execute(self, permalink: str, composite: bool = False, body: bytes | None = None,
                method: str = "GET") -> Reply:
        if composite:
            return request("POST", f"{self.base}/connectors/composite/{permalink}/execute", body=body or b"")
        return request(method, f"{self.base}/connectors/{permalink}/execute", body=body)


def run_concurrently(calls) -> list:
    """Runs every callable of `calls` at once (a barrier releases them together); returns
    their results in order (an exception is returned as its repr)."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def one(i, call):
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def ok_replies(results) -> tuple[int, list[str]]:
    bad = [f"#{i}: {r!r}" for i, r in enumerate(results) if not (isinstance(r, Reply) and r.status == 200)]
    return len(results) - len(bad), bad


# --------------------------------------------------------------------------- load

class Load:
    """Threads looping over `calls` (callables returning a Reply) until stopped or
    `max_seconds` pass; any non-2xx answer or exception is a failure."""

    def __init__(self, name: str, calls, threads: int, max_seconds: float = 120.0):
        self.name = name
        self.calls = calls
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.deadline = time.time() + max_seconds
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(threads)]

    def loop(self, i: int) -> None:
        n = i
        while not self.stop_event.is_set() and time.time() < self.deadline:
            what, call = self.calls[n % len(self.calls)]
            n += 1
            t0 = time.perf_counter()
            try:
                reply = call()
                problem = None if 200 <= reply.status < 300 else f"{reply!r}"
            except Exception as e:  # noqa: BLE001 - counted as a failed request
                problem = f"{type(e).__name__}: {e}"
            with self.lock:
                self.sent += 1
                self.latencies.append(time.perf_counter() - t0)
                if problem:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {what}: {problem}")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        return (f"{self.sent} requests, {len(self.failures)} failed, "
                f"p50 {statistics.median(lat) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")


class ReadyzProbe:
    """Polls /readyz of every replica every 100 ms in the background; records every answer
    that is not 200 (a connection error included)."""

    def __init__(self, replicas: list[Replica]):
        self.replicas = replicas
        self.stop_event = threading.Event()
        self.probes = 0
        self.bad: list[str] = []
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        deadline = time.time() + 120
        while not self.stop_event.is_set() and time.time() < deadline:
            for r in self.replicas:
                reply = try_request("GET", f"{r.base}/readyz", timeout=5)
                self.probes += 1
                if reply is None or reply.status != 200:
                    self.bad.append(f"{time.strftime('%H:%M:%S')} {r.name}: {reply!r}")
            self.stop_event.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=30)


# --------------------------------------------------------------------------- the checks

def shared_errors(replica: Replica) -> float:
    return metric(replica.metrics(), "connector_shared_state_errors_total") or 0.0


def connected(replica: Replica) -> float | None:
    return metric(replica.metrics(), "connector_shared_state_connected")


def check_single_token(replicas: list[Replica], up: Upstream, permalink: str, runs: int, what: str) -> None:
    """`runs` concurrent runs of OAuth connector `permalink` spread over the replicas: all
    succeed with one token request for its grant."""
    t0 = time.perf_counter()
    results = run_concurrently([lambda r=replicas[i % len(replicas)]: r.execute(permalink) for i in range(runs)])
    elapsed = time.perf_counter() - t0
    ok, bad = ok_replies(results)
    check(f"{what}: {runs} concurrent runs over {len(replicas)} replicas succeed", not bad,
          f"{ok}/{runs} in {elapsed:.2f} s" if not bad else f"{len(bad)} failed: {bad[:5]}")
    tokens = up.get(f"token:e2e-{permalink}")
    check(f"{what}: exactly one token request for the grant", tokens == 1,
          f"the token endpoint saw {tokens}")
    data = up.get(f"data:{permalink}")
    check(f"{what}: every data call carried an issued token", data == runs and not up.bad,
          f"{data} data calls; refused: {up.bad[:3]}")


def check_redis_clear(redis: Redis, up: Upstream, when: str) -> None:
    """Scans every key and reads every value: no issued token, client secret or cached
    answer in clear, every key under the runtime's prefix."""
    dump = redis_dump(redis.port)
    secrets_in_clear = ([t.encode() for t in up.issued_tokens()]
                        + [CLIENT_SECRET.encode(), CACHE_MARKER.encode()])
    check(f"{when}: Redis holds keys", len(dump) > 0, f"{len(dump)} keys")
    foreign = [k for k in dump if not k.startswith(KEY_PREFIX)]
    check(f"{when}: every Redis key starts with 'connector-runtime:'", not foreign, f"others: {foreign[:5]}")
    leaks = []
    for key, (kind, values) in dump.items():
        for s in secrets_in_clear:
            if s in key or any(s in v for v in values):
                leaks.append(f"{key[:80]!r} ({kind.decode()}) holds {s[:24].decode()}...")
    kinds = collections.Counter(kind.decode() for kind, _ in dump.values())
    names = collections.Counter(k[len(KEY_PREFIX):].split(b":")[0].decode(errors="replace") for k in dump)
    check(f"{when}: no token ({len(secrets_in_clear) - 2} issued), client secret or cached answer in clear "
          "in any key or value", not leaks,
          f"types {dict(kinds)}, kinds {dict(names)}" if not leaks else "; ".join(leaks[:5]))


def wait_cache_put(replica: Replica, before: float, redis: Redis | None, keys_before: int) -> bool:
    """Waits (2 s at most) for `replica`'s asynchronous write of a cache entry: its
    cache_put counter rises, or a new key appears in Redis."""
    def done():
        puts = metric(replica.metrics(), "connector_shared_state_operations_total", op="cache_put", outcome="ok")
        if puts is not None and puts > before:
            return True
        return redis is not None and len(redis_dump(redis.port)) > keys_before

    return bool(wait_until(done, 2.0, 0.05))


def check_shared_cache(replicas: list[Replica], up: Upstream, redis: Redis, permalink: str, what: str) -> None:
    r1, others = replicas[0], replicas[1:]
    puts_before = metric(r1.metrics(), "connector_shared_state_operations_total", op="cache_put", outcome="ok") or 0.0
    keys_before = len(redis_dump(redis.port))
    first = r1.execute(permalink)
    check(f"{what}: {r1.name} fetches it (Cache Miss)",
          first.status == 200 and server_timing_desc(first, "cache") == "Cache Miss",
          f"HTTP {first.status}, Server-Timing {first.headers.get('server-timing')!r}")
    stored = wait_cache_put(r1, puts_before, redis, keys_before)
    check(f"{what}: {r1.name} writes the entry to Redis within 2 s", stored,
          "cache_put ok counter rose or a key appeared" if stored else "no cache_put, no new key")
    for r in others:
        reply = r.execute(permalink)
        desc = server_timing_desc(reply, "cache")
        check(f"{what}: {r.name} answers it from the shared cache (Cache Hit)",
              reply.status == 200 and desc == "Cache Hit" and reply.body == first.body,
              f"HTTP {reply.status}, cache desc {desc!r}, same body: {reply.body == first.body}")
    n = up.get(f"cacheable:{permalink}")
    check(f"{what}: the upstream saw one request", n == 1, f"it saw {n}")


def check_quota(replicas: list[Replica], up: Upstream, permalink: str, composite: bool, counter: str,
                kind: str) -> None:
    statuses = []
    for i in range(5):
        r = replicas[i % len(replicas)]
        reply = r.execute(permalink, composite=composite)
        statuses.append((r.name, reply.status))
    check(f"quota ({kind}): 5 runs spread over the replicas pass",
          all(s == 200 for _, s in statuses), f"{statuses}")
    for r in (replicas[5 % len(replicas)], replicas[0]):
        reply = r.execute(permalink, composite=composite)
        doc = reply.json() or {}
        code = (doc.get("errors") or {}).get("code") if isinstance(doc, dict) else None
        retry_after = reply.headers.get("retry-after", "")
        check(f"quota ({kind}): the next run on {r.name} is 429 RATE_LIMITED with Retry-After",
              reply.status == 429 and code == "RATE_LIMITED" and retry_after.isdigit() and int(retry_after) >= 1,
              f"HTTP {reply.status}, code {code!r}, Retry-After {retry_after!r}")
    n = up.get(counter)
    check(f"quota ({kind}): the upstream saw exactly 5 calls", n == 5, f"it saw {n}")
    limited = sum(metric(r.metrics(), "connector_rate_limit_decisions_total", connector=permalink,
                         decision="limited", scope="shared") or 0 for r in replicas)
    check(f"quota ({kind}): the replicas count its shared 'limited' decisions", limited == 2,
          f"connector_rate_limit_decisions_total{{connector={permalink},decision=limited,scope=shared}} = {limited:g}")


def outage_calls(replicas: list[Replica]):
    calls = []
    for r in replicas:
        calls += [(f"{r.name} token-outage", lambda r=r: r.execute("token-outage")),
                  (f"{r.name} cached-outage", lambda r=r: r.execute("cached-outage")),
                  (f"{r.name} plain", lambda r=r: r.execute("plain")),
                  (f"{r.name} nudge", lambda r=r: r.execute("nudge", composite=True))]
    return calls


def check_outage(replicas: list[Replica], redis: Redis, how: str) -> None:
    """Redis stopped (`how`: SIGTERM, or SIGSTOP) in the middle of a load."""
    errors_before = [shared_errors(r) for r in replicas]
    log_marks = [len(r.proc.log().splitlines()) for r in replicas]
    with ReadyzProbe(replicas) as probe, Load(f"outage-{how}", outage_calls(replicas), threads=6) as load:
        time.sleep(1.5)
        t0 = time.time()
        if how == "SIGTERM":
            rc = redis.stop()
            check("Redis stopped with SIGTERM", rc == 0, f"exit status {rc}")
        else:
            redis.proc.send(signal.SIGSTOP)
        sent_before = load.sent
        time.sleep(4.0)
        during = load.sent - sent_before
        outage = time.time() - t0
        load.stop()
    check(f"Redis {how} mid-load: every run succeeds", not load.failures and during > 0,
          f"{load.summary()}; {during} during the {outage:.1f} s outage"
          if not load.failures else f"{load.summary()}: {load.failures[:5]}")
    check(f"Redis {how} mid-load: /readyz stays 200 on every replica", not probe.bad and probe.probes > 0,
          f"{probe.probes} probes" if not probe.bad else f"{probe.bad[:5]}")
    errors_after = [shared_errors(r) for r in replicas]
    rose = [a > b for a, b in zip(errors_after, errors_before)]
    check(f"Redis {how}: connector_shared_state_errors_total rose on every replica", all(rose),
          ", ".join(f"{r.name} {b:g} -> {a:g}" for r, b, a in zip(replicas, errors_before, errors_after)))
    gauges = [connected(r) for r in replicas]
    check(f"Redis {how}: connector_shared_state_connected is 0 on every replica",
          all(g == 0 for g in gauges), f"{gauges}")
    # At most one warning a minute: the first outage warns once on each replica; a later
    # one within the minute does not warn again.
    new = [len(shared_state_warnings(r.proc.log().splitlines()[mark:])) for r, mark in zip(replicas, log_marks)]
    gaps = [min_gap(shared_state_warnings(r.proc.log().splitlines())) for r in replicas]
    if how == "SIGTERM":
        check("Redis SIGTERM: each replica warns once", all(n == 1 for n in new),
              f"warnings per replica: {new}")
    check(f"Redis {how}: no replica warns twice within a minute", all(g is None or g >= 60 for g in gaps),
          f"new warnings per replica: {new}; shortest gap between two: {gaps}")


def shared_state_warnings(lines: list[str]) -> list[float]:
    """Times (Unix seconds) of the WARN lines about the shared state in a JSON log."""
    times = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (isinstance(event, dict) and str(event.get("level", "")).upper().startswith("WARN")
                and re.search(r"redis|shared state", str(event.get("message", "")), re.I)):
            stamp = str(event.get("timestamp", "")).replace("Z", "+00:00")
            try:
                times.append(datetime.datetime.fromisoformat(stamp).timestamp())
            except ValueError:
                times.append(time.time())
    return times


def min_gap(times: list[float]) -> float | None:
    return min((b - a for a, b in zip(times, times[1:])), default=None)


def wait_reconnected(replicas: list[Replica], timeout: float) -> float | None:
    """Waits until every replica reports connector_shared_state_connected 1, sending a run
    to each meanwhile (a client that reconnects on use gets its chance); returns seconds."""
    t0 = time.time()

    def all_connected():
        states = []
        for r in replicas:
            if connected(r) != 1:
                try_request("POST", f"{r.base}/connectors/composite/nudge/execute", timeout=5)
                states.append(False)
            else:
                states.append(True)
        return all(states)

    return time.time() - t0 if wait_until(all_connected, timeout, 0.2) else None


def check_rolling_restart(replicas: list[Replica], nginx_base: str, up: Upstream, seconds_between: float) -> None:
    payload_counter = iter(range(10**9))
    lock = threading.Lock()

    def post_echo():
        with lock:
            n = next(payload_counter)
        body = json.dumps({"caller": n}).encode()
        reply = request("POST", f"{nginx_base}/connectors/rr-post/execute", body=body,
                        headers={"Content-Type": "application/json"})
        if reply.status == 200 and (reply.json() or {}).get("echo") != body.decode():
            reply.status = 599  # a 200 with someone else's answer is a failure too
        return reply

    calls = [
        ("GET rr-get", lambda: request("GET", f"{nginx_base}/connectors/rr-get/execute")),
        ("POST rr-post", post_echo),
        ("POST composite rr-chain", lambda: request("POST", f"{nginx_base}/connectors/composite/rr-chain/execute",
                                                    body=b"{}", headers={"Content-Type": "application/json"})),
    ]
    restarts = []
    with Load("rolling", calls, threads=16, max_seconds=180) as load:
        time.sleep(seconds_between)
        for r in replicas:
            in_flight = metric(r.metrics(), "connector_runs_in_flight")
            t0 = time.time()
            rc = r.proc.stop(timeout=20)
            stopped = time.time() - t0
            check(f"rolling: {r.name} exits 0 after SIGTERM", rc == 0,
                  f"in {stopped:.2f} s, {in_flight:g} runs in flight at SIGTERM" if rc == 0
                  else f"exit status {rc} after {stopped:.2f} s; its log ends:\n{r.proc.tail(20)}")
            ready = r.start()
            restarts.append((r.name, stopped, ready))
            time.sleep(seconds_between)
        load.stop()
    check("rolling: 16 callers through nginx, no request fails while each replica restarts",
          not load.failures and load.sent >= 100,
          load.summary() if not load.failures else f"{load.summary()}:\n        " + "\n        ".join(load.failures[:20]))
    served = []
    for r in replicas:
        runs = metric(r.metrics(), "connector_runs_total", outcome="ok") or 0
        served.append(runs)
    check("rolling: every restarted replica is back in rotation (served runs)", all(s > 0 for s in served),
          ", ".join(f"{r.name} {s:g} runs" for r, s in zip(replicas, served)))
    print("        restarts: " + ", ".join(f"{n} stopped in {s:.2f} s, ready in {t:.2f} s" for n, s, t in restarts))


# --------------------------------------------------------------------------- nginx

NGINX_CONF = """\
# Generated by scripts/e2e/shared_state.py: three replicas behind one local nginx.
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream replicas {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /__e2e_nginx {{ return 200 "{marker}"; }}
        location / {{
            proxy_pass http://replicas;
            # Keep-alive connections to the replicas, as a real load balancer has: a replica
            # that shuts down closes its idle ones, which is part of what is tested.
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            # A request goes to another replica when the one chosen refused or dropped the
            # connection before answering (error), or did not connect in time (timeout).
            # non_idempotent lets that apply to POST too. That is acceptable here because
            # only failed connections are retried: a replica that has started to answer is
            # never asked again, and a draining replica answers every request it accepted
            # (http_5xx is not in the list, so no answer is ever retried). The read timeout
            # (30 s) is far above any run of this test, so no slow run is sent twice.
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


def start_nginx(binary: str, tmp: Path, replica_ports: list[int]) -> str:
    marker = secrets.token_hex(8)
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;" for p in replica_ports)
    for _ in range(5):
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, servers=servers, port=port, marker=marker))
        # The temp paths are the worker's; as root it runs as nobody, who must write there.
        os.chmod(tmp, 0o755)
        proc = Proc("nginx", [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")], tmp)

        def ours():
            r = try_request("GET", f"http://127.0.0.1:{port}/__e2e_nginx", timeout=1)
            return r is not None and r.status == 200 and r.text() == marker

        if wait_until(lambda: not proc.alive() or ours(), 15) and proc.alive():
            return f"http://127.0.0.1:{port}"
        errors = (tmp / "nginx-error.log").read_text(errors="replace") if (tmp / "nginx-error.log").exists() else ""
        if proc.alive() or "Address already in use" not in errors + proc.log():
            proc.stop()
            raise Fatal(f"nginx did not start on 127.0.0.1:{port}: {proc.log()[-2000:]}{errors[-2000:]}")
        PROCS.remove(proc)
        print(f"e2e: 127.0.0.1:{port} was taken before nginx bound it; another port")
    raise Fatal("nginx: 5 free ports in a row were taken before it bound them")


# --------------------------------------------------------------------------- main

def find_binary(name: str, given: str | None) -> str | None:
    if given:
        return given if Path(given).exists() or shutil.which(given) else None
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name)
                                       if p.exists()), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=str(ROOT / "target/release/connector-runtime"))
    ap.add_argument("--redis-server", help="redis-server binary (default: from PATH)")
    ap.add_argument("--nginx", help="nginx binary (default: from PATH or /usr/sbin)")
    ap.add_argument("--no-redis", action="store_true",
                    help="only the rolling restart, on replicas without shared state")
    ap.add_argument("--token-delay-ms", type=int, default=300,
                    help="how long the token endpoint takes (so concurrent runs overlap)")
    # The server's default (50 ms) is what is tested: it held in repeated runs here, also
    # with both cores kept busy by other processes. A larger value is for a slower machine.
    ap.add_argument("--redis-timeout-ms", type=int, help="passed to the replicas (default: theirs)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    binary = args.binary
    if not Path(binary).exists():
        raise SystemExit(f"FAIL: {binary} does not exist (cargo build --release)")
    nginx = find_binary("nginx", args.nginx)
    if not nginx:
        raise SystemExit("FAIL: no nginx binary; install Debian's 'nginx-light' package "
                         "(scripts/e2e.sh does)")
    redis_server = None
    if not args.no_redis:
        redis_server = find_binary("redis-server", args.redis_server)
        if not redis_server:
            raise SystemExit("FAIL: no redis-server binary; install Debian's 'redis-server' package "
                             "(scripts/e2e.sh does)")
        help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
        if "--redis-url" not in help_text:
            raise SystemExit(f"FAIL: {binary} has no `serve --redis-url` (shared state, docs/spec.md §11, "
                             "is not in this build); --no-redis runs only the rolling restart")

    tmp = Path(tempfile.mkdtemp(prefix="connector-runtime-scaleout-"))
    atexit.register(lambda: None if args.keep else shutil.rmtree(tmp, ignore_errors=True))
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"e2e: temp dir {tmp}")

    up = Upstream(args.token_delay_ms / 1000)
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(mode=0o700)  # the temp dir itself is opened to nginx's worker
    (secrets_dir / "client_secret").write_text(CLIENT_SECRET)
    (tmp / "registry.json").write_text(json.dumps(registry(up.base), indent=2))
    common = ["--registry", str(tmp / "registry.json"), "--allow-private-upstreams",
              "--secrets-dir", str(secrets_dir), "--workers", "2", "--log-format", "json",
              "--registry-poll-secs", "0", "--shutdown-timeout-secs", "10"]
    redis = None
    try:
        if redis_server:
            redis = Redis(redis_server, tmp)
            redis.start()
            key_file = tmp / "shared-state.key"
            key_file.write_bytes(os.urandom(32))
            key_file.chmod(0o600)
            common += ["--redis-url", redis.url, "--shared-state-key-file", str(key_file)]
            if args.redis_timeout_ms is not None:
                common += ["--redis-timeout-ms", str(args.redis_timeout_ms)]
            print(f"e2e: redis {redis.url}")
        replicas = [Replica(i + 1, binary, common, tmp) for i in range(3)]
        for r in replicas:
            r.start()
        print(f"e2e: upstream {up.base}, replicas " + ", ".join(r.base for r in replicas))

        if redis:
            section("1. one token request for 60 concurrent runs over 3 replicas")
            check_single_token(replicas, up, "token-burst", 60, "token")

            section("2. no token in clear in Redis")
            check_redis_clear(redis, up, "after the token runs")

            section("3. the response cache is shared")
            check_shared_cache(replicas, up, redis, "cached-shared", "cache")

            section("4. quotas hold across replicas")
            check_quota(replicas, up, "quota-simple", False, "quota:simple", "simple connector")
            check_quota(replicas, up, "quota-composite", True, "quota:composite", "composite")
            check_quota(replicas, up, "quota-step", True, "quota:step", "composite step")

            section("5. Redis stopped (SIGTERM) mid-load")
            check_outage(replicas, redis, "SIGTERM")

            section("6. Redis started again on the same port: sharing resumes by itself")
            redis.start()
            took = wait_reconnected(replicas, 15)
            check("every replica reconnects by itself", took is not None,
                  f"connector_shared_state_connected 1 everywhere {took:.1f} s after Redis was back"
                  if took is not None else f"connected gauges: {[connected(r) for r in replicas]}")
            check_single_token(replicas, up, "token-after-restart", 30, "after restart")
            check_shared_cache(replicas, up, redis, "cached-after-restart", "after restart")

            section("7. Redis frozen (SIGSTOP, slower than --redis-timeout-ms) mid-load")
            check_outage(replicas, redis, "SIGSTOP")
            redis.proc.send(signal.SIGCONT)
            took = wait_reconnected(replicas, 15)
            check("after SIGCONT every replica uses Redis again", took is not None,
                  f"{took:.1f} s" if took is not None else f"connected gauges: {[connected(r) for r in replicas]}")
            check_single_token(replicas, up, "token-after-stall", 30, "after SIGCONT")
            check_shared_cache(replicas, up, redis, "cached-after-stall", "after SIGCONT")
            check_redis_clear(redis, up, "with tokens, answers and quotas stored")

        section(f"8. rolling restart behind nginx{' (no Redis)' if not redis else ''}")
        nginx_base = start_nginx(nginx, tmp, [r.port for r in replicas])
        print(f"e2e: nginx {nginx_base}")
        check_loopback_only({"upstream (this script)": listening_sockets(os.getpid())})
        check_rolling_restart(replicas, nginx_base, up, seconds_between=1.5)
    except Fatal as e:
        check("the test could run to its end", False, str(e))
    finally:
        died = [p for p in PROCS if p.failed()]
        stop_all()
        up.close()
    died += [p for p in PROCS if p.failed() and p not in died]
    for p in died:
        check(f"{p.name} ran until it was stopped", False, f"exit status {p.popen.returncode}")
    failed = CHECKS.failed
    print(f"\nshared-state: {CHECKS.passed} passed, {len(failed)} failed")
    if failed:
        for p in PROCS:
            if p in died or p.name.startswith(("replica", "redis", "nginx")):
                print(f"\n--- {p.name}.log (last 40 lines)\n{p.tail()}")
        for extra in ("nginx-error.log",):
            path = tmp / extra
            if path.exists():
                print(f"\n--- {extra} (last 40 lines)\n" + "\n".join(path.read_text(errors='replace').splitlines()[-40:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
