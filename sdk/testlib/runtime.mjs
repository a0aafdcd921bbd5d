// The real things the SDK tests talk to, all on 127.0.0.1: the release binary of
// connector-runtime (`serve --listen 127.0.0.1:0`, its port read from its JSON log), a recording
// upstream (a Node http server that answers what the test asks for and keeps every request it
// got), and `mock-upstream` where the example registry needs it.
//
// The binary is target/release/connector-runtime (or CONNECTOR_RUNTIME_BIN). Without it every
// test that needs it fails, saying how to build it: nothing is skipped.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.CONNECTOR_RUNTIME_BIN
  ? path.resolve(process.env.CONNECTOR_RUNTIME_BIN)
  : path.join(ROOT, 'target', 'release', 'connector-runtime');

/** The binary's path; throws (the test fails) when it is missing. */
export function binary() {
  try {
    accessSync(BIN, fsConstants.X_OK);
  } catch {
    throw new Error(
      `the SDK tests need the release binary ${BIN}: run \`cargo build --release\` first (or set CONNECTOR_RUNTIME_BIN)`
    );
  }
  return BIN;
}

const children = new Set();
process.on('exit', () => {
  for (const proc of children) {
    try {
      proc.kill('SIGKILL');
    } catch {}
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A port that was free a moment ago (for `mock-upstream`, which cannot report port 0's). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `bin args...`; resolves with the first `pick(line)` that is not undefined. */
function startProcess(name, args, pick, { timeoutMs = 20000 } = {}) {
  const proc = spawn(binary(), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  const lines = [];
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn(v);
    };
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      finish(reject, new Error(`${name} did not start within ${timeoutMs} ms:\n${lines.slice(-20).join('\n')}`));
    }, timeoutMs);
    for (const stream of [proc.stdout, proc.stderr]) {
      let partial = '';
      stream.on('data', (chunk) => {
        const parts = (partial + chunk.toString('utf8')).split('\n');
        partial = parts.pop();
        for (const line of parts) {
          if (lines.length < 500) lines.push(line);
          const v = done ? undefined : pick(line);
          if (v !== undefined) finish(resolve, { proc, value: v, lines });
        }
      });
    }
    proc.on('close', (code, signal) =>
      finish(reject, Object.assign(new Error(`${name} exited (code ${code}, signal ${signal}) at start:\n${lines.slice(-20).join('\n')}`), { output: lines.join('\n') })));
  });
}

async function stopProcess(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts `connector-runtime serve` on 127.0.0.1:0 with `registry` (an object, written to a
 * temp file) and `variables`, `secrets` ({name: value}) and extra `args`. Resolves once
 * /readyz answers 200 with `{url, port, stop()}`.
 */
export async function startRuntime({ registry, variables = {}, secrets = null, args = [] } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'connector-runtime-sdk-test-'));
  const registryFile = path.join(dir, 'connectors_registry.json');
  writeFileSync(registryFile, JSON.stringify(registry, null, 2));
  const varsFile = path.join(dir, 'variables.json');
  writeFileSync(varsFile, JSON.stringify(variables));
  const full = ['serve', '--registry', registryFile, '--variables-file', varsFile, '--allow-private-upstreams',
    '--registry-poll-secs', '0', '--listen', '127.0.0.1:0', '--log-format', 'json', ...args];
  if (secrets) {
    const secretsDir = path.join(dir, 'secrets');
    mkdirSync(secretsDir);
    for (const [k, v] of Object.entries(secrets)) writeFileSync(path.join(secretsDir, k), v);
    full.push('--secrets-dir', secretsDir);
  }
  const { proc, value: port } = await startProcess('connector-runtime serve', full, (line) => {
    try {
      const event = JSON.parse(line);
      return event.message === 'connector-runtime serving' && Number.isInteger(event.port) ? event.port : undefined;
    } catch {
      return undefined;
    }
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      const res = await fetch(url + '/readyz');
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`the runtime at ${url} was not ready within 20 s`);
    await sleep(50);
  }
  return {
    url,
    port,
    proc,
    async stop() {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts `connector-runtime mock-upstream` on a free port; `{url, stop()}`. */
export async function startMockUpstream({ latencyMs = 0 } = {}) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      const { proc } = await startProcess('mock-upstream', ['mock-upstream', '--listen', `127.0.0.1:${port}`, '--latency-ms', String(latencyMs)],
        (line) => (line.startsWith(`mock-upstream listening on http://127.0.0.1:${port}`) ? true : undefined));
      return { url: `http://127.0.0.1:${port}`, stop: () => stopProcess(proc) };
    } catch (e) {
      if (!/cannot listen on/.test(e.output ?? '')) throw e;
    }
  }
  throw new Error('mock-upstream lost 5 free ports in a row');
}

/** A member token signed by the demo key (`connector-runtime demo token`). */
export function demoToken(sub) {
  return new Promise((resolve, reject) => {
    execFile(binary(), ['demo', 'token', '--sub', sub, '--ttl-secs', '3600'], { timeout: 20000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`demo token failed: ${err.message}\n${stderr}`));
      else resolve(String(stdout).trim());
    });
  });
}

/** The runtime flags that trust the demo key (deploy/demo-jwks.json). */
export const DEMO_IDENTITY_ARGS = [
  '--identity-issuer', 'connector-runtime-demo',
  '--identity-audience', 'connector-runtime-demo',
  '--identity-jwks-file', path.join(ROOT, 'deploy', 'demo-jwks.json'),
];

/**
 * A real upstream: a Node http server on 127.0.0.1 that keeps every request it gets
 * (`requests`: {method, path, query (decoded pairs), headers (lower-case names), body}) and
 * answers with `handler(record, req, res)` when one is set and it handles the request, else:
 *
 * - `/answer?status=S&type=T&body=B&delay_ms=D`: status S (200), Content-Type T (none when
 *   empty), body B, after D ms;
 * - `/hang`: never answers (until the client goes; `closed` lists the paths whose client went);
 * - anything else: 200, JSON of the record.
 */
export async function startUpstream(handler = null) {
  const requests = [];
  const closed = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url, 'http://upstream');
      const record = {
        method: req.method,
        path: u.pathname,
        query: [...u.searchParams],
        headers: { ...req.headers },
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(record);
      res.on('close', () => {
        if (!res.writableFinished) closed.push(record.path);
      });
      if (up.handler && up.handler(record, req, res) !== false) return;
      if (u.pathname === '/hang') return;
      if (u.pathname === '/answer') {
        const q = u.searchParams;
        const send = () => {
          const headers = {};
          if (q.get('type')) headers['Content-Type'] = q.get('type');
          res.writeHead(Number(q.get('status') || 200), headers);
          res.end(q.get('body') || '');
        };
        const delay = Number(q.get('delay_ms') || 0);
        if (delay > 0) setTimeout(send, delay);
        else send();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(record));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  // A test whose setup failed half-way must not hang its file on a forgotten server.
  server.unref();
  const up = {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    closed,
    handler,
    /** The last request it got (fails when none). */
    last() {
      if (requests.length === 0) throw new Error('the upstream got no request');
      return requests[requests.length - 1];
    },
    /** Forgets the requests so far. */
    reset() {
      requests.length = 0;
      closed.length = 0;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
  return up;
}

/** Waits until `cond()` is true (polls every 10 ms); fails after `ms`. */
export async function waitFor(cond, ms = 5000, what = 'the condition') {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
