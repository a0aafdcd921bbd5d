// What goes on the wire: routes, methods, query and path-param encoding, payload, headers —
// as the real runtime (release binary, on 127.0.0.1) received it and passed it to a recording
// upstream (sdk/testlib/echo.mjs).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WidgetServiceSDK } from '../connectors-sdk.mjs';
import { startEcho, makeSetup, echo, seenHeader, seenQuery, recordingFetch, METHODS } from '../testlib/echo.mjs';

let world;
let setup;
before(async () => {
  world = await startEcho();
  setup = makeSetup(world);
});
after(() => world && world.stop());

describe('simple route', () => {
  test('GET {base}/connectors/{permalink}/execute, no body, no Content-Type, no X-Path-Params', async () => {
    const { sdk, calls, up } = setup();
    const seen = await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, world.runtime.url + '/connectors/p/execute');
    assert.equal(calls[0].init.method, 'GET');
    assert.equal(calls[0].init.credentials, 'same-origin');
    assert.ok(calls[0].init.signal instanceof AbortSignal, 'an AbortSignal is passed');
    // The runtime ran `p` (it answers 405 to another method) and the upstream saw no body.
    assert.equal(seen.method, 'GET');
    const got = up.last();
    assert.equal(got.body, '');
    assert.equal(seenHeader(got, 'Content-Type'), undefined);
    assert.equal(seenHeader(got, 'X-Path-Params'), undefined);
    assert.equal(got.path, '/echo/none', 'no path params: the declared default');
  });

  for (const method of METHODS) {
    const hasBody = ['POST', 'PUT', 'PATCH'].includes(method);
    test(method + (hasBody ? ' sends' : ' does not send') + ' the JSON payload', async () => {
      const { sdk, up } = setup();
      const meta = await sdk.connectors.executeWithMeta({ permalink: echo(method), method, payload: { a: 1, b: [true, null] } });
      assert.equal(meta.status, 200, 'the runtime accepted the method');
      const got = up.last();
      assert.equal(got.method, method);
      if (hasBody) {
        assert.equal(got.body, '{"a":1,"b":[true,null]}');
        assert.equal(seenHeader(got, 'Content-Type'), 'application/json');
      } else {
        assert.equal(got.body, '');
        assert.equal(seenHeader(got, 'Content-Type'), undefined);
      }
    });
  }

  test('the method is case-insensitive and sent upper-case', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({ permalink: echo('POST'), method: 'post', payload: 1 });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(up.last().method, 'POST');
    assert.equal(up.last().body, '1');
  });

  test("a method that is not the connector's is refused by the runtime (405), which is why it is required", async () => {
    const { sdk } = setup();
    await assert.rejects(sdk.connectors.execute({ permalink: 'p', method: 'POST' }), (e) => e.status === 405 && e.code === 'METHOD_NOT_ALLOWED');
  });

  test('POST without payload sends no body', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.execute({ permalink: echo('POST'), method: 'POST' });
    assert.equal(up.last().body, '');
    assert.equal(seenHeader(up.last(), 'Content-Type'), undefined);
  });

  test('falsy payloads are still JSON: null, 0, false, ""', async () => {
    const { sdk, up } = setup();
    up.reset();
    for (const payload of [null, 0, false, '']) await sdk.connectors.execute({ permalink: echo('PATCH'), method: 'PATCH', payload });
    assert.deepEqual(up.requests.map((r) => r.body), ['null', '0', 'false', '""']);
  });

  test('path params travel in X-Path-Params, form-urlencoded, in insertion order', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({
      permalink: 'p',
      method: 'GET',
      pathParams: { item_id: 'itm_042', 'a b': 'x&y=z', n: 7, uni: 'é/☃' },
    });
    const value = seenHeader(up.last(), 'X-Path-Params');
    assert.equal(value, 'item_id=itm_042&a+b=x%26y%3Dz&n=7&uni=%C3%A9%2F%E2%98%83');
    assert.deepEqual(Object.fromEntries(new URLSearchParams(value)), { item_id: 'itm_042', 'a b': 'x&y=z', n: '7', uni: 'é/☃' });
    assert.equal(up.last().path, '/echo/itm_042', 'the runtime read item_id from it');
    assert.equal(calls[0].url, world.runtime.url + '/connectors/p/execute');
  });

  test('empty pathParams sends no X-Path-Params header', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', pathParams: {} });
    assert.equal(seenHeader(up.last(), 'X-Path-Params'), undefined);
  });

  test('query params are form-urlencoded into the URL', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', queryParams: { q: 'a b&c', page: 2, empty: '', 'ké y': 'ü' } });
    assert.equal(calls[0].url, world.runtime.url + '/connectors/p/execute?q=a+b%26c&page=2&empty=&k%C3%A9+y=%C3%BC');
    assert.deepEqual(seenQuery(up.last()), { q: 'a b&c', page: '2', empty: '', 'ké y': 'ü' });
  });

  test('Map and URLSearchParams are accepted as params', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', queryParams: new URLSearchParams('a=1&b=2'), pathParams: new Map([['item_id', 5]]) });
    assert.deepEqual(seenQuery(up.last()), { a: '1', b: '2' });
    assert.equal(seenHeader(up.last(), 'X-Path-Params'), 'item_id=5');
    assert.equal(up.last().path, '/echo/5');
  });

  test('the permalink is percent-encoded into the path', async () => {
    const { sdk, calls } = setup();
    const err = await sdk.connectors.execute({ permalink: 'a/b?c', method: 'GET' }).catch((e) => e);
    assert.equal(calls[0].url, world.runtime.url + '/connectors/a%2Fb%3Fc/execute');
    // The runtime decoded it back to the one permalink.
    assert.equal(err.code, 'CONNECTOR_NOT_FOUND');
    assert.match(err.detail, /'a\/b\?c'/);
  });

  test('unknown options are ignored', async () => {
    const { sdk, calls } = setup();
    const seen = await sdk.connectors.execute({ permalink: 'p', method: 'GET', cache: 'no', retries: 3, foo: { bar: 1 } });
    assert.equal(calls.length, 1);
    assert.equal(seen.path, '/echo/none');
  });
});

describe('composite route', () => {
  test('always POST {base}/connectors/composite/{permalink}/execute with the JSON payload', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c', payload: { user: 'u1' }, queryParams: { lang: 'fr' } });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].url, world.runtime.url + '/connectors/composite/c/execute?lang=fr');
    const seen = JSON.parse(up.last().body);
    assert.deepEqual(seen, { query: { lang: 'fr' }, body: '{"user":"u1"}', content_type: 'application/json' });
    assert.equal(seenHeader(up.last(), 'X-Path-Params'), undefined);
  });
  test('a method option is ignored (composites are always POST)', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c', method: 'GET', payload: [1] });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(JSON.parse(up.last().body).body, '[1]');
  });
  test('no method needed: a composite call without one is sent', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.composite.executeWithMeta({ permalink: 'c' });
    assert.equal(calls.length, 1);
  });
  test('without payload: POST with no body', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].init.body, undefined);
    assert.equal(calls[0].url, world.runtime.url + '/connectors/composite/c/execute');
    const seen = JSON.parse(up.last().body);
    assert.ok(seen.body === '' || seen.body === null, 'no body: ' + JSON.stringify(seen.body));
    assert.equal(seen.content_type, null);
  });
  test('custom headers are sent', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c', headers: { 'X-Tenant': 't1' } });
    assert.equal(seenHeader(up.last(), 'X-Tenant'), 't1');
  });
  test('every query key reaches the runtime, encoded', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c', queryParams: { 'a b': 'c&d=e', '☃': '%' } });
    assert.deepEqual(JSON.parse(up.last().body).query, { 'a b': 'c&d=e', '☃': '%' });
  });
});

describe('base URL', () => {
  test("defaults to '' (same origin)", () => {
    const sdk = new WidgetServiceSDK();
    assert.equal(sdk.getBaseUrl(), '');
    // A same-origin call from a page is in sdk/test/dom.test.mjs (a document at the runtime's URL).
  });
  test('set by the constructor, trailing slashes dropped', async () => {
    const { sdk, calls, up } = setup({ baseUrl: world.runtime.url + '//' });
    assert.equal(sdk.getBaseUrl(), world.runtime.url);
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(calls[0].url, world.runtime.url + '/connectors/composite/c/execute');
    assert.equal(up.last().path, '/echo-composite');
  });
  test('changed by configure', async () => {
    const { sdk, calls, up } = setup({ baseUrl: 'http://127.0.0.1:9' });
    sdk.configure({ baseUrl: world.runtime.url });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', queryParams: { a: 1 } });
    assert.equal(calls[0].url, world.runtime.url + '/connectors/p/execute?a=1');
    assert.deepEqual(seenQuery(up.last()), { a: '1' });
  });
});

describe('headers', () => {
  test('the CSRF token goes in X-CSRF-Token on both routes', async () => {
    const { sdk, up } = setup({ csrfToken: 'tok-123' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.last(), 'X-CSRF-Token'), 'tok-123');
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(seenHeader(up.last(), 'X-CSRF-Token'), 'tok-123');
  });
  test('no CSRF token configured (and no document) → no X-CSRF-Token', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.last(), 'X-CSRF-Token'), undefined);
  });
  test('configure({csrfToken: null}) clears it', async () => {
    const { sdk, up } = setup({ csrfToken: 'tok' });
    sdk.configure({ csrfToken: null });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.last(), 'X-CSRF-Token'), undefined);
  });
  test('default headers, then the CSRF token, then call headers (case-insensitive, call wins, one value each)', async () => {
    const { sdk, calls, up } = setup({ headers: { 'X-Tenant': 'default', 'X-App': 'widget' }, csrfToken: 'tok' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'x-tenant': 'call', 'X-Extra': 1 } });
    assert.deepEqual(calls[0].init.headers, { 'X-App': 'widget', 'X-CSRF-Token': 'tok', 'x-tenant': 'call', 'X-Extra': '1' });
    const got = up.last();
    // Two spellings sent would arrive joined ("default, call").
    assert.deepEqual(
      Object.fromEntries(['X-Tenant', 'X-App', 'X-CSRF-Token', 'X-Extra'].map((h) => [h, seenHeader(got, h)])),
      { 'X-Tenant': 'call', 'X-App': 'widget', 'X-CSRF-Token': 'tok', 'X-Extra': '1' }
    );
  });
  test('a call header named X-CSRF-Token wins over the configured token', async () => {
    const { sdk, up } = setup({ csrfToken: 'configured' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'x-csrf-token': 'call' } });
    assert.equal(seenHeader(up.last(), 'X-CSRF-Token'), 'call');
  });
  test('a caller Content-Type is kept', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({ permalink: echo('POST'), method: 'POST', payload: { a: 1 }, headers: { 'content-type': 'application/vnd.api+json' } });
    assert.equal(seenHeader(up.last(), 'Content-Type'), 'application/vnd.api+json');
    assert.equal(Object.keys(calls[0].init.headers).filter((k) => k.toLowerCase() === 'content-type').length, 1);
  });
  test('per-call headers do not stick', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'X-Once': '1' } });
    assert.equal(seenHeader(up.last(), 'X-Once'), '1');
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.last(), 'X-Once'), undefined);
  });
  test('a header of 4096 characters arrives whole', async () => {
    const { sdk, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'X-Big': 'a'.repeat(4096) } });
    assert.equal(seenHeader(up.last(), 'X-Big'), 'a'.repeat(4096));
  });
  test('the credentials mode is configurable (it goes to fetch)', async () => {
    const { sdk, calls } = setup({ credentials: 'include' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(calls[0].init.credentials, 'include');
  });
});

describe('fetch resolution', () => {
  test('globalThis.fetch is used when no fetch is injected (looked up at call time)', async (t) => {
    const sdk = new WidgetServiceSDK({ baseUrl: world.runtime.url });
    const spy = recordingFetch();
    const original = globalThis.fetch;
    t.mock.method(globalThis, 'fetch', (url, init) => {
      spy.calls.push({ url, init });
      return original(url, init);
    });
    const seen = await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(spy.calls.length, 1);
    assert.equal(seen.path, '/echo/none');
  });
  test('execute, executeWithMeta and composite.* can be called detached from their objects', async () => {
    const { sdk, calls } = setup();
    const { execute, executeWithMeta, composite } = sdk.connectors;
    await execute({ permalink: 'p', method: 'GET' });
    await executeWithMeta({ permalink: echo('DELETE'), method: 'DELETE' });
    const run = composite.execute;
    await run({ permalink: 'c' });
    assert.deepEqual(calls.map((c) => c.url.slice(world.runtime.url.length)), ['/connectors/p/execute', '/connectors/p-delete/execute', '/connectors/composite/c/execute']);
  });
});
