// Every ConnectorBoundaryError rule: thrown synchronously, with a stable reason, before any
// request. The calls that are allowed go to the real runtime (sdk/testlib/echo.mjs), so a rule
// that refused too much would fail them; `calls` records what the SDK handed fetch.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectorBoundaryError, BOUNDARY_REASONS, WidgetServiceSDK } from '../connectors-sdk.mjs';
import { startEcho, makeSetup, syncThrow, seenHeader } from '../testlib/echo.mjs';

let world;
let setup;
before(async () => {
  world = await startEcho();
  setup = makeSetup(world);
});
after(() => world && world.stop());

function expectBoundary(fn, reason, calls, extra = {}) {
  const err = syncThrow(fn);
  assert.ok(err instanceof ConnectorBoundaryError, 'expected ConnectorBoundaryError, got ' + err);
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'ConnectorBoundaryError');
  assert.equal(err.reason, reason, err.message);
  for (const [k, v] of Object.entries(extra)) assert.equal(err[k], v, k);
  if (calls) assert.equal(calls.length, 0, 'no request may be sent');
  return err;
}

describe('reason codes', () => {
  test('are stable and equal to their names', () => {
    assert.deepEqual(Object.keys(BOUNDARY_REASONS).sort(), [
      'EMPTY_KEY', 'HEADER_TOO_LONG', 'INVALID_BASE_URL', 'INVALID_CSRF_TOKEN', 'INVALID_HEADER_NAME',
      'INVALID_METHOD', 'INVALID_OPTIONS', 'INVALID_PAYLOAD', 'INVALID_SESSION_TOKEN', 'INVALID_TIMEOUT',
      'INVALID_VALUE', 'MISSING_METHOD', 'MISSING_PERMALINK', 'PATH_PARAMS_ON_COMPOSITE', 'RESERVED_HEADER',
    ]);
    for (const [k, v] of Object.entries(BOUNDARY_REASONS)) assert.equal(k, v);
    assert.ok(Object.isFrozen(BOUNDARY_REASONS));
  });
});

describe('composite: pathParams', () => {
  for (const value of [{ id: '1' }, {}, null, 'a=b']) {
    test('pathParams ' + JSON.stringify(value) + ' throws PATH_PARAMS_ON_COMPOSITE', () => {
      const { sdk, calls } = setup();
      expectBoundary(
        () => sdk.connectors.composite.execute({ permalink: 'c', pathParams: value }),
        'PATH_PARAMS_ON_COMPOSITE', calls, { field: 'pathParams' });
      expectBoundary(
        () => sdk.connectors.composite.executeWithMeta({ permalink: 'c', pathParams: value }),
        'PATH_PARAMS_ON_COMPOSITE', calls);
    });
  }
  test('pathParams: undefined is the same as absent', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c', pathParams: undefined });
    assert.equal(calls.length, 1);
  });
});

describe('permalink', () => {
  for (const [label, opts] of [
    ['missing', {}],
    ['empty', { permalink: '' }],
    ['blank', { permalink: '   ' }],
    ['a number', { permalink: 42 }],
    ['null', { permalink: null }],
  ]) {
    test(label + ' → MISSING_PERMALINK (simple and composite)', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.execute(opts), 'MISSING_PERMALINK', calls, { field: 'permalink' });
      expectBoundary(() => sdk.connectors.composite.execute(opts), 'MISSING_PERMALINK', calls);
    });
  }
});

describe('options shape', () => {
  for (const opts of [undefined, null, 'get-item', ['get-item'], 3]) {
    test('execute(' + JSON.stringify(opts) + ') → INVALID_OPTIONS', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.execute(opts), 'INVALID_OPTIONS', calls);
      expectBoundary(() => sdk.connectors.composite.execute(opts), 'INVALID_OPTIONS', calls);
    });
  }
  for (const field of ['queryParams', 'pathParams', 'headers']) {
    for (const bad of [['a'], 'a=b', 7, true]) {
      test(field + ' = ' + JSON.stringify(bad) + ' → INVALID_OPTIONS', () => {
        const { sdk, calls } = setup();
        expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', [field]: bad }), 'INVALID_OPTIONS', calls, { field });
      });
    }
  }
  test('signal that is not an AbortSignal → INVALID_OPTIONS', () => {
    const { sdk, calls } = setup();
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', signal: {} }), 'INVALID_OPTIONS', calls, { field: 'signal' });
  });
});

describe('empty keys', () => {
  for (const field of ['queryParams', 'pathParams', 'headers']) {
    test('simple ' + field + " with key '' → EMPTY_KEY", () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', [field]: { '': 'x' } }), 'EMPTY_KEY', calls, { field, key: '' });
    });
  }
  for (const field of ['queryParams', 'headers']) {
    test('composite ' + field + " with key '' → EMPTY_KEY", () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.composite.execute({ permalink: 'p', [field]: { '': 'x' } }), 'EMPTY_KEY', calls, { field });
    });
  }
  test('a Map with a non-string key → EMPTY_KEY', () => {
    const { sdk, calls } = setup();
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', queryParams: new Map([[1, 'x']]) }), 'EMPTY_KEY', calls);
  });
});

describe('values', () => {
  const bad = [
    ['null', null], ['undefined', undefined], ['true', true], ['an object', { a: 1 }], ['an array', ['a']],
    ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity], ['a bigint', 10n], ['a function', () => 1],
    ['a symbol', Symbol('s')],
  ];
  for (const field of ['queryParams', 'pathParams', 'headers']) {
    for (const [label, value] of bad) {
      test(field + ' value ' + label + ' → INVALID_VALUE', () => {
        const { sdk, calls } = setup();
        expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', [field]: { k: value } }), 'INVALID_VALUE', calls, { field, key: 'k' });
      });
    }
  }
  for (const [label, value] of bad.slice(0, 4)) {
    test('composite queryParams value ' + label + ' → INVALID_VALUE', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.composite.execute({ permalink: 'p', queryParams: { k: value } }), 'INVALID_VALUE', calls);
    });
  }
  test('strings, integers, floats, negative numbers and 0 are accepted', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', queryParams: { a: 'x', b: 1, c: 1.5, d: -2, e: 0, f: '' }, pathParams: { item_id: 7 }, headers: { 'X-N': 3 } });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url.split('?')[1], 'a=x&b=1&c=1.5&d=-2&e=0&f=');
    assert.equal(seenHeader(up.last(), 'X-N'), '3');
    assert.equal(up.last().path, '/echo/7');
  });
  for (const [label, value] of [['CR LF', 'a\r\nInjected: 1'], ['LF', 'a\nb'], ['NUL', 'a\0b'], ['non-Latin-1', 'snow ☃']]) {
    test('header value with ' + label + ' → INVALID_VALUE', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'X-A': value } }), 'INVALID_VALUE', calls, { field: 'headers' });
    });
  }
  test('non-ASCII path params are fine (they are URL-encoded)', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', pathParams: { name: 'snow ☃' } });
    assert.equal(calls.length, 1);
    assert.equal(seenHeader(up.last(), 'X-Path-Params'), 'name=snow+%E2%98%83');
  });
});

describe('header names', () => {
  for (const name of ['Bad Header', 'X:Y', 'X-Ä', 'a\nb', '(x)']) {
    test(JSON.stringify(name) + ' → INVALID_HEADER_NAME', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { [name]: 'v' } }), 'INVALID_HEADER_NAME', calls, { key: name });
    });
  }
  for (const name of ['X-Path-Params', 'x-path-params']) {
    test(name + ' as a custom header → RESERVED_HEADER (simple, composite, configure, updateHeaders)', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { [name]: 'a=b' } }), 'RESERVED_HEADER', calls);
      expectBoundary(() => sdk.connectors.composite.execute({ permalink: 'p', headers: { [name]: 'a=b' } }), 'RESERVED_HEADER', calls);
      expectBoundary(() => sdk.configure({ headers: { [name]: 'a=b' } }), 'RESERVED_HEADER');
      expectBoundary(() => sdk.updateHeaders({ [name]: 'a=b' }), 'RESERVED_HEADER');
    });
  }
});

describe('header length (4096)', () => {
  test('a custom header of exactly 4096 chars is sent; 4097 → HEADER_TOO_LONG', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'X-Big': 'a'.repeat(4096) } });
    assert.equal(calls.length, 1);
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'X-Big': 'a'.repeat(4097) } }), 'HEADER_TOO_LONG', null, { key: 'X-Big' });
    expectBoundary(() => sdk.connectors.composite.execute({ permalink: 'p', headers: { 'X-Big': 'a'.repeat(4097) } }), 'HEADER_TOO_LONG');
    assert.equal(calls.length, 1);
  });
  test('a long number value counts by its serialized length', () => {
    const { sdk, calls } = setup();
    // 1e21 serializes as "1e+21": short. A 4097-digit string of digits is too long.
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'X-N': '9'.repeat(4097) } }), 'HEADER_TOO_LONG', calls);
  });
  test('X-Path-Params is measured after URL-encoding', async () => {
    const { sdk, calls } = setup();
    // "id=" + 4093 chars = 4096: allowed.
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', pathParams: { id: 'a'.repeat(4093) } });
    assert.equal(calls.length, 1);
    // 4094 chars → 4097: too long.
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', pathParams: { id: 'a'.repeat(4094) } }), 'HEADER_TOO_LONG', null, { field: 'pathParams', key: 'X-Path-Params' });
    // "/" encodes to "%2F": 1400 of them are 4200 chars once encoded although the raw value is short.
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', pathParams: { id: '/'.repeat(1400) } }), 'HEADER_TOO_LONG');
    // Many small keys add up.
    const many = {};
    for (let i = 0; i < 700; i++) many['k' + i] = 'v';
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', pathParams: many }), 'HEADER_TOO_LONG');
    assert.equal(calls.length, 1);
  });
  test('configured headers and the CSRF token obey the same limit', () => {
    const { sdk } = setup();
    expectBoundary(() => sdk.configure({ headers: { 'X-Big': 'a'.repeat(4097) } }), 'HEADER_TOO_LONG');
    expectBoundary(() => sdk.updateHeaders({ 'X-Big': 'a'.repeat(4097) }), 'HEADER_TOO_LONG');
    expectBoundary(() => sdk.configure({ csrfToken: 'a'.repeat(4097) }), 'HEADER_TOO_LONG');
  });
  test('query strings have no such limit', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', queryParams: { q: 'a'.repeat(5000) } });
    assert.equal(calls.length, 1);
    assert.equal(up.last().query.find(([k]) => k === 'q')[1], 'a'.repeat(5000));
  });
});

describe('method (required in connectors.execute)', () => {
  for (const [label, opts] of [
    ['missing', { permalink: 'p' }],
    ['undefined', { permalink: 'p', method: undefined }],
    ['null', { permalink: 'p', method: null }],
    ['empty', { permalink: 'p', method: '' }],
    ['blank', { permalink: 'p', method: '  ' }],
    ['a number', { permalink: 'p', method: 5 }],
    ['an object', { permalink: 'p', method: {} }],
  ]) {
    test(label + ' → MISSING_METHOD, synchronously, nothing sent (execute and executeWithMeta)', () => {
      const { sdk, calls } = setup();
      const err = expectBoundary(() => sdk.connectors.execute(opts), 'MISSING_METHOD', calls, { field: 'method' });
      assert.match(err.message, /method is required/);
      expectBoundary(() => sdk.connectors.executeWithMeta(opts), 'MISSING_METHOD', calls, { field: 'method' });
    });
  }
  for (const method of ['FETCH', 'CONNECT', 'GETS']) {
    test(JSON.stringify(method) + ' → INVALID_METHOD', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method }), 'INVALID_METHOD', calls, { field: 'method' });
    });
  }
  test('a missing method is refused on the default instance and the static API too', async () => {
    const mod = await import('../connectors-sdk.mjs');
    expectBoundary(() => mod.connectors.execute({ permalink: 'p' }), 'MISSING_METHOD');
    expectBoundary(() => WidgetServiceSDK.connectors.executeWithMeta({ permalink: 'p' }), 'MISSING_METHOD');
  });
  test('composites need none: composite.execute without a method is sent', async () => {
    const { sdk, calls } = setup();
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(calls.length, 1);
  });
});

describe('payload', () => {
  test('a circular payload on POST → INVALID_PAYLOAD', () => {
    const { sdk, calls } = setup();
    const a = {};
    a.self = a;
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'POST', payload: a }), 'INVALID_PAYLOAD', calls);
    expectBoundary(() => sdk.connectors.composite.execute({ permalink: 'p', payload: a }), 'INVALID_PAYLOAD', calls);
  });
  test('a BigInt or a function payload → INVALID_PAYLOAD', () => {
    const { sdk, calls } = setup();
    expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'PUT', payload: { n: 1n } }), 'INVALID_PAYLOAD', calls);
    expectBoundary(() => sdk.connectors.composite.execute({ permalink: 'p', payload: () => 1 }), 'INVALID_PAYLOAD', calls);
  });
  test('a payload on GET is ignored, so it is never serialized', async () => {
    const { sdk, calls, up } = setup();
    const a = {};
    a.self = a;
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', payload: a });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].init.body, undefined);
    assert.equal(up.last().body, '');
  });
});

describe('timeouts and settings', () => {
  for (const bad of [0, -1, NaN, Infinity, '100', null]) {
    test('timeout ' + String(bad) + ' → INVALID_TIMEOUT', () => {
      const { sdk, calls } = setup();
      expectBoundary(() => sdk.setDefaultTimeout(bad), 'INVALID_TIMEOUT');
      expectBoundary(() => sdk.configure({ timeout: bad }), 'INVALID_TIMEOUT');
      expectBoundary(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', timeout: bad }), 'INVALID_TIMEOUT', calls);
      assert.equal(sdk.getDefaultTimeout(), 30000);
    });
  }
  test('baseUrl that is not a string → INVALID_BASE_URL', () => {
    expectBoundary(() => new WidgetServiceSDK({ baseUrl: 5 }), 'INVALID_BASE_URL');
    const { sdk } = setup();
    expectBoundary(() => sdk.configure({ baseUrl: null }), 'INVALID_BASE_URL');
  });
  test('csrfToken that is not a string → INVALID_CSRF_TOKEN', () => {
    const { sdk } = setup();
    expectBoundary(() => sdk.configure({ csrfToken: 12 }), 'INVALID_CSRF_TOKEN');
    expectBoundary(() => sdk.configure({ csrfToken: 'a\nb' }), 'INVALID_CSRF_TOKEN');
  });
  test('configure with a non-object → INVALID_OPTIONS; a rejected configure changes nothing', () => {
    const { sdk } = setup();
    expectBoundary(() => sdk.configure('x'), 'INVALID_OPTIONS');
    sdk.configure({ headers: { 'X-A': '1' }, timeout: 100 });
    expectBoundary(() => sdk.configure({ headers: { 'X-B': '2' }, timeout: -5 }), 'INVALID_TIMEOUT');
    assert.deepEqual(sdk.getHeaders(), { 'X-A': '1' });
    assert.equal(sdk.getDefaultTimeout(), 100);
  });
  test('bad credentials or fetch → INVALID_OPTIONS', () => {
    expectBoundary(() => new WidgetServiceSDK({ credentials: 'always' }), 'INVALID_OPTIONS');
    expectBoundary(() => new WidgetServiceSDK({ fetch: 'no' }), 'INVALID_OPTIONS');
    expectBoundary(() => new WidgetServiceSDK('x'), 'INVALID_OPTIONS');
  });
  test('a rejected updateHeaders changes nothing', () => {
    const { sdk } = setup();
    sdk.configure({ headers: { 'X-A': '1' } });
    expectBoundary(() => sdk.updateHeaders({ 'X-B': '2', '': 'x' }), 'EMPTY_KEY');
    assert.deepEqual(sdk.getHeaders(), { 'X-A': '1' });
  });
});

test('boundary errors carry a readable message', () => {
  const { sdk } = setup();
  const err = syncThrow(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', queryParams: { page: true } }));
  assert.match(err.message, /queryParams\['page'\]/);
  assert.match(err.message, /string or a finite number/);
});
