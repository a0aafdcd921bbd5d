// How answers map to results: parsed JSON or text, ConnectorExecuteError, plain Errors, timing.
// The answers are the real runtime's (release binary, on 127.0.0.1) over a recording upstream
// that answers what a test asks for; what the runtime never sends (a proxy's HTML page, a
// connection cut mid-body, timing headers a browser hides) comes from a real Node server on
// 127.0.0.1 standing in for that proxy.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  WidgetServiceSDK, ConnectorExecuteError, ConnectorBoundaryError, parseServerTiming, parseConnectorTiming,
} from '../connectors-sdk.mjs';
import { echoRegistry, makeSetup, rejection } from '../testlib/echo.mjs';
import { binary, startRuntime, startUpstream, freePort, waitFor } from '../testlib/runtime.mjs';

const STEP_TIMEOUT_MS = 1000;
const base = "{{ get_variable('upstream') }}";

function registry() {
  const r = echoRegistry();
  r.connectors.push(
    { name: 'needs id', permalink: 'needs-id', url: base + '/items/{{ pathParams.item_id }}', path_parameters: [{ key: 'item_id' }] },
    { name: 'jwt broken', permalink: 'jwt-broken', url: base + '/echo', authentication: { type: 'jwt', config: { private_key: "{{ get_secret('bad_key') }}", claims: { sub: 'x' } } } },
  );
  r.composite_connectors.push(
    { name: 'auth and fetch user', permalink: 'auth-and-fetch-user', steps: [{ name: 'auth', url: base + '/echo' }, { name: 'fetch-user', url: base + '/answer?status=404' }] },
    { name: 'auth and fetch ok', permalink: 'auth-and-fetch-ok', steps: [{ name: 'auth', url: base + '/echo' }, { name: 'fetch-user', url: base + '/echo' }] },
    { name: 'bad template', permalink: 'bad-template', steps: [{ name: 'parse', method: 'POST', url: base + '/echo', request_body: "{{ request.body_text | from_json | attr('x') }}" }] },
  );
  return r;
}

let world;
let setup;
/** A real server that is not the runtime: answers as `standIn.answer(path)` says. */
let standIn;
const standInAnswers = new Map();
before(async () => {
  binary();
  const upstream = await startUpstream();
  const runtime = await startRuntime({
    registry: registry(),
    variables: { upstream: upstream.url },
    secrets: { bad_key: 'not a PEM key' },
    args: ['--step-timeout-ms', String(STEP_TIMEOUT_MS), '--max-request-bytes', '65536'],
  });
  world = { runtime, upstream, stop: async () => { await runtime.stop(); await upstream.stop(); } };
  setup = makeSetup(world);
  standIn = await startUpstream((record, req, res) => {
    const answer = standInAnswers.get(record.path);
    if (!answer) return false;
    answer(req, res);
  });
});
after(async () => {
  if (world) await world.stop();
  if (standIn) await standIn.stop();
});

/** An SDK whose baseUrl is the stand-in server, answering `path` with `answer(req, res)`. */
function standInSdk(path, answer, options = {}) {
  standInAnswers.set(path, answer);
  return new WidgetServiceSDK({ baseUrl: standIn.url, ...options });
}

/** The `answer` connector: the upstream answers with this status, Content-Type and body. */
function answer(sdk, { status = 200, type = '', body = '' }, extra = {}) {
  return sdk.connectors.executeWithMeta({ permalink: 'answer', method: 'GET', queryParams: { status, type, body }, ...extra });
}

describe('success', () => {
  test('resolves with the parsed JSON body', async () => {
    const { sdk } = setup();
    const data = await sdk.connectors.execute({ permalink: 'answer', method: 'GET', queryParams: { type: 'application/json', body: '{"id":"itm_042","tags":["a"]}' } });
    assert.deepEqual(data, { id: 'itm_042', tags: ['a'] });
  });
  test('JSON is recognised with parameters and +json types', async () => {
    const { sdk } = setup();
    for (const type of ['application/json; charset=utf-8', 'Application/JSON', 'application/problem+json', 'application/vnd.api+json']) {
      const meta = await answer(sdk, { type, body: '[1,2]' });
      assert.equal(meta.contentType, type, 'the runtime passes the upstream type on');
      assert.deepEqual(meta.data, [1, 2], type);
    }
  });
  test('resolves with text when the response is not JSON', async () => {
    const { sdk } = setup();
    for (const [type, body] of [['text/plain', 'hello'], ['text/html; charset=utf-8', '<p>hi</p>'], ['text/csv', '{"looks":"like json"}']]) {
      assert.equal((await answer(sdk, { type, body })).data, body);
    }
  });
  test('resolves with text when there is no Content-Type', async () => {
    const { sdk } = setup();
    const meta = await answer(sdk, { body: '{"a":1}' });
    assert.equal(meta.contentType, null);
    assert.equal(meta.data, '{"a":1}');
  });
  test('resolves with text when a JSON Content-Type carries invalid JSON', async () => {
    const { sdk } = setup();
    assert.equal((await answer(sdk, { type: 'application/json', body: 'not json' })).data, 'not json');
  });
  test('an empty JSON body resolves to null; an empty other body to ""', async () => {
    const { sdk } = setup();
    assert.equal((await answer(sdk, { type: 'application/json' })).data, null);
    assert.equal((await answer(sdk, { type: 'text/plain' })).data, '');
  });
  test('204 No Content resolves to ""', async () => {
    const { sdk } = setup();
    const meta = await answer(sdk, { status: 204 });
    assert.equal(meta.status, 204);
    assert.equal(meta.data, '');
  });
  test('any 2xx is a success, even a body shaped like an envelope', async () => {
    const { sdk } = setup();
    const body = { success: false, errors: { code: 'X', detail: 'y', scope: null, params: [] }, request_id: 'r' };
    const meta = await answer(sdk, { status: 201, type: 'application/json', body: JSON.stringify(body) });
    assert.equal(meta.status, 201);
    assert.deepEqual(meta.data, body);
  });
  test('executeWithMeta returns data, status, requestId, timing and serverTiming (a composite)', async () => {
    const { sdk } = setup();
    const meta = await sdk.connectors.composite.executeWithMeta({ permalink: 'auth-and-fetch-ok' });
    assert.equal(meta.data.path, '/echo', 'the last step answered');
    assert.equal(meta.status, 200);
    assert.match(meta.requestId, /^[0-9a-f]{32}$/);
    assert.equal(meta.headers['x-request-id'], meta.requestId);
    assert.equal(meta.timing.request_id, meta.requestId);
    assert.deepEqual(meta.timing.steps.map((s) => [s.name, s.index, s.status_code]), [['auth', 0, 200], ['fetch-user', 1, 200]]);
    assert.ok(meta.timing.steps.every((s) => typeof s.duration_ms === 'number' && s.duration_ms >= 0));
    assert.deepEqual(meta.serverTiming.map((e) => e.name), ['step.auth', 'step.fetch-user', 'total']);
    assert.deepEqual(meta.serverTiming.map((e) => e.desc), ['Step: auth', 'Step: fetch-user', 'Total']);
    assert.equal(meta.serverTiming[2].dur, meta.timing.total_ms, 'both headers tell the same total');
    assert.equal(meta.contentType, 'application/json');
    assert.deepEqual(sdk.lastTiming, meta.timing);
    assert.equal(sdk.lastRequestId, meta.requestId);
  });
  test('simple connector timing is passed through as parsed', async () => {
    const { sdk } = setup();
    const meta = await sdk.connectors.executeWithMeta({ permalink: 'p', method: 'GET' });
    assert.deepEqual(Object.keys(meta.timing.breakdown).sort(), ['cache_ms', 'http_request_ms', 'setup_ms', 'transform_ms']);
    assert.equal(meta.timing.cache_hit, false);
    assert.equal(meta.timing.external_host, new URL(world.upstream.url).host);
    assert.equal(meta.timing.request_id, meta.requestId);
    assert.deepEqual(meta.serverTiming.map((e) => e.name), ['setup', 'transform', 'cache', 'external', 'total']);
  });
  test('the request id falls back to timing.request_id without X-Request-ID (a browser hides it cross-origin)', async () => {
    const timing = { request_id: 'r', total_ms: 12.5, internal_ms: 2.5, external_ms: 10, breakdown: { setup_ms: 1.5, transform_ms: 1, cache_ms: 0, http_request_ms: 10 }, cache_hit: false, external_host: 'api.example' };
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Connector-Timing': JSON.stringify(timing) });
      res.end('{}');
    });
    const meta = await sdk.connectors.executeWithMeta({ permalink: 'p', method: 'GET' });
    assert.deepEqual(meta.timing, timing);
    assert.equal(meta.requestId, 'r');
  });
  test('missing or unreadable timing headers give null / []', async () => {
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Connector-Timing': '{broken', 'Server-Timing': '' });
      res.end('{}');
    });
    const meta = await sdk.connectors.executeWithMeta({ permalink: 'p', method: 'GET' });
    assert.equal(meta.timing, null);
    assert.deepEqual(meta.serverTiming, []);
    assert.equal(meta.requestId, null);
  });
});

describe('ConnectorExecuteError from the envelope', () => {
  test('composite step failure: every field', async () => {
    const { sdk } = setup();
    const err = await rejection(sdk.connectors.composite.execute({ permalink: 'auth-and-fetch-user' }));
    assert.ok(err instanceof ConnectorExecuteError);
    assert.ok(err instanceof Error);
    assert.ok(!(err instanceof ConnectorBoundaryError));
    assert.equal(err.name, 'ConnectorExecuteError');
    assert.equal(err.code, 'DOWNSTREAM_HTTP_ERROR');
    assert.equal(err.reason, 'DOWNSTREAM_HTTP_ERROR');
    assert.equal(err.detail, 'the upstream answered HTTP 404');
    assert.equal(err.failureScope, "Composite step 'fetch-user' (index 1): Downstream (HTTP error)");
    assert.deepEqual(err.params, []);
    assert.match(err.requestId, /^[0-9a-f]{32}$/);
    assert.equal(err.requestId, err.body.request_id);
    assert.equal(err.status, 502);
    assert.equal(err.timing.request_id, err.requestId);
    assert.deepEqual(err.timing.steps.map((s) => [s.name, s.status_code]), [['auth', 200], ['fetch-user', 404]]);
    assert.deepEqual(err.serverTiming.map((e) => e.name), ['step.auth', 'step.fetch-user', 'total']);
    assert.equal(err.permalink, 'auth-and-fetch-user');
    assert.equal(err.body.success, false);
    assert.equal(err.body.errors.code, 'DOWNSTREAM_HTTP_ERROR');
    assert.match(err.message, /auth-and-fetch-user/);
    assert.match(err.message, /502/);
    assert.match(err.message, /DOWNSTREAM_HTTP_ERROR/);
    assert.deepEqual(sdk.lastTiming, err.timing);
    assert.equal(sdk.lastRequestId, err.requestId);
  });
  test('400 with params and a null scope', async () => {
    const { sdk } = setup();
    const err = await rejection(sdk.connectors.execute({ permalink: 'needs-id', method: 'GET' }));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'MISSING_PATH_PARAMETERS');
    assert.deepEqual(err.params, ['item_id']);
    assert.equal(err.failureScope, null);
    assert.equal(err.timing, null, 'refused before any run: no timing');
  });
  const cases = [
    [404, 'CONNECTOR_NOT_FOUND', null, (sdk) => sdk.connectors.execute({ permalink: 'nope', method: 'GET' })],
    [405, 'METHOD_NOT_ALLOWED', null, (sdk) => sdk.connectors.execute({ permalink: 'p', method: 'DELETE' })],
    [413, 'PAYLOAD_TOO_LARGE', null, (sdk) => sdk.connectors.execute({ permalink: 'p-post', method: 'POST', payload: 'x'.repeat(70000) })],
    [422, 'TEMPLATE_RENDERING_ERROR', "Composite step 'parse' (index 0): Configuration (template rendering)",
      (sdk) => sdk.connectors.composite.execute({ permalink: 'bad-template', payload: 'not an object' })],
    [504, 'DOWNSTREAM_TIMEOUT', 'Downstream (network/external service)', (sdk) => sdk.connectors.execute({ permalink: 'slow', method: 'GET' })],
  ];
  for (const [status, code, scope, call] of cases) {
    test(status + ' ' + code + ' maps to ConnectorExecuteError', async () => {
      const { sdk } = setup();
      const err = await rejection(call(sdk));
      assert.ok(err instanceof ConnectorExecuteError, String(err));
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.equal(err.failureScope, scope);
      assert.match(err.requestId, /^[0-9a-f]{32}$/);
      assert.equal(err.requestId, err.body.request_id);
    });
  }
  test('500 UNEXPECTED_ERROR maps too (the envelope as a server sends it)', async () => {
    const envelope = { success: false, errors: { code: 'UNEXPECTED_ERROR', detail: 'd', scope: 'Unexpected error', params: [] }, request_id: 'rid' };
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(envelope));
    });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
    assert.ok(err instanceof ConnectorExecuteError);
    assert.equal(err.status, 500);
    assert.equal(err.code, 'UNEXPECTED_ERROR');
    assert.equal(err.failureScope, 'Unexpected error');
    assert.equal(err.requestId, 'rid');
  });
  test('the envelope is recognised even without a JSON Content-Type', async () => {
    const sdk = standInSdk('/connectors/nope/execute', (req, res) => {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end(JSON.stringify({ success: false, errors: { code: 'CONNECTOR_NOT_FOUND', detail: 'no such connector', scope: null, params: [] } }));
    });
    const err = await rejection(sdk.connectors.execute({ permalink: 'nope', method: 'GET' }));
    assert.equal(err.code, 'CONNECTOR_NOT_FOUND');
  });
  test('request id comes from the envelope, else from X-Request-ID', async () => {
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(400, { 'Content-Type': 'application/json', 'X-Request-ID': 'from-header' });
      res.end(JSON.stringify({ success: false, errors: { code: 'X', detail: 'd', scope: null, params: [] } }));
    });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
    assert.equal(err.requestId, 'from-header');
    // The runtime's own: the envelope's request_id is its X-Request-ID.
    const { sdk: real } = setup();
    const realErr = await rejection(real.connectors.executeWithMeta({ permalink: 'nope', method: 'GET' }));
    assert.equal(realErr.requestId, real.lastRequestId);
  });
  test('executeWithMeta rejects the same way', async () => {
    const { sdk } = setup();
    const err = await rejection(sdk.connectors.executeWithMeta({ permalink: 'jwt-broken', method: 'GET' }));
    assert.ok(err instanceof ConnectorExecuteError);
    assert.equal(err.status, 422);
    assert.equal(err.code, 'JWT_SIGNING_ERROR');
    assert.equal(err.failureScope, 'Authentication (JWT signing)');
  });
});

describe('ConnectorExecuteError for other non-2xx answers (a proxy in front of the runtime)', () => {
  test('HTML from a proxy → code HTTP_<status>, body kept as text', async () => {
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(502, 'Bad Gateway', { 'Content-Type': 'text/html', 'X-Request-ID': 'r2' });
      res.end('<h1>Bad Gateway</h1>');
    });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
    assert.ok(err instanceof ConnectorExecuteError);
    assert.equal(err.code, 'HTTP_502');
    assert.equal(err.reason, 'HTTP_502');
    assert.equal(err.status, 502);
    assert.equal(err.detail, 'HTTP 502 Bad Gateway');
    assert.equal(err.failureScope, null);
    assert.deepEqual(err.params, []);
    assert.equal(err.requestId, 'r2');
    assert.equal(err.body, '<h1>Bad Gateway</h1>');
  });
  test('JSON that is not an envelope → HTTP_<status>, parsed body kept', async () => {
    const sdk = standInSdk('/connectors/composite/c/execute', (req, res) => {
      res.writeHead(403, { 'Content-Type': 'application/json' });
      res.end('{"message":"nope"}');
    });
    const err = await rejection(sdk.connectors.composite.execute({ permalink: 'c' }));
    assert.equal(err.code, 'HTTP_403');
    assert.deepEqual(err.body, { message: 'nope' });
  });
  test('an empty 503 → HTTP_503', async () => {
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(503, '');
      res.end();
    });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
    assert.equal(err.code, 'HTTP_503');
    assert.equal(err.detail, 'HTTP 503');
  });
});

describe('plain Errors', () => {
  test('a fetch rejection (network failure: nothing listens) → plain Error with cause', async () => {
    const port = await freePort();
    const sdk = new WidgetServiceSDK({ baseUrl: 'http://127.0.0.1:' + port });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.ok(!(err instanceof ConnectorExecuteError));
    assert.match(err.message, /Network error/);
    assert.match(err.message, /fetch failed/);
    assert.ok(err.cause instanceof TypeError, 'cause: what fetch rejected with');
    assert.equal(err.cause.cause && err.cause.cause.code, 'ECONNREFUSED');
  });
  test('a fetch implementation that throws synchronously → plain Error (a rejection, not a throw)', async () => {
    const sdk = new WidgetServiceSDK({ baseUrl: world.runtime.url, fetch: () => { throw new TypeError('boom'); } });
    const promise = sdk.connectors.composite.execute({ permalink: 'c' });
    const err = await rejection(promise);
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /boom/);
  });
  test('a connection cut while the body is read → plain Error', async () => {
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
      res.write('{"partial":');
      setTimeout(() => res.socket.destroy(), 20);
    });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /Network error reading the response/);
  });
  test('timeout: the call is aborted and rejects saying it timed out; the runtime drops its upstream call', async () => {
    const { sdk, calls, up } = setup({ timeout: 100 });
    up.reset();
    const started = Date.now();
    const err = await rejection(sdk.connectors.execute({ permalink: 'slow', method: 'GET' }));
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /timed out after 100 ms/);
    assert.equal(err.timedOut, true);
    assert.ok(Date.now() - started < STEP_TIMEOUT_MS, 'the SDK gave up, not the runtime');
    assert.equal(calls[0].init.signal.aborted, true, 'the request is aborted');
    // The runtime saw its caller go and hung up on the upstream before its own step timeout.
    await waitFor(() => up.closed.includes('/hang'), STEP_TIMEOUT_MS - 200, 'the upstream call to be dropped');
  });
  test('timeout: a fetch that ignores the signal still rejects', async () => {
    const ignoring = (url, init) => globalThis.fetch(url, { ...init, signal: undefined });
    const sdk = new WidgetServiceSDK({ baseUrl: world.runtime.url, fetch: ignoring });
    sdk.setDefaultTimeout(50);
    const err = await rejection(sdk.connectors.execute({ permalink: 'slow', method: 'GET' }));
    assert.match(err.message, /timed out/);
  });
  test('timeout: a per-call timeout overrides the default', async () => {
    const { sdk } = setup();
    const started = Date.now();
    const err = await rejection(sdk.connectors.execute({ permalink: 'slow', method: 'GET', timeout: 30 }));
    assert.match(err.message, /timed out after 30 ms/);
    assert.ok(Date.now() - started < STEP_TIMEOUT_MS);
  });
  test('timeout also covers reading the body', async () => {
    const sdk = standInSdk('/connectors/p/execute', (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{"slow":');
    }, { timeout: 80 });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
    assert.match(err.message, /timed out after 80 ms/);
  });
  test('a fast answer is not affected by the timeout', async () => {
    const { sdk } = setup({ timeout: 2000 });
    const data = await sdk.connectors.execute({ permalink: 'answer', method: 'GET', queryParams: { type: 'application/json', body: '{"ok":true}' } });
    assert.deepEqual(data, { ok: true });
  });
  test("the caller's AbortSignal aborts the call → plain Error", async () => {
    const { sdk, calls } = setup();
    const controller = new AbortController();
    const promise = sdk.connectors.execute({ permalink: 'slow', method: 'GET', signal: controller.signal });
    setTimeout(() => controller.abort(), 30);
    const err = await rejection(promise);
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /aborted/);
    assert.equal(err.aborted, true);
    assert.equal(calls[0].init.signal.aborted, true);
  });
  test('an already-aborted signal rejects at once, before a request', async () => {
    const { sdk, calls } = setup();
    const err = await rejection(sdk.connectors.execute({ permalink: 'slow', method: 'GET', signal: AbortSignal.abort() }));
    assert.match(err.message, /aborted/);
    assert.ok(calls.length === 0 || calls[0].init.signal.aborted, 'nothing goes out unaborted');
  });
  test('no fetch available → plain Error', async () => {
    const original = Object.getOwnPropertyDescriptor(globalThis, 'fetch');
    Object.defineProperty(globalThis, 'fetch', { value: undefined, configurable: true, writable: true });
    try {
      const sdk = new WidgetServiceSDK({ baseUrl: 'http://127.0.0.1:9' });
      const err = await rejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
      assert.equal(Object.getPrototypeOf(err), Error.prototype);
      assert.match(err.message, /fetch is not available/);
    } finally {
      Object.defineProperty(globalThis, 'fetch', original);
    }
  });
});

describe('timing header parsers', () => {
  test('parseServerTiming: simple connector entries', () => {
    assert.deepEqual(
      parseServerTiming('setup;dur=1.5;desc="Setup", transform;dur=0.2;desc="Transform", cache;dur=0.0;desc="Cache Miss", external;dur=10.0;desc="api.example", total;dur=12.0;desc="Total"'),
      [
        { name: 'setup', dur: 1.5, desc: 'Setup' },
        { name: 'transform', dur: 0.2, desc: 'Transform' },
        { name: 'cache', dur: 0, desc: 'Cache Miss' },
        { name: 'external', dur: 10, desc: 'api.example' },
        { name: 'total', dur: 12, desc: 'Total' },
      ]
    );
  });
  test('parseServerTiming: quoted commas and semicolons, bare names, odd input', () => {
    assert.deepEqual(parseServerTiming('a;desc="x, y; z";dur=3, b , c;dur=nope'), [
      { name: 'a', dur: 3, desc: 'x, y; z' },
      { name: 'b', dur: null, desc: null },
      { name: 'c', dur: null, desc: null },
    ]);
    assert.deepEqual(parseServerTiming(null), []);
    assert.deepEqual(parseServerTiming(' '), []);
    assert.deepEqual(parseServerTiming(',,'), []);
  });
  test('parseServerTiming reads what the runtime sends', async () => {
    const res = await fetch(world.runtime.url + '/connectors/p/execute');
    await res.text();
    const entries = parseServerTiming(res.headers.get('Server-Timing'));
    assert.deepEqual(entries.map((e) => e.name), ['setup', 'transform', 'cache', 'external', 'total']);
    assert.equal(entries[2].desc, 'Cache Miss');
    assert.ok(entries.every((e) => typeof e.dur === 'number'));
  });
  test('parseConnectorTiming', () => {
    assert.deepEqual(parseConnectorTiming('{"total_ms":1}'), { total_ms: 1 });
    assert.equal(parseConnectorTiming('nope'), null);
    assert.equal(parseConnectorTiming('42'), null);
    assert.equal(parseConnectorTiming(null), null);
    assert.equal(parseConnectorTiming(''), null);
  });
});
