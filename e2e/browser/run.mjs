#!/usr/bin/env node
// Browser end-to-end test of connector-runtime: headless Chromium (the system's, driven by
// playwright-core) against the real server and the real mock upstream, all on 127.0.0.1.
//
//   cargo build --release && (cd e2e/browser && npm ci) && node e2e/browser/run.mjs
//
// Env: CONNECTOR_RUNTIME_BIN (default target/release/connector-runtime; builds nothing),
//      CHROMIUM_BIN (default /usr/bin/chromium), E2E_KEEP_TMP=1 keeps the temp dir.
// The runtime exports traces (OTLP/HTTP) to a small receiver on loopback, which also plays
// the trace UI of --trace-ui-url (GET /trace/<id>).
// Artifacts: target/e2e/console-waterfall.png, console-request-tabs.png (screenshots), target/e2e/*.log (server logs).
// Exit status 0 when every check passed, 1 otherwise (2 when the setup itself failed).

import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, mkdir, readFile, writeFile, rm, access } from 'node:fs/promises';
import { constants as fsConstants, createWriteStream } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const BIN = process.env.CONNECTOR_RUNTIME_BIN
  ? path.resolve(process.env.CONNECTOR_RUNTIME_BIN)
  : path.join(ROOT, 'target', 'release', 'connector-runtime');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'target', 'e2e');
const SCREENSHOT = path.join(ARTIFACTS, 'console-waterfall.png');
const REQUEST_SCREENSHOT = path.join(ARTIFACTS, 'console-request-tabs.png');
const EXAMPLE_REGISTRY = path.join(ROOT, 'examples', 'connectors_registry.json');
const CHAIN_CONTROL_REGISTRY = path.join(ROOT, 'examples', 'chain_control.json');
const WIDGET_PAGE = path.join(HERE, 'widget-page.html');
const MOCK_TOKEN = 'mock-token-4f2a9c';
const MOCK_LATENCY_MS = 15; // so every step has a visible, nonzero duration
// Caller identity: the runtime trusts the demo key, whose JWKS the mock upstream serves and
// whose tokens `connector-runtime demo token` prints (iss = aud = connector-runtime-demo).
// The key is public knowledge: trusted here and by the demo only.
const DEMO_ISSUER = 'connector-runtime-demo';
const DEMO_TENANT = 'demo-community';
const MEMBER_SUB = 'member-e2e';
const OVERALL_TIMEOUT_MS = 180_000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const log = (...a) => console.log('[e2e]', ...a);
// Playwright's messages carry terminal colours; CI logs read better without them.
const stripAnsi = (t) => String(t).replace(/\u001b\[[0-9;]*m/g, '');
let stopping = false; // set by a signal: no further checks run

class SetupError extends Error {}

// ------------------------------------------------------------------------------ cleanup
const children = []; // {name, proc}
const cleanups = []; // async functions, run in reverse order
let cleaningUp = null;

function cleanup() {
  stopping = true;
  if (!cleaningUp) {
    cleaningUp = (async () => {
      for (const fn of cleanups.reverse()) {
        try {
          // A hung browser must not keep the servers alive: each step gets 15 s.
          await Promise.race([fn(), sleep(15000).then(() => { throw new Error('timed out after 15 s'); })]);
        } catch (e) {
          log(`cleanup: ${e.message}`);
        }
      }
      await Promise.all(children.map(({ name, proc }) => stopChild(name, proc)));
    })();
  }
  return cleaningUp;
}

async function stopChild(name, proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.stoppedByUs = true;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (proc.exitCode === null && proc.signalCode === null) {
      log(`${name} (pid ${proc.pid}) ignored SIGTERM; SIGKILL`);
      proc.kill('SIGKILL');
    }
  }, 5000);
  await exited;
  clearTimeout(timer);
}

// Last resort: whatever is still running when node exits gets SIGKILL (by pid).
process.on('exit', () => {
  for (const { proc } of children) {
    if (proc.exitCode === null && proc.signalCode === null) {
      try {
        proc.kill('SIGKILL');
      } catch {}
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`got ${sig}; cleaning up`);
    cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

// ------------------------------------------------------------------------------ helpers
/** A port that was free a moment ago: another process may take it before ours binds it. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function tail(file, lines = 25) {
  try {
    const text = await readFile(file, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function startChild(name, args, logFile, extraEnv = {}) {
  const out = createWriteStream(logFile);
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...extraEnv } });
  proc.stdout.pipe(out, { end: false });
  proc.stderr.pipe(out, { end: false });
  proc.on('exit', (code, signal) => {
    out.end();
    if (!proc.stoppedByUs) log(`!! ${name} (pid ${proc.pid}) exited during the run (code ${code}, signal ${signal}); see ${path.relative(process.cwd(), logFile)}`);
  });
  children.push({ name, proc });
  log(`started ${name} (pid ${proc.pid}): ${path.basename(BIN)} ${args.join(' ')}`);
  return proc;
}

/**
 * Resolves with the first `pick(line)` that is not undefined, over the lines `proc` writes
 * (stdout and stderr). Rejects with a SetupError when it exits first (the error's `output` is
 * everything it wrote) or after `timeoutMs`. Call it right after starting `proc`.
 */
function firstLine(name, proc, logFile, pick, { timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const lines = [];
    const partial = { stdout: '', stderr: '' };
    let done = false;
    const feed = (stream) => (chunk) => {
      const parts = (partial[stream] + chunk.toString('utf8')).split('\n');
      partial[stream] = parts.pop();
      for (const line of parts) {
        lines.push(line);
        const value = done ? undefined : pick(line);
        if (value !== undefined) finish(resolve, value);
      }
    };
    const onStdout = feed('stdout');
    const onStderr = feed('stderr');
    // 'close', not 'exit': by then everything it wrote has been read.
    const onClose = (code, signal) => {
      for (const rest of [partial.stdout, partial.stderr]) if (rest) lines.push(rest);
      const e = new SetupError(`${name} exited (code ${code}, signal ${signal}) at start; log ${logFile}:\n${lines.slice(-25).join('\n')}`);
      e.output = lines.join('\n');
      finish(reject, e);
    };
    const timer = setTimeout(() => finish(reject, new SetupError(
      `${name} did not log what was expected within ${timeoutMs} ms; log ${logFile}:\n${lines.slice(-25).join('\n')}`)), timeoutMs);
    function finish(settle, value) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.stdout.off('data', onStdout);
      proc.stderr.off('data', onStderr);
      proc.off('close', onClose);
      settle(value);
    }
    proc.stdout.on('data', onStdout);
    proc.stderr.on('data', onStderr);
    proc.on('close', onClose);
  });
}

const PORT_ATTEMPTS = 5;

/**
 * The mock upstream prints the address it was given, not the one it bound, so it cannot use
 * port 0: it gets a free port, and another one when a different process takes that port first
 * (it then exits with "cannot listen on"). It is up once it printed its "listening" line, which
 * it does only after binding, so whoever else may hold the port is never taken for it.
 */
async function startMockUpstream(logFile) {
  for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    const proc = startChild('mock-upstream', ['mock-upstream', '--listen', `127.0.0.1:${port}`, '--latency-ms', String(MOCK_LATENCY_MS)], logFile);
    try {
      await firstLine('mock-upstream', proc, logFile,
        (line) => (line.startsWith(`mock-upstream listening on http://127.0.0.1:${port} `) ? port : undefined));
      return { proc, port };
    } catch (e) {
      if (!/cannot listen on/.test(e.output ?? '')) throw e;
      log(`127.0.0.1:${port} was taken before mock-upstream bound it; another port`);
    }
  }
  throw new SetupError(`mock-upstream lost ${PORT_ATTEMPTS} free ports in a row to other processes`);
}

/** The port of `serve --listen 127.0.0.1:0 --log-format json`: its "connector-runtime serving" line says. */
function servingPort(line) {
  try {
    const event = JSON.parse(line);
    return event.message === 'connector-runtime serving' && Number.isInteger(event.port) ? event.port : undefined;
  } catch {
    return undefined;
  }
}

/** Polls `url` until it answers `okStatus`; fails early when `proc` exits. */
async function waitHttp(name, proc, url, logFile, { okStatus = 200, timeoutMs = 20000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new SetupError(`${name} exited (code ${proc.exitCode}, signal ${proc.signalCode}) before it was ready; log ${logFile}:\n${await tail(logFile)}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === okStatus) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e.cause?.code || e.message;
    }
    await sleep(100);
  }
  throw new SetupError(`${name} was not ready at ${url} within ${timeoutMs} ms (last: ${last}); log ${logFile}:\n${await tail(logFile)}`);
}

/** A member token from `connector-runtime demo token --sub <sub>` (signed by the demo key). */
function demoToken(sub) {
  return new Promise((resolve, reject) => {
    execFile(BIN, ['demo', 'token', '--sub', sub, '--ttl-secs', '3600'], { timeout: 20000 }, (err, stdout, stderr) => {
      const token = String(stdout).trim();
      if (err) reject(new SetupError(`connector-runtime demo token failed: ${err.message}\n${stderr}`));
      else if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) reject(new SetupError(`connector-runtime demo token printed no JWT: ${j(token.slice(0, 200))}`));
      else resolve(token);
    });
  });
}

/** Sum of every `connector_runs_total` series on the runtime's /metrics. */
async function runsTotal(runtime) {
  let res;
  try {
    res = await fetch(`${runtime}/metrics`, { signal: AbortSignal.timeout(5000) });
  } catch (e) {
    throw new Error(`GET ${runtime}/metrics failed: ${e.cause?.code || e.cause?.message || e.message}`);
  }
  if (res.status !== 200) throw new Error(`GET ${runtime}/metrics answered HTTP ${res.status}`);
  const text = await res.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^connector_runs_total(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$/.exec(line);
    if (m) sum += Number(m[1]);
  }
  return sum;
}

class CheckFailed extends Error {}
function expect(cond, message) {
  if (!cond) throw new CheckFailed(message);
}
const j = (v) => JSON.stringify(v);

// ------------------------------------------------------------------------------ checks
const results = []; // {n, title, ok, detail}

async function check(n, title, fn) {
  if (stopping) return;
  const started = Date.now();
  try {
    const detail = await fn();
    results.push({ n, title, ok: true, detail: detail || '' });
    log(`PASS ${n}. ${title} (${Date.now() - started} ms)${detail ? ` — ${detail}` : ''}`);
  } catch (e) {
    if (stopping) return; // interrupted: the failure is the signal's, not the check's
    const msg = stripAnsi(e instanceof CheckFailed ? e.message : `${e.name}: ${e.message}`);
    results.push({ n, title, ok: false, detail: msg });
    log(`FAIL ${n}. ${title}\n       ${msg.split('\n').join('\n       ')}`);
  }
}

// ------------------------------------------------------------------------------ main
async function main() {
  try {
    await access(BIN, fsConstants.X_OK);
  } catch {
    throw new SetupError(`no executable connector-runtime at ${BIN}: run \`cargo build --release\` or set CONNECTOR_RUNTIME_BIN`);
  }
  try {
    await access(CHROMIUM, fsConstants.X_OK);
  } catch {
    throw new SetupError(`no Chromium at ${CHROMIUM}: \`apt-get install -y chromium\` (or set CHROMIUM_BIN)`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new SetupError(`cannot load playwright-core (${e.message}): run \`npm ci\` in e2e/browser`);
  }

  await mkdir(ARTIFACTS, { recursive: true });
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'connector-runtime-e2e-browser-'));
  cleanups.push(async () => {
    if (process.env.E2E_KEEP_TMP) log(`kept ${tmp}`);
    else await rm(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });
  // Runs before the temp dir goes (cleanups run in reverse): servers stop first.
  cleanups.push(() => Promise.all(children.map(({ name, proc }) => stopChild(name, proc))));

  // -- the other origin: a tiny static server for widget-page.html
  const widgetHtml = await readFile(WIDGET_PAGE);
  const widgetServer = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/widget-page.html')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(widgetHtml);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
    }
  });
  widgetServer.listen(0, '127.0.0.1');
  await once(widgetServer, 'listening');
  cleanups.push(() => new Promise((r) => { widgetServer.closeAllConnections?.(); widgetServer.close(() => r()); }));
  const widgetOrigin = `http://127.0.0.1:${widgetServer.address().port}`;

  // -- the trace receiver: takes OTLP/HTTP exports (POST /v1/traces, answered 200 with an
  // empty ExportTraceServiceResponse) and plays the trace UI (GET /trace/<id>)
  const exports = []; // request bodies of POST /v1/traces
  const traceServer = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url, 'http://x');
      if (req.method === 'POST' && url.pathname === '/v1/traces') {
        exports.push(Buffer.concat(chunks));
        res.writeHead(200, { 'Content-Type': 'application/x-protobuf' });
        res.end();
      } else if (req.method === 'GET' && /^\/trace\/[0-9a-f]{32}$/.test(url.pathname)) {
        const id = url.pathname.slice('/trace/'.length);
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(`<!doctype html><title>trace ${id}</title><h1 id="shown-trace">${id}</h1>`);
      } else {
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('not found');
      }
    });
  });
  traceServer.listen(0, '127.0.0.1');
  await once(traceServer, 'listening');
  cleanups.push(() => new Promise((r) => { traceServer.closeAllConnections?.(); traceServer.close(() => r()); }));
  const traceOrigin = `http://127.0.0.1:${traceServer.address().port}`;
  const traceUiTemplate = `${traceOrigin}/trace/{trace_id}`;

  // -- mock upstream (first: the variables file names its port)
  const upstreamLog = path.join(ARTIFACTS, 'mock-upstream.log');
  const { proc: upstreamProc, port: upstreamPort } = await startMockUpstream(upstreamLog);
  const upstream = `http://127.0.0.1:${upstreamPort}`;
  await waitHttp('mock-upstream', upstreamProc, `${upstream}/items/itm_001`, upstreamLog);

  // -- configuration files
  const varsFile = path.join(tmp, 'variables.json');
  await writeFile(varsFile, j({ api_base_url: upstream, auth_base_url: upstream }));
  const secretsDir = path.join(tmp, 'secrets');
  await mkdir(secretsDir);
  await writeFile(path.join(secretsDir, 'items_api_token'), MOCK_TOKEN);
  await writeFile(path.join(secretsDir, 'items_api_key'), 'e2e-api-key');

  const registry = JSON.parse(await readFile(EXAMPLE_REGISTRY, 'utf8'));
  delete registry.$schema;
  const base = (v) => `{{ get_variable('${v}') }}`;
  registry.composite_connectors.push({
    name: 'Broken Chain',
    permalink: 'broken-chain',
    steps: [
      {
        name: 'auth',
        url: `${base('auth_base_url')}/oauth/token`,
        method: 'POST',
        headers: [{ key: 'Content-Type', value: 'application/json' }],
        request_body: '{"client_id": "{{ request.body_text | from_json | attr(\'clientId\') }}", "grant_type": "client_credentials"}',
      },
      {
        // A wrong bearer token (the real one with a prefix): the mock answers 401.
        name: 'fetch-user',
        url: `${base('api_base_url')}/users/me`,
        method: 'GET',
        headers: [{ key: 'Authorization', value: "Bearer wrong-{{ steps.auth.body | from_json | attr('access_token') }}" }],
      },
    ],
  });
  // The chain control examples (docs/spec.md §12): member-dashboard runs its steps in parallel.
  const chainControl = JSON.parse(await readFile(CHAIN_CONTROL_REGISTRY, 'utf8'));
  registry.composite_connectors.push(...chainControl.composite_connectors);
  const registryFile = path.join(tmp, 'connectors_registry.json');
  await writeFile(registryFile, JSON.stringify(registry, null, 2));

  // The example's member-items reads user.* and tenant_id: without identity flags the runtime
  // refuses the registry. An http JWKS URL is accepted on loopback only (the mock's is).
  const jwksUrl = `${upstream}/demo-idp/jwks.json`;
  await waitHttp('mock-upstream', upstreamProc, jwksUrl, upstreamLog);
  const memberToken = await demoToken(MEMBER_SUB);

  // -- the runtime: on port 0, the port it got read from its JSON log
  const runtimeLog = path.join(ARTIFACTS, 'runtime.log');
  const runtimeProc = startChild('connector-runtime serve', [
    'serve',
    '--registry', registryFile,
    '--variables-file', varsFile,
    '--secrets-dir', secretsDir,
    '--allow-private-upstreams',
    '--console',
    '--debug-requests',
    '--allow-origin', widgetOrigin,
    '--identity-issuer', DEMO_ISSUER,
    '--identity-audience', DEMO_ISSUER,
    '--identity-jwks-url', jwksUrl,
    '--tenant-id', DEMO_TENANT,
    '--otlp-endpoint', traceOrigin,
    '--trace-ui-url', traceUiTemplate,
    '--listen', '127.0.0.1:0',
    '--log-format', 'json',
    '--shutdown-timeout-secs', '2',
  ], runtimeLog, { OTEL_BSP_SCHEDULE_DELAY: '200', OTEL_TRACES_SAMPLER: 'parentbased_always_on' });
  const runtimePort = await firstLine('connector-runtime serve', runtimeProc, runtimeLog, servingPort);
  const runtime = `http://127.0.0.1:${runtimePort}`;
  await waitHttp('connector-runtime', runtimeProc, `${runtime}/readyz`, runtimeLog);
  log(`runtime ${runtime}, mock upstream ${upstream}, widget origin ${widgetOrigin}`);

  // -- Chromium (system build, fresh profile)
  const profile = path.join(tmp, 'chromium-profile');
  await mkdir(profile);
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      chromiumSandbox: false,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
      timeout: 60000,
      // Our own signal handlers close the browser (before the profile is removed).
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (e) {
    throw new SetupError(`cannot launch ${CHROMIUM}: ${e.message}`);
  }
  cleanups.push(() => context.close());
  log(`browser: Chromium ${context.browser()?.version() ?? '(persistent context)'}`);
  context.setDefaultTimeout(15000);

  const pageErrors = [];
  function watch(page, label) {
    page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/\/favicon\.ico$/.test(m.location()?.url || '')) log(`  ${label} console.error: ${m.text()}${m.location()?.url ? ` (${m.location().url})` : ''}`);
    });
  }

  // ============================================================== the widget page
  const page = context.pages()[0] || (await context.newPage());
  watch(page, 'widget page');
  const runtimeRequests = []; // every request of the widget page to the runtime
  page.on('request', (r) => {
    if (r.url().startsWith(`${runtime}/`)) runtimeRequests.push(`${r.method()} ${r.url().slice(runtime.length)}`);
  });

  const widgetUrl = `${widgetOrigin}/widget-page.html?runtime=${encodeURIComponent(runtime)}`;
  await page.goto(widgetUrl);
  const ready = await page.evaluate(() => window.widgetTest.ready().then(
    (v) => ({ ok: true, v }),
    (e) => ({ ok: false, message: String(e && e.message) })
  ));
  if (!ready.ok) throw new SetupError(`the widget page could not load the SDK from ${runtime}: ${ready.message}`);
  if (!ready.v.hasBoundaryError || !ready.v.hasExecuteError) {
    throw new SetupError(`the SDK did not define window.ConnectorBoundaryError / ConnectorExecuteError: ${j(ready.v)}`);
  }
  log(`widget page on ${ready.v.origin} loaded the SDK ${ready.v.version ?? ''} from ${runtime}`);

  const runsAtStart = await runsTotal(runtime);
  let compositeMeta = null;

  await check(1, 'composite auth-and-fetch-user from another origin resolves with the user', async () => {
    const r = await page.evaluate(() => window.widgetTest.composite('widget-e2e'));
    expect(r.ok, `the call rejected: ${j(r.error)}`);
    compositeMeta = r.value;
    expect(compositeMeta.status === 200, `status ${compositeMeta.status}, expected 200`);
    const data = compositeMeta.data;
    expect(data && typeof data === 'object', `expected parsed JSON, got ${j(data)?.slice(0, 200)}`);
    expect(data.name === 'Ada Lovelace', `user name ${j(data.name)}, expected "Ada Lovelace"`);
    expect(compositeMeta.requestId, 'X-Request-ID was not readable cross-origin (Access-Control-Expose-Headers?)');
    expect(compositeMeta.timing && Array.isArray(compositeMeta.timing.steps), `X-Connector-Timing was not readable cross-origin: ${j(compositeMeta.timing)}`);
    return `name=${data.name}, request id ${compositeMeta.requestId}`;
  });

  await check(2, "simple get-item with pathParams {item_id: 'itm_042'} resolves with the item", async () => {
    const r = await page.evaluate(() => window.widgetTest.simple('itm_042'));
    expect(r.ok, `the call rejected: ${j(r.error)}`);
    expect(r.value && r.value.id === 'itm_042', `id ${j(r.value?.id)}, expected "itm_042" (body ${j(r.value)})`);
    return j(r.value);
  });

  await check(3, 'pathParams on a composite throws ConnectorBoundaryError synchronously; nothing reaches the server', async () => {
    const runsBefore = await runsTotal(runtime);
    // The counter must be live, or comparing it proves nothing: checks 1 and 2 ran connectors.
    expect(runsBefore >= runsAtStart + 2 || results.some((x) => x.n <= 2 && !x.ok),
      `connector_runs_total did not count checks 1-2 (${runsAtStart} -> ${runsBefore}); cannot use it to count requests`);
    const allBefore = runtimeRequests.length;
    const r = await page.evaluate(() => window.widgetTest.boundary());
    // Instead of giving a stray request time to show up: a marker call through the same SDK,
    // made after the boundary call returned. The page's requests are reported in the order it
    // makes them, so once the marker's request is seen, a request made by the boundary call
    // would have been seen before it; and the marker's run is counted when it is answered.
    const markerSeen = page.waitForRequest((req) => req.url().startsWith(`${runtime}/connectors/get-item/execute`));
    const marker = await page.evaluate(() => window.widgetTest.simple('itm_001'));
    await markerSeen;
    const runsAfter = await runsTotal(runtime);
    expect(r.threwSynchronously, `execute did not throw synchronously: ${j(r)}`);
    expect(r.error.isBoundaryError, `threw ${r.error.name} (${r.error.message}), not a ConnectorBoundaryError`);
    expect(r.error.reason === 'PATH_PARAMS_ON_COMPOSITE', `reason ${j(r.error.reason)}, expected "PATH_PARAMS_ON_COMPOSITE"`);
    expect(marker.ok, `the marker call (get-item itm_001) after the boundary call failed: ${j(marker.error)}`);
    // A CORS preflight of the marker, if Playwright reports one, is the marker's too.
    const newReqs = runtimeRequests.slice(allBefore);
    const stray = newReqs.filter((req) => !req.includes('/connectors/get-item/execute'));
    expect(stray.length === 0, `the page sent requests to the runtime before the marker: ${j(stray)}`);
    expect(runsAfter === runsBefore + 1, `connector_runs_total went ${runsBefore} -> ${runsAfter}; only the marker's run (+1) was expected`);
    return `reason ${r.error.reason}, field ${j(r.error.field)}; page requests: only the marker's (${newReqs.length}), connector_runs_total ${runsBefore} -> ${runsAfter} (the marker)`;
  });

  await check(4, 'a failing step rejects with ConnectorExecuteError naming the step', async () => {
    const r = await page.evaluate(() => window.widgetTest.failingStep('broken-chain'));
    expect(!r.ok, `broken-chain resolved: ${j(r.value)?.slice(0, 200)}`);
    expect(!r.threwSynchronously, `threw synchronously: ${j(r.error)}`);
    const e = r.error;
    expect(e.isExecuteError, `rejected with ${e.name} (${e.message}), not a ConnectorExecuteError`);
    expect(e.status === 502, `status ${e.status}, expected 502`);
    const scope = "Composite step 'fetch-user' (index 1): Downstream (HTTP error)";
    expect(e.failureScope === scope, `failureScope ${j(e.failureScope)}, expected ${j(scope)}`);
    expect(e.code === 'DOWNSTREAM_HTTP_ERROR', `code ${j(e.code)}, expected "DOWNSTREAM_HTTP_ERROR"`);
    expect(e.requestId, 'no requestId on the error');
    return `${e.status} ${e.code}: ${e.failureScope}`;
  });

  await check(5, 'Resource Timing exposes Server-Timing (step.auth, step.fetch-user, total) cross-origin', async () => {
    const fragment = '/connectors/composite/auth-and-fetch-user/execute';
    let r;
    for (let i = 0; i < 20; i++) {
      r = await page.evaluate((f) => window.widgetTest.resourceTiming(f), fragment);
      if (r.value.length) break;
      await sleep(100);
    }
    expect(r.value.length > 0, `no resource timing entry for ${fragment} (entries: ${j(await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name)))})`);
    const entry = r.value[r.value.length - 1];
    const names = entry.serverTiming.map((s) => s.name);
    const want = ['step.auth', 'step.fetch-user', 'total'];
    const missing = want.filter((n) => !names.includes(n));
    expect(missing.length === 0,
      `serverTiming of ${entry.name} lacks ${j(missing)} (has ${j(entry.serverTiming)}; secure context ${r.secureContext}; ` +
      'an empty list means the response had no Timing-Allow-Origin for this origin)');
    const total = entry.serverTiming.find((s) => s.name === 'total');
    expect(total.duration > 0, `total;dur is ${total.duration}`);
    const sdkNames = (compositeMeta?.serverTiming || []).map((s) => s.name);
    expect(want.every((n) => sdkNames.includes(n)), `the SDK's parsed Server-Timing header lacks some of ${j(want)}: ${j(compositeMeta?.serverTiming)}`);
    return entry.serverTiming.map((s) => `${s.name}=${s.duration.toFixed(1)}ms`).join(', ');
  });

  // ============================================================== a signed-in member
  await check(6, 'member-items with sessionToken (a function) resolves with the member and the greeting', async () => {
    const sent = page.waitForRequest((req) => req.url().startsWith(`${runtime}/connectors/composite/member-items/execute`) && req.method() === 'POST');
    const r = await page.evaluate((t) => window.widgetTest.member(t), memberToken);
    const request = await sent;
    expect(r.ok, `the call rejected: ${j(r.error)}`);
    const { data, status, tokenCalls } = r.value;
    expect(status === 200, `status ${status}, expected 200`);
    expect(tokenCalls === 1, `the sessionToken function was called ${tokenCalls} times, expected once for the call`);
    const auth = (await request.allHeaders()).authorization;
    expect(auth === `Bearer ${memberToken}`, `the request carried Authorization ${j(auth?.slice(0, 20))}..., expected the member's token`);
    expect(data && typeof data === 'object', `expected parsed JSON, got ${j(data)?.slice(0, 200)}`);
    expect(data.member === MEMBER_SUB, `member ${j(data.member)}, expected ${j(MEMBER_SUB)} (body ${j(data).slice(0, 300)})`);
    expect(data.greeting === 'Hello, Ada', `greeting ${j(data.greeting)}, expected "Hello, Ada"`);
    expect(data.tenant === DEMO_TENANT, `tenant ${j(data.tenant)}, expected ${j(DEMO_TENANT)}`);
    expect(data.owner_seen_by_upstream === MEMBER_SUB, `the upstream saw owner ${j(data.owner_seen_by_upstream)}, expected ${j(MEMBER_SUB)}`);
    expect(Array.isArray(data.items) && data.items.length === 3, `items ${j(data.items)}, expected 3`);
    return `member=${data.member}, greeting ${j(data.greeting)}, tenant ${data.tenant}, email ${data.email}, team ${j(data.team)}`;
  });

  await check(7, 'member-items without a token rejects with ConnectorExecuteError 401 IDENTITY_REQUIRED', async () => {
    const sent = page.waitForRequest((req) => req.url().startsWith(`${runtime}/connectors/composite/member-items/execute`) && req.method() === 'POST');
    const r = await page.evaluate(() => window.widgetTest.signedOut());
    const request = await sent;
    expect(!r.ok, `member-items resolved without a token: ${j(r.value)?.slice(0, 200)}`);
    expect(!r.threwSynchronously, `threw synchronously: ${j(r.error)}`);
    const e = r.error;
    expect(e.isExecuteError, `rejected with ${e.name} (${e.message}), not a ConnectorExecuteError`);
    expect(e.status === 401, `status ${e.status}, expected 401`);
    expect(e.code === 'IDENTITY_REQUIRED', `code ${j(e.code)}, expected "IDENTITY_REQUIRED"`);
    expect(e.failureScope === null, `failureScope ${j(e.failureScope)}, expected null`);
    expect(e.requestId, 'no requestId on the error');
    const auth = (await request.allHeaders()).authorization;
    expect(auth === undefined, `the signed-out request still carried Authorization ${j(auth?.slice(0, 20))}...`);
    return `${e.status} ${e.code}: ${e.detail}`;
  });

  // ============================================================== the console
  await check(8, 'the console runs auth-and-fetch-user and renders the waterfall', async () => {
    const cpage = await context.newPage();
    watch(cpage, 'console');
    await cpage.goto(`${runtime}/console`);
    const item = cpage.locator('#connector-list li[data-permalink="auth-and-fetch-user"]');
    try {
      await item.waitFor({ state: 'visible' });
    } catch {
      const msg = await cpage.locator('#list-message').textContent().catch(() => '?');
      throw new CheckFailed(`no #connector-list entry for auth-and-fetch-user (list message: ${j(msg)})`);
    }
    await item.locator('button').click();
    await cpage.waitForSelector('#connector-list li[data-permalink="auth-and-fetch-user"].selected');
    await cpage.fill('#payload', '{"clientId":"w"}');
    const execute = cpage.locator('#execute');
    expect(await execute.isEnabled(), `#execute is disabled after filling the payload (hint: ${j(await cpage.locator('#payload-error').textContent())})`);
    await execute.click();
    try {
      await cpage.waitForFunction(() => {
        const s = document.querySelector('#status');
        return s && (s.classList.contains('ok') || s.classList.contains('error'));
      });
    } catch {
      throw new CheckFailed(`#status never settled: ${j(await cpage.locator('#status').textContent())}`);
    }
    const status = await cpage.evaluate(() => {
      const s = document.querySelector('#status');
      return { cls: s.className, code: s.getAttribute('data-status'), text: s.textContent.trim() };
    });
    const clientError = await cpage.locator('#client-error').textContent();
    expect(status.cls === 'ok' && status.code === '200', `#status is ${j(status)}, expected ok 200 (client error: ${j(clientError?.trim())})`);
    expect(await cpage.locator('#error-envelope').isHidden(), `#error-envelope is shown: ${j(await cpage.locator('#error-envelope').textContent())}`);
    const body = await cpage.locator('#result-body').textContent();
    expect(body.includes('Ada Lovelace'), `#result-body lacks the user: ${j(body.slice(0, 200))}`);
    const bars = await cpage.$$eval('#waterfall .bar[data-step]', (els) => els.map((b) => ({
      step: b.getAttribute('data-step'),
      width: b.getBoundingClientRect().width,
      styleWidth: b.style.width,
      durationMs: Number(b.getAttribute('data-duration-ms')),
    })));
    for (const step of ['auth', 'fetch-user']) {
      const bar = bars.find((b) => b.step === step);
      expect(bar, `no #waterfall .bar[data-step="${step}"] (bars: ${j(bars)})`);
      expect(bar.width > 0, `bar ${step} has rendered width ${bar.width}px`);
      expect(parseFloat(bar.styleWidth) > 0, `bar ${step} has style width ${j(bar.styleWidth)} (duration ${bar.durationMs} ms)`);
    }
    // From the top: the sidebar is position: sticky, and a full-page capture of a scrolled
    // page shows it stuck halfway down.
    await cpage.evaluate(() => window.scrollTo(0, 0));
    await cpage.screenshot({ path: SCREENSHOT, fullPage: true });
    await cpage.close();
    return bars.map((b) => `${b.step}: ${b.styleWidth} (${b.width.toFixed(0)}px, ${b.durationMs} ms)`).join('; ') +
      `; screenshot ${path.relative(process.cwd(), SCREENSHOT)}`;
  });

  await check(9, 'the console runs member-items: 401 without a member token, the member with one pasted', async () => {
    const cpage = await context.newPage();
    watch(cpage, 'console');
    await cpage.goto(`${runtime}/console`);
    const item = cpage.locator('#connector-list li[data-permalink="member-items"]');
    try {
      await item.waitFor({ state: 'visible' });
    } catch {
      const msg = await cpage.locator('#list-message').textContent().catch(() => '?');
      throw new CheckFailed(`no #connector-list entry for member-items (list message: ${j(msg)})`);
    }
    await item.locator('button').click();
    await cpage.waitForSelector('#connector-list li[data-permalink="member-items"].selected');
    const execute = cpage.locator('#execute');
    const tokenField = cpage.locator('#session-token');
    expect(await tokenField.getAttribute('type') === 'password', `#session-token is type ${j(await tokenField.getAttribute('type'))}, expected password`);
    /** Clicks Execute and waits for #status to settle on a new run; returns what it shows. */
    async function run(label) {
      expect(await execute.isEnabled(), `${label}: #execute is disabled (hint: ${j(await cpage.locator('#execute-hint').textContent().catch(() => '?'))})`);
      // Forget the previous run's outcome, so the wait below sees this run's.
      await cpage.evaluate(() => {
        const s = document.querySelector('#status');
        s.className = '';
        s.removeAttribute('data-status');
      });
      await execute.click();
      try {
        await cpage.waitForFunction(() => {
          const s = document.querySelector('#status');
          return s && (s.classList.contains('ok') || s.classList.contains('error'));
        });
      } catch {
        throw new CheckFailed(`${label}: #status never settled: ${j(await cpage.locator('#status').textContent())}`);
      }
      return cpage.evaluate(() => {
        const s = document.querySelector('#status');
        const envelope = document.querySelector('#error-envelope');
        return {
          cls: s.className,
          code: s.getAttribute('data-status'),
          text: s.textContent.trim(),
          envelope: envelope && !envelope.hidden ? envelope.textContent : '',
          body: document.querySelector('#result-body').textContent,
          headers: document.querySelector('#result-headers').textContent,
        };
      });
    }
    const signedOut = await run('without a token');
    expect(signedOut.code === '401', `without a token #status is ${j({ cls: signedOut.cls, code: signedOut.code, text: signedOut.text })}, expected 401`);
    expect((signedOut.envelope + signedOut.body).includes('IDENTITY_REQUIRED'), `without a token the console does not show IDENTITY_REQUIRED (envelope ${j(signedOut.envelope.slice(0, 200))}, body ${j(signedOut.body.slice(0, 200))})`);
    await tokenField.fill(memberToken);
    const signedIn = await run('with the token');
    expect(signedIn.cls === 'ok' && signedIn.code === '200', `with the token #status is ${j({ cls: signedIn.cls, code: signedIn.code, text: signedIn.text })}, expected ok 200 (envelope ${j(signedIn.envelope.slice(0, 200))})`);
    expect(signedIn.body.includes(`"member": "${MEMBER_SUB}"`) || signedIn.body.includes(`"member":"${MEMBER_SUB}"`),
      `#result-body lacks "member": ${j(MEMBER_SUB)}: ${j(signedIn.body.slice(0, 300))}`);
    expect(signedIn.body.includes('Hello, Ada'), `#result-body lacks the greeting: ${j(signedIn.body.slice(0, 300))}`);
    const shown = await cpage.evaluate(() => document.body.innerText);
    expect(!shown.includes(memberToken), 'the member token is shown on the page');
    expect(!(signedIn.headers + signedIn.body).includes(memberToken.split('.')[2]), 'the member token appears in the result');
    await cpage.close();
    return `without a token: ${signedOut.code} IDENTITY_REQUIRED; with it: ${signedIn.code}, member ${MEMBER_SUB}; the token is not on the page`;
  });

  await check(10, 'the console draws member-dashboard (parallel): token and catalog overlap, record-view after both', async () => {
    const cpage = await context.newPage();
    watch(cpage, 'console');
    await cpage.goto(`${runtime}/console`);
    const item = cpage.locator('#connector-list li[data-permalink="member-dashboard"]');
    await item.waitFor({ state: 'visible' });
    await item.locator('button').click();
    await cpage.locator('#execute').click();
    await cpage.waitForFunction(() => {
      const s = document.querySelector('#status');
      return s && (s.classList.contains('ok') || s.classList.contains('error'));
    });
    const status = await cpage.evaluate(() => document.querySelector('#status').getAttribute('data-status'));
    expect(status === '200', `#status is ${j(status)}: ${j((await cpage.locator('#result-body').textContent()).slice(0, 300))}`);
    const bars = Object.fromEntries(await cpage.$$eval('#waterfall .bar[data-step]', (els) => els.map((b) => {
      const r = b.getBoundingClientRect();
      return [b.getAttribute('data-step'), { left: r.left, right: r.right, width: r.width, state: b.getAttribute('data-state'), offset: Number(b.getAttribute('data-offset-ms')), duration: Number(b.getAttribute('data-duration-ms')) }];
    })));
    for (const step of ['token', 'profile', 'catalog', 'record-view']) {
      expect(bars[step], `no #waterfall .bar[data-step="${step}"] (bars: ${j(bars)})`);
      expect(bars[step].state === 'ok', `bar ${step} has data-state ${j(bars[step].state)}, expected ok`);
      expect(bars[step].width > 0, `bar ${step} has rendered width ${bars[step].width}px`);
    }
    expect(bars.catalog.left < bars.token.right, `catalog (${j(bars.catalog)}) does not overlap token (${j(bars.token)}): the steps are not drawn at their start_ms`);
    // X-Connector-Timing gives each start and duration to 0.1 ms, so a bar's drawn end can pass
    // the start of the step that waited for it by up to one such step (e.g. 34.1 ms + 2.5 ms
    // for an end at 36.55), plus a pixel of layout rounding.
    const pxPerMs = Math.max(...Object.values(bars).map((b) => (b.duration > 0 ? b.width / b.duration : 0)));
    const slack = 1 + 0.1 * pxPerMs;
    expect(bars.profile.left >= bars.token.right - slack, `profile (${j(bars.profile)}) starts before token (${j(bars.token)}) ends`);
    const after = Math.max(bars.profile.right, bars.catalog.right) - slack;
    expect(bars['record-view'].left >= after, `record-view (${j(bars['record-view'])}) starts before profile and catalog end (${after}px)`);
    await cpage.close();
    return ['token', 'catalog', 'profile', 'record-view'].map((s) => `${s} at ${bars[s].offset} ms (${bars[s].left.toFixed(0)}-${bars[s].right.toFixed(0)}px)`).join('; ');
  });

  await check(11, 'X-Debug-Request: the console shows each step\'s resolved request in its Request tab; another origin can read the header', async () => {
    const cpage = await context.newPage();
    watch(cpage, 'console');
    await cpage.goto(`${runtime}/console`);
    /** Selects `permalink`, runs it and waits for #status to settle on 200. */
    async function runInConsole(permalink, payload) {
      const item = cpage.locator(`#connector-list li[data-permalink="${permalink}"]`);
      await item.waitFor({ state: 'visible' });
      await item.locator('button').click();
      await cpage.waitForSelector(`#connector-list li[data-permalink="${permalink}"].selected`);
      if (payload !== undefined) await cpage.fill('#payload', payload);
      await cpage.evaluate(() => {
        const s = document.querySelector('#status');
        s.className = '';
        s.removeAttribute('data-status');
      });
      await cpage.locator('#execute').click();
      await cpage.waitForFunction(() => {
        const s = document.querySelector('#status');
        return s && (s.classList.contains('ok') || s.classList.contains('error'));
      });
      const status = await cpage.evaluate(() => document.querySelector('#status').getAttribute('data-status'));
      expect(status === '200', `${permalink}: #status is ${j(status)}: ${j((await cpage.locator('#result-body').textContent()).slice(0, 300))}`);
    }
    /** Clicks the Request tab of `step`; returns its panel's fields as text. */
    async function openRequest(step) {
      const tab = cpage.locator(`#waterfall .wf-tab[data-step="${step}"]`);
      expect(await tab.count() === 1, `no Request tab for ${step} (tabs: ${j(await cpage.$$eval('#waterfall .wf-tab', (els) => els.map((e) => e.getAttribute('data-step'))))})`);
      await tab.click();
      const panel = cpage.locator(`#waterfall .wf-request[data-step="${step}"]`);
      await panel.waitFor({ state: 'visible' });
      expect(await tab.getAttribute('aria-expanded') === 'true', `${step}: the tab is not aria-expanded after the click`);
      return panel.evaluate((p) => Object.fromEntries([...p.querySelectorAll('[data-field]')].map((f) => [f.getAttribute('data-field'), f.textContent])));
    }
    // A composite: both steps, the second's URL and headers as resolved.
    await runInConsole('auth-and-fetch-user', '{"clientId":"w"}');
    const auth = await openRequest('auth');
    expect(auth.method === 'POST' && auth.url === `${upstream}/oauth/token`, `auth: ${j(auth)}`);
    expect(/"client_id": "w"/.test(auth.request_body), `auth: request_body ${j(auth.request_body)} lacks client_id w`);
    const fetchUser = await openRequest('fetch-user');
    expect(fetchUser.method === 'GET' && fetchUser.url === `${upstream}/users/me`, `fetch-user: ${j(fetchUser)}`);
    expect(/^authorization: Bearer \S+/im.test(fetchUser.headers), `fetch-user: headers ${j(fetchUser.headers)}`);
    await cpage.locator('#waterfall').screenshot({ path: REQUEST_SCREENSHOT });
    // A simple connector with a secret: its template text, never its value.
    await runInConsole('search-items');
    const search = await openRequest('http_request');
    expect(search.url.startsWith(`${upstream}/items`), `search-items: url ${j(search.url)}`);
    expect(search.authentication.includes("{{ get_secret('items_api_key') }}"), `search-items: authentication ${j(search.authentication)}`);
    const shown = await cpage.evaluate(() => document.body.innerText);
    expect(!shown.includes('e2e-api-key'), 'the secret value is shown on the console page');
    await cpage.close();
    // Another origin (the widget page): the preflight allows the request header and the
    // answer's header is exposed to its script.
    const cross = await page.evaluate(async (rt) => {
      const r = await fetch(`${rt}/connectors/get-item/execute`, { headers: { 'X-Debug-Request': '1', 'X-Path-Params': 'item_id=itm_042' } });
      return { status: r.status, debug: r.headers.get('X-Debug-Request') };
    }, runtime);
    expect(cross.status === 200, `cross-origin get-item: status ${cross.status}`);
    expect(cross.debug, 'cross-origin: X-Debug-Request is not readable (not exposed by CORS?)');
    const doc = JSON.parse(cross.debug);
    expect(doc.url === `${upstream}/items/itm_042`, `cross-origin: url ${j(doc.url)}`);
    const bearer = Object.entries(doc.headers || {}).find(([k]) => k.toLowerCase() === 'authorization');
    expect(bearer && bearer[1] === "Bearer {{ get_secret('items_api_token') }}", `cross-origin: Authorization ${j(bearer)}`);
    expect(!cross.debug.includes(MOCK_TOKEN), 'cross-origin: the secret value is in the header');
    return `auth-and-fetch-user: ${auth.method} ${auth.url}, ${fetchUser.method} ${fetchUser.url}; search-items authentication ${search.authentication.replace(/\s+/g, ' ')}; cross-origin header ${cross.debug.length} bytes`;
  });

  await check(12, 'a traced run in the console shows its trace id, linked to the trace UI; the receiver got that trace', async () => {
    const cpage = await context.newPage();
    watch(cpage, 'console');
    await cpage.goto(`${runtime}/console`);
    const item = cpage.locator('#connector-list li[data-permalink="auth-and-fetch-user"]');
    await item.waitFor({ state: 'visible' });
    await item.locator('button').click();
    await cpage.waitForSelector('#connector-list li[data-permalink="auth-and-fetch-user"].selected');
    await cpage.fill('#payload', '{"clientId":"traced"}');
    const answered = cpage.waitForResponse((r) => r.url().startsWith(`${runtime}/connectors/composite/auth-and-fetch-user/execute`));
    await cpage.locator('#execute').click();
    const response = await answered;
    await cpage.waitForFunction(() => {
      const s = document.querySelector('#status');
      return s && (s.classList.contains('ok') || s.classList.contains('error'));
    });
    const timing = JSON.parse((await response.allHeaders())['x-connector-timing'] || '{}');
    expect(/^[0-9a-f]{32}$/.test(timing.trace_id || ''), `X-Connector-Timing has no trace_id: ${j(timing).slice(0, 300)}`);
    const shown = await cpage.evaluate(() => {
      const dd = document.querySelector('#trace-id');
      const a = dd && dd.querySelector('a');
      return dd && {
        id: dd.getAttribute('data-trace-id'), text: dd.textContent.trim(),
        href: a && a.getAttribute('href'), target: a && a.getAttribute('target'), rel: a && a.getAttribute('rel'),
      };
    });
    expect(shown, 'no #trace-id in the result summary');
    expect(shown.id === timing.trace_id && shown.text === timing.trace_id,
      `#trace-id shows ${j(shown)}, expected the run's trace id ${timing.trace_id}`);
    const want = traceUiTemplate.replace('{trace_id}', timing.trace_id);
    expect(shown.href === want, `the trace link is ${j(shown.href)}, expected ${j(want)}`);
    expect(shown.target === '_blank' && /noopener/.test(shown.rel || ''), `the link opens ${j(shown.target)} with rel ${j(shown.rel)}`);
    // The receiver got the trace the link names (its 16-byte id is in an export).
    const idBytes = Buffer.from(timing.trace_id, 'hex');
    const deadline = Date.now() + 15000;
    while (!exports.some((b) => b.includes(idBytes)) && Date.now() < deadline) await sleep(100);
    expect(exports.some((b) => b.includes(idBytes)), `no OTLP export carried trace ${timing.trace_id} within 15 s (${exports.length} exports received)`);
    // Following the link opens the trace UI on that trace.
    const [opened] = await Promise.all([context.waitForEvent('page'), cpage.locator('#trace-id a').click()]);
    await opened.waitForLoadState();
    const onPage = await opened.locator('#shown-trace').textContent();
    expect(opened.url() === want && onPage === timing.trace_id, `the link opened ${opened.url()} showing ${j(onPage)}`);
    await opened.close();
    await cpage.close();
    return `trace ${timing.trace_id} -> ${want}; ${exports.length} OTLP exports received`;
  });

  await check(13, 'no uncaught script errors in the widget page or the console', async () => {
    expect(pageErrors.length === 0, pageErrors.join('\n'));
  });
}

// ------------------------------------------------------------------------------ run
const watchdog = setTimeout(() => {
  log(`FAIL: the whole run took more than ${OVERALL_TIMEOUT_MS / 1000} s; stopping`);
  cleanup().finally(() => process.exit(1));
}, OVERALL_TIMEOUT_MS);
watchdog.unref();

let exitCode = 0;
try {
  await main();
} catch (e) {
  exitCode = 2;
  if (!stopping) log(`SETUP FAILED: ${stripAnsi(e instanceof SetupError ? e.message : e.stack || e)}`);
} finally {
  await cleanup();
}

console.log('\nbrowser e2e summary:');
for (const r of results) console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.n}. ${r.title}${r.ok ? '' : `\n         ${r.detail}`}`);
const failed = results.filter((r) => !r.ok).length;
const passed = results.length - failed;
if (exitCode === 0 && failed > 0) exitCode = 1;
if (exitCode === 0 && results.length === 0) exitCode = 2;
console.log(`browser e2e: ${passed} passed, ${failed} failed${exitCode === 2 ? ' (setup failed)' : ''}`);
process.exit(exitCode);
