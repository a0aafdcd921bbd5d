// How answers map to results: parsed JSON or text, ConnectorExecuteError, plain Errors, timing.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConnectorExecuteError, ConnectorBoundaryError, parseServerTiming, parseConnectorTiming,
} from '../connectors-sdk.mjs';
import { setup, jsonResponse } from '../testlib/fake-fetch.mjs';

const COMPOSITE_TIMING = {
  request_id: 'req-1', total_ms: 210.1,
  steps: [
    { name: 'auth', index: 0, duration_ms: 120.5, status_code: 200 },
    { name: 'fetch-user', index: 1, duration_ms: 85.3, status_code: 404 },
  ],
};
const SERVER_TIMING = 'step.auth;dur=120.5;desc="Step: auth", step.fetch-user;dur=85.3;desc="Step: fetch-user", total;dur=210.1;desc="Total"';

function envelope(code, detail, scope, params = [], requestId = 'req-1') {
  return { success: false, errors: { code, detail, scope, params }, request_id: requestId };
}

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

describe('success', () => {
  test('resolves with the parsed JSON body', async () => {
    const { sdk } = setup(() => jsonResponse({ id: 'itm_042', tags: ['a'] }));
    assert.deepEqual(await sdk.connectors.execute({ permalink: 'p' }), { id: 'itm_042', tags: ['a'] });
  });
  test('JSON is recognised with parameters and +json types', async () => {
    for (const type of ['application/json; charset=utf-8', 'Application/JSON', 'application/problem+json', 'application/vnd.api+json']) {
      const { sdk } = setup(() => new Response('[1,2]', { headers: { 'Content-Type': type } }));
      assert.deepEqual(await sdk.connectors.execute({ permalink: 'p' }), [1, 2], type);
    }
  });
  test('resolves with text when the response is not JSON', async () => {
    for (const [type, body] of [['text/plain', 'hello'], ['text/html; charset=utf-8', '<p>hi</p>'], ['text/csv', '{"looks":"like json"}']]) {
      const { sdk } = setup(() => new Response(body, { headers: { 'Content-Type': type } }));
      assert.equal(await sdk.connectors.execute({ permalink: 'p' }), body);
    }
  });
  test('resolves with text when there is no Content-Type', async () => {
    const { sdk } = setup(() => new Response(new TextEncoder().encode('{"a":1}')));
    const meta = await sdk.connectors.executeWithMeta({ permalink: 'p' });
    assert.equal(meta.contentType, null);
    assert.equal(meta.data, '{"a":1}');
  });
  test('resolves with text when a JSON Content-Type carries invalid JSON', async () => {
    const { sdk } = setup(() => new Response('not json', { headers: { 'Content-Type': 'application/json' } }));
    assert.equal(await sdk.connectors.execute({ permalink: 'p' }), 'not json');
  });
  test('an empty JSON body resolves to null; an empty other body to ""', async () => {
    let type = 'application/json';
    const { sdk } = setup(() => new Response('', { status: 200, headers: { 'Content-Type': type } }));
    assert.equal(await sdk.connectors.execute({ permalink: 'p' }), null);
    type = 'text/plain';
    assert.equal(await sdk.connectors.execute({ permalink: 'p' }), '');
  });
  test('204 No Content resolves to ""', async () => {
    const { sdk } = setup(() => new Response(null, { status: 204 }));
    assert.equal(await sdk.connectors.execute({ permalink: 'p', method: 'DELETE' }), '');
  });
  test('any 2xx is a success, even a body shaped like an envelope', async () => {
    const body = envelope('X', 'y', null);
    const { sdk } = setup(() => jsonResponse(body, 201));
    assert.deepEqual(await sdk.connectors.composite.execute({ permalink: 'c' }), body);
  });
  test('executeWithMeta returns data, status, requestId, timing and serverTiming', async () => {
    const { sdk } = setup(() => jsonResponse({ ok: 1 }, 200, {
      'X-Request-ID': 'req-1', 'X-Connector-Timing': JSON.stringify(COMPOSITE_TIMING), 'Server-Timing': SERVER_TIMING,
    }));
    const meta = await sdk.connectors.composite.executeWithMeta({ permalink: 'c' });
    assert.deepEqual(meta.data, { ok: 1 });
    assert.equal(meta.status, 200);
    assert.equal(meta.requestId, 'req-1');
    assert.deepEqual(meta.timing, COMPOSITE_TIMING);
    assert.deepEqual(meta.serverTiming, [
      { name: 'step.auth', dur: 120.5, desc: 'Step: auth' },
      { name: 'step.fetch-user', dur: 85.3, desc: 'Step: fetch-user' },
      { name: 'total', dur: 210.1, desc: 'Total' },
    ]);
    assert.equal(meta.contentType, 'application/json');
    assert.equal(meta.headers['x-request-id'], 'req-1');
    assert.deepEqual(sdk.lastTiming, COMPOSITE_TIMING);
    assert.equal(sdk.lastRequestId, 'req-1');
  });
  test('simple connector timing is passed through as parsed', async () => {
    const timing = { request_id: 'r', total_ms: 12.5, internal_ms: 2.5, external_ms: 10, breakdown: { setup_ms: 1.5, transform_ms: 1, cache_ms: 0, http_request_ms: 10 }, cache_hit: false, external_host: 'api.example' };
    const { sdk } = setup(() => jsonResponse({}, 200, { 'X-Connector-Timing': JSON.stringify(timing) }));
    const meta = await sdk.connectors.executeWithMeta({ permalink: 'p' });
    assert.deepEqual(meta.timing, timing);
    assert.equal(meta.requestId, 'r', 'falls back to timing.request_id without X-Request-ID');
  });
  test('missing or unreadable timing headers give null / []', async () => {
    const { sdk } = setup(() => jsonResponse({}, 200, { 'X-Connector-Timing': '{broken', 'Server-Timing': '' }));
    const meta = await sdk.connectors.executeWithMeta({ permalink: 'p' });
    assert.equal(meta.timing, null);
    assert.deepEqual(meta.serverTiming, []);
    assert.equal(meta.requestId, null);
  });
});

describe('ConnectorExecuteError from the envelope', () => {
  test('composite step failure: every field', async () => {
    const body = envelope('DOWNSTREAM_HTTP_ERROR', 'the upstream answered HTTP 404',
      "Composite step 'fetch-user' (index 1): Downstream (HTTP error)", [], 'req-9');
    const { sdk } = setup(() => jsonResponse(body, 502, {
      'X-Request-ID': 'req-9', 'X-Connector-Timing': JSON.stringify(COMPOSITE_TIMING), 'Server-Timing': SERVER_TIMING,
    }));
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
    assert.equal(err.requestId, 'req-9');
    assert.equal(err.status, 502);
    assert.deepEqual(err.timing, COMPOSITE_TIMING);
    assert.equal(err.serverTiming.length, 3);
    assert.equal(err.permalink, 'auth-and-fetch-user');
    assert.deepEqual(err.body, body);
    assert.match(err.message, /auth-and-fetch-user/);
    assert.match(err.message, /502/);
    assert.match(err.message, /DOWNSTREAM_HTTP_ERROR/);
    assert.deepEqual(sdk.lastTiming, COMPOSITE_TIMING);
    assert.equal(sdk.lastRequestId, 'req-9');
  });
  test('400 with params and a null scope', async () => {
    const { sdk } = setup(() => jsonResponse(envelope('MISSING_PATH_PARAMETERS', 'required path parameters are missing', null, ['item_id']), 400));
    const err = await rejection(sdk.connectors.execute({ permalink: 'get-item' }));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'MISSING_PATH_PARAMETERS');
    assert.deepEqual(err.params, ['item_id']);
    assert.equal(err.failureScope, null);
    assert.equal(err.timing, null);
  });
  for (const [status, code, scope] of [
    [404, 'CONNECTOR_NOT_FOUND', null],
    [405, 'METHOD_NOT_ALLOWED', null],
    [413, 'PAYLOAD_TOO_LARGE', null],
    [422, 'TEMPLATE_RENDERING_ERROR', 'Configuration (template rendering)'],
    [500, 'UNEXPECTED_ERROR', 'Unexpected error'],
    [504, 'DOWNSTREAM_TIMEOUT', 'Downstream (network/external service)'],
  ]) {
    test(status + ' ' + code + ' maps to ConnectorExecuteError', async () => {
      const { sdk } = setup(() => jsonResponse(envelope(code, 'd', scope, [], 'rid'), status));
      const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
      assert.ok(err instanceof ConnectorExecuteError);
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.equal(err.failureScope, scope);
      assert.equal(err.requestId, 'rid');
    });
  }
  test('the envelope is recognised even without a JSON Content-Type', async () => {
    const { sdk } = setup(() => new Response(JSON.stringify(envelope('CONNECTOR_NOT_FOUND', 'no such connector', null)), { status: 404, headers: { 'Content-Type': 'text/plain' } }));
    const err = await rejection(sdk.connectors.execute({ permalink: 'nope' }));
    assert.equal(err.code, 'CONNECTOR_NOT_FOUND');
  });
  test('request id comes from the envelope, else from X-Request-ID', async () => {
    const body = envelope('X', 'd', null);
    delete body.request_id;
    const { sdk } = setup(() => jsonResponse(body, 400, { 'X-Request-ID': 'from-header' }));
    const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
    assert.equal(err.requestId, 'from-header');
  });
  test('executeWithMeta rejects the same way', async () => {
    const { sdk } = setup(() => jsonResponse(envelope('JWT_SIGNING_ERROR', 'd', 'Authentication (JWT signing)'), 422));
    const err = await rejection(sdk.connectors.executeWithMeta({ permalink: 'p' }));
    assert.ok(err instanceof ConnectorExecuteError);
    assert.equal(err.failureScope, 'Authentication (JWT signing)');
  });
});

describe('ConnectorExecuteError for other non-2xx answers', () => {
  test('HTML from a proxy → code HTTP_<status>, body kept as text', async () => {
    const { sdk } = setup(() => new Response('<h1>Bad Gateway</h1>', { status: 502, statusText: 'Bad Gateway', headers: { 'Content-Type': 'text/html', 'X-Request-ID': 'r2' } }));
    const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
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
    const { sdk } = setup(() => jsonResponse({ message: 'nope' }, 403));
    const err = await rejection(sdk.connectors.composite.execute({ permalink: 'c' }));
    assert.equal(err.code, 'HTTP_403');
    assert.deepEqual(err.body, { message: 'nope' });
  });
  test('an empty 503 → HTTP_503', async () => {
    const { sdk } = setup(() => new Response(null, { status: 503 }));
    const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
    assert.equal(err.code, 'HTTP_503');
    assert.equal(err.detail, 'HTTP 503');
  });
});

describe('plain Errors', () => {
  test('a fetch rejection (network failure) → plain Error with cause', async () => {
    const cause = new TypeError('Failed to fetch');
    const { sdk } = setup(() => Promise.reject(cause));
    const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.ok(!(err instanceof ConnectorExecuteError));
    assert.match(err.message, /Network error/);
    assert.match(err.message, /Failed to fetch/);
    assert.equal(err.cause, cause);
  });
  test('a fetch that throws synchronously → plain Error (a rejection, not a throw)', async () => {
    const { sdk } = setup(() => {
      throw new TypeError('boom');
    });
    const promise = sdk.connectors.composite.execute({ permalink: 'c' });
    const err = await rejection(promise);
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /boom/);
  });
  test('a failure while reading the body → plain Error', async () => {
    const { sdk } = setup(() => ({ status: 200, headers: new Headers(), text: () => Promise.reject(new Error('connection reset')) }));
    const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /connection reset/);
  });
  test('timeout: fetch honouring the AbortSignal → plain Error saying it timed out', async () => {
    let signal;
    const { sdk } = setup((url, init) => {
      signal = init.signal;
      return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    }, { timeout: 20 });
    const err = await rejection(sdk.connectors.execute({ permalink: 'slow' }));
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /timed out after 20 ms/);
    assert.equal(err.timedOut, true);
    assert.equal(signal.aborted, true, 'the request is aborted');
  });
  test('timeout: a fetch that ignores the signal still rejects', async () => {
    const { sdk } = setup(() => new Promise(() => {}));
    sdk.setDefaultTimeout(15);
    const err = await rejection(sdk.connectors.composite.execute({ permalink: 'c' }));
    assert.match(err.message, /timed out/);
  });
  test('timeout: a per-call timeout overrides the default', async () => {
    const { sdk } = setup(() => new Promise(() => {}));
    const started = Date.now();
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', timeout: 10 }));
    assert.match(err.message, /timed out after 10 ms/);
    assert.ok(Date.now() - started < 5000);
  });
  test('timeout also covers reading the body', async () => {
    const { sdk } = setup(() => ({ status: 200, headers: new Headers(), text: () => new Promise(() => {}) }), { timeout: 15 });
    const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
    assert.match(err.message, /timed out/);
  });
  test('a fast answer is not affected by the timeout', async () => {
    const { sdk } = setup(() => jsonResponse({ ok: true }), { timeout: 50 });
    assert.deepEqual(await sdk.connectors.execute({ permalink: 'p' }), { ok: true });
    await new Promise((r) => setTimeout(r, 80));
  });
  test("the caller's AbortSignal aborts the call → plain Error", async () => {
    const controller = new AbortController();
    let seen;
    const { sdk } = setup((url, init) => {
      seen = init.signal;
      return new Promise(() => {});
    });
    const promise = sdk.connectors.execute({ permalink: 'p', signal: controller.signal });
    setTimeout(() => controller.abort(), 5);
    const err = await rejection(promise);
    assert.equal(Object.getPrototypeOf(err), Error.prototype);
    assert.match(err.message, /aborted/);
    assert.equal(err.aborted, true);
    assert.equal(seen.aborted, true);
  });
  test('an already-aborted signal rejects at once', async () => {
    const { sdk } = setup(() => new Promise(() => {}));
    const err = await rejection(sdk.connectors.execute({ permalink: 'p', signal: AbortSignal.abort() }));
    assert.match(err.message, /aborted/);
  });
  test('no fetch available → plain Error', async () => {
    const original = Object.getOwnPropertyDescriptor(globalThis, 'fetch');
    Object.defineProperty(globalThis, 'fetch', { value: undefined, configurable: true, writable: true });
    try {
      const { WidgetServiceSDK } = await import('../connectors-sdk.mjs');
      const sdk = new WidgetServiceSDK();
      const err = await rejection(sdk.connectors.execute({ permalink: 'p' }));
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
  test('parseConnectorTiming', () => {
    assert.deepEqual(parseConnectorTiming('{"total_ms":1}'), { total_ms: 1 });
    assert.equal(parseConnectorTiming('nope'), null);
    assert.equal(parseConnectorTiming('42'), null);
    assert.equal(parseConnectorTiming(null), null);
    assert.equal(parseConnectorTiming(''), null);
  });
});
