// What goes on the wire: routes, methods, query and path-param encoding, payload, headers.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { WidgetServiceSDK } from '../connectors-sdk.mjs';
import { setup, header, fakeFetch } from '../testlib/fake-fetch.mjs';

describe('simple route', () => {
  test('GET {base}/connectors/{permalink}/execute by default, no body, no Content-Type', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'get-item' });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, '/connectors/get-item/execute');
    assert.equal(calls[0].init.method, 'GET');
    assert.equal(calls[0].init.body, undefined);
    assert.equal(header(calls[0], 'Content-Type'), undefined);
    assert.equal(header(calls[0], 'X-Path-Params'), undefined);
    assert.equal(calls[0].init.credentials, 'same-origin');
    assert.ok(calls[0].init.signal, 'an AbortSignal is passed');
  });

  for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']) {
    const hasBody = ['POST', 'PUT', 'PATCH'].includes(method);
    test(method + (hasBody ? ' sends' : ' does not send') + ' the JSON payload', async () => {
      const { sdk, calls } = setup();
      await sdk.connectors.execute({ permalink: 'p', method, payload: { a: 1, b: [true, null] } });
      assert.equal(calls[0].init.method, method);
      if (hasBody) {
        assert.equal(calls[0].init.body, '{"a":1,"b":[true,null]}');
        assert.equal(header(calls[0], 'Content-Type'), 'application/json');
      } else {
        assert.equal(calls[0].init.body, undefined);
        assert.equal(header(calls[0], 'Content-Type'), undefined);
      }
    });
  }

  test('the method is case-insensitive and sent upper-case', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'post', payload: 1 });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].init.body, '1');
  });

  test('POST without payload sends no body', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'POST' });
    assert.equal(calls[0].init.body, undefined);
    assert.equal(header(calls[0], 'Content-Type'), undefined);
  });

  test('falsy payloads are still JSON: null, 0, false, ""', async () => {
    const { sdk, calls } = setup();
    for (const payload of [null, 0, false, '']) await sdk.connectors.execute({ permalink: 'p', method: 'PATCH', payload });
    assert.deepEqual(calls.map((c) => c.init.body), ['null', '0', 'false', '""']);
  });

  test('path params travel in X-Path-Params, form-urlencoded, in insertion order', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({
      permalink: 'get-item',
      pathParams: { item_id: 'itm_042', 'a b': 'x&y=z', n: 7, uni: 'é/☃' },
    });
    const value = header(calls[0], 'X-Path-Params');
    assert.equal(value, 'item_id=itm_042&a+b=x%26y%3Dz&n=7&uni=%C3%A9%2F%E2%98%83');
    assert.deepEqual(Object.fromEntries(new URLSearchParams(value)), { item_id: 'itm_042', 'a b': 'x&y=z', n: '7', uni: 'é/☃' });
    assert.equal(calls[0].url, '/connectors/get-item/execute');
  });

  test('empty pathParams sends no X-Path-Params header', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', pathParams: {} });
    assert.equal(header(calls[0], 'X-Path-Params'), undefined);
  });

  test('query params are form-urlencoded into the URL', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'search', queryParams: { q: 'a b&c', page: 2, empty: '', 'ké y': 'ü' } });
    assert.equal(calls[0].url, '/connectors/search/execute?q=a+b%26c&page=2&empty=&k%C3%A9+y=%C3%BC');
  });

  test('Map and URLSearchParams are accepted as params', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', queryParams: new URLSearchParams('a=1&b=2'), pathParams: new Map([['id', 5]]) });
    assert.equal(calls[0].url, '/connectors/p/execute?a=1&b=2');
    assert.equal(header(calls[0], 'X-Path-Params'), 'id=5');
  });

  test('the permalink is percent-encoded into the path', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'a/b?c' });
    assert.equal(calls[0].url, '/connectors/a%2Fb%3Fc/execute');
  });

  test('unknown options are ignored', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', cache: 'no', retries: 3, foo: { bar: 1 } });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, '/connectors/p/execute');
  });
});

describe('composite route', () => {
  test('always POST {base}/connectors/composite/{permalink}/execute with the JSON payload', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.composite.execute({ permalink: 'auth-and-fetch-user', payload: { user: 'u1' }, queryParams: { lang: 'fr' } });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].url, '/connectors/composite/auth-and-fetch-user/execute?lang=fr');
    assert.equal(calls[0].init.body, '{"user":"u1"}');
    assert.equal(header(calls[0], 'Content-Type'), 'application/json');
    assert.equal(header(calls[0], 'X-Path-Params'), undefined);
  });
  test('a method option is ignored (composites are always POST)', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c', method: 'GET', payload: [1] });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].init.body, '[1]');
  });
  test('without payload: POST with no body', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].init.body, undefined);
    assert.equal(calls[0].url, '/connectors/composite/c/execute');
  });
  test('custom headers are sent', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c', headers: { 'X-Tenant': 't1' } });
    assert.equal(header(calls[0], 'X-Tenant'), 't1');
  });
});

describe('base URL', () => {
  test("defaults to '' (same origin)", async () => {
    const { sdk, calls } = setup();
    assert.equal(sdk.getBaseUrl(), '');
    await sdk.connectors.execute({ permalink: 'p' });
    assert.equal(calls[0].url, '/connectors/p/execute');
  });
  test('set by the constructor, trailing slashes dropped', async () => {
    const { sdk, calls } = setup(null, { baseUrl: 'https://runtime.example/api/' });
    assert.equal(sdk.getBaseUrl(), 'https://runtime.example/api');
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(calls[0].url, 'https://runtime.example/api/connectors/composite/c/execute');
  });
  test('changed by configure', async () => {
    const { sdk, calls } = setup();
    sdk.configure({ baseUrl: 'http://localhost:8080' });
    await sdk.connectors.execute({ permalink: 'p', queryParams: { a: 1 } });
    assert.equal(calls[0].url, 'http://localhost:8080/connectors/p/execute?a=1');
  });
});

describe('headers', () => {
  test('the CSRF token goes in X-CSRF-Token on both routes', async () => {
    const { sdk, calls } = setup(null, { csrfToken: 'tok-123' });
    await sdk.connectors.execute({ permalink: 'p' });
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(header(calls[0], 'X-CSRF-Token'), 'tok-123');
    assert.equal(header(calls[1], 'X-CSRF-Token'), 'tok-123');
  });
  test('no CSRF token configured → no X-CSRF-Token', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p' });
    assert.equal(header(calls[0], 'X-CSRF-Token'), undefined);
  });
  test('configure({csrfToken: null}) clears it', async () => {
    const { sdk, calls } = setup(null, { csrfToken: 'tok' });
    sdk.configure({ csrfToken: null });
    await sdk.connectors.execute({ permalink: 'p' });
    assert.equal(header(calls[0], 'X-CSRF-Token'), undefined);
  });
  test('default headers, then the CSRF token, then call headers (case-insensitive, call wins)', async () => {
    const { sdk, calls } = setup(null, { headers: { 'X-Tenant': 'default', 'X-App': 'widget' }, csrfToken: 'tok' });
    await sdk.connectors.execute({ permalink: 'p', headers: { 'x-tenant': 'call', 'X-Extra': 1 } });
    const h = calls[0].init.headers;
    assert.deepEqual(h, { 'X-App': 'widget', 'X-CSRF-Token': 'tok', 'x-tenant': 'call', 'X-Extra': '1' });
  });
  test('a caller Content-Type is kept', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'POST', payload: { a: 1 }, headers: { 'content-type': 'application/vnd.api+json' } });
    assert.equal(header(calls[0], 'Content-Type'), 'application/vnd.api+json');
    assert.equal(Object.keys(calls[0].init.headers).filter((k) => k.toLowerCase() === 'content-type').length, 1);
  });
  test('per-call headers do not stick', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', headers: { 'X-Once': '1' } });
    await sdk.connectors.execute({ permalink: 'p' });
    assert.equal(header(calls[1], 'X-Once'), undefined);
  });
  test('the credentials mode is configurable', async () => {
    const { sdk, calls } = setup(null, { credentials: 'include' });
    await sdk.connectors.execute({ permalink: 'p' });
    assert.equal(calls[0].init.credentials, 'include');
  });
});

describe('fetch resolution', () => {
  test('globalThis.fetch is used when no fetch is injected (looked up at call time)', async (t) => {
    const fake = fakeFetch();
    t.mock.method(globalThis, 'fetch', fake);
    const sdk = new WidgetServiceSDK();
    await sdk.connectors.execute({ permalink: 'p' });
    assert.equal(fake.calls.length, 1);
  });
  test('execute, executeWithMeta and composite.* can be called detached from their objects', async () => {
    const { sdk, calls } = setup();
    const { execute, executeWithMeta, composite } = sdk.connectors;
    await execute({ permalink: 'a' });
    await executeWithMeta({ permalink: 'b' });
    const run = composite.execute;
    await run({ permalink: 'c' });
    assert.deepEqual(calls.map((c) => c.url), ['/connectors/a/execute', '/connectors/b/execute', '/connectors/composite/c/execute']);
  });
});
