// sessionToken: the signed-in member's JWT, sent as `Authorization: Bearer <token>` (docs/spec.md §9).
// Against the real runtime: without identity (sdk/testlib/echo.mjs passes Authorization on to a
// recording upstream, so the tests see the header as sent), and with identity on (the demo
// key), where the runtime verifies the token and tells the connector who the member is.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import * as mod from '../connectors-sdk.mjs';
import { WidgetServiceSDK, ConnectorBoundaryError, BOUNDARY_REASONS, MAX_SESSION_TOKEN_LENGTH } from '../connectors-sdk.mjs';
import { startEcho, makeSetup, seenHeader, syncThrow, recordingFetch } from '../testlib/echo.mjs';
import { startRuntime, startUpstream, demoToken, DEMO_IDENTITY_ARGS } from '../testlib/runtime.mjs';
import { UMD_PATH } from '../build.mjs';

let world;
let setup;
before(async () => {
  world = await startEcho();
  setup = makeSetup(world);
});
after(() => world && world.stop());

// Looks like a JWT; distinctive enough that finding it in a message means it leaked.
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZW1iZXItNDIifQ.c2lnbmF0dXJl';
const SECRET = 'tok3n-s3cr3t';

/** Every text an error shows a developer or a logger. */
function texts(err) {
  return [err.message, String(err), err.stack || ''];
}

function assertNoLeak(err, ...secrets) {
  for (const text of texts(err)) {
    for (const s of secrets) assert.ok(!text.includes(s), 'the error shows the token: ' + text);
  }
}

/** The call rejects with INVALID_SESSION_TOKEN, no request was sent, and the token does not show. */
async function expectTokenRejection(promise, calls, ...secrets) {
  let err;
  await assert.rejects(promise, (e) => {
    err = e;
    return true;
  });
  assert.ok(err instanceof ConnectorBoundaryError, 'expected ConnectorBoundaryError, got ' + err);
  assert.equal(err.reason, BOUNDARY_REASONS.INVALID_SESSION_TOKEN, err.message);
  assert.equal(err.field, 'sessionToken');
  assert.equal(calls.length, 0, 'no request may be sent');
  assertNoLeak(err, ...secrets);
  return err;
}

describe('sessionToken: a string', () => {
  test('is sent as Authorization: Bearer on simple and composite calls (execute and executeWithMeta)', async () => {
    const { sdk, calls, up } = setup();
    sdk.configure({ sessionToken: TOKEN });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    await sdk.connectors.executeWithMeta({ permalink: 'p-post', method: 'POST', payload: { a: 1 } });
    await sdk.connectors.composite.execute({ permalink: 'c', payload: { a: 1 } });
    await sdk.connectors.composite.executeWithMeta({ permalink: 'c' });
    assert.equal(calls.length, 4);
    for (const r of up.requests) assert.equal(seenHeader(r, 'Authorization'), 'Bearer ' + TOKEN);
  });
  test('is accepted by the constructor like the other options', async () => {
    const { sdk, calls, up } = setup({ sessionToken: TOKEN, csrfToken: 'csrf' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer ' + TOKEN);
    assert.equal(seenHeader(up.requests[0], 'X-CSRF-Token'), 'csrf');
  });
  test('no sessionToken → no Authorization header', async () => {
    const { sdk, calls, up } = setup();
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), undefined);
    assert.equal(seenHeader(up.requests[1], 'Authorization'), undefined);
  });
  test('stays across calls and across configure() calls that do not name it', async () => {
    const { sdk, calls, up } = setup({ sessionToken: TOKEN });
    sdk.configure({ timeout: 1000, headers: { 'X-A': '1' } });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.requests[1], 'Authorization'), 'Bearer ' + TOKEN);
  });
  test('configure({sessionToken: null}), undefined or "" removes it', async () => {
    for (const removal of [null, undefined, '']) {
      const { sdk, calls, up } = setup({ sessionToken: TOKEN });
      await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
      sdk.configure({ sessionToken: removal });
      await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
      await sdk.connectors.composite.execute({ permalink: 'c' });
      assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer ' + TOKEN);
      assert.equal(seenHeader(up.requests[1], 'Authorization'), undefined, 'removed by ' + JSON.stringify(removal));
      assert.equal(seenHeader(up.requests[2], 'Authorization'), undefined);
    }
  });
  test('replacing one token with another', async () => {
    const { sdk, calls, up } = setup({ sessionToken: 'a.b.c' });
    sdk.configure({ sessionToken: 'd.e.f' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer d.e.f');
  });
  test('a string with whitespace, a control or non-ASCII character, or over 8192 bytes fails configure() with INVALID_SESSION_TOKEN', () => {
    const { sdk } = setup({ sessionToken: 'good.token' });
    for (const bad of [SECRET + ' x', ' ' + SECRET, SECRET + '\n', SECRET + '\t', SECRET + '\r\nX-Injected: 1', SECRET + '\0', SECRET + '\x7f', SECRET + 'é', SECRET + '☃', 'a'.repeat(8193)]) {
      const err = syncThrow(() => sdk.configure({ sessionToken: bad }));
      assert.ok(err instanceof ConnectorBoundaryError);
      assert.equal(err.reason, 'INVALID_SESSION_TOKEN', JSON.stringify(bad));
      assert.equal(err.field, 'sessionToken');
      assertNoLeak(err, SECRET, 'a'.repeat(100));
    }
    const err = syncThrow(() => new WidgetServiceSDK({ sessionToken: 'two words' }));
    assert.equal(err.reason, 'INVALID_SESSION_TOKEN');
  });
  test('exactly 8192 bytes is sent', async () => {
    assert.equal(MAX_SESSION_TOKEN_LENGTH, 8192);
    const { sdk, calls, up } = setup({ sessionToken: 'a'.repeat(8192) });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer ' + 'a'.repeat(8192));
  });
  test("'Bearer <token>' is refused with a hint (the SDK adds the scheme), without the token", () => {
    const err = syncThrow(() => new WidgetServiceSDK({ sessionToken: 'Bearer ' + TOKEN }));
    assert.equal(err.reason, 'INVALID_SESSION_TOKEN');
    assert.match(err.message, /pass the token alone/);
    assertNoLeak(err, TOKEN);
  });
});

describe('sessionToken: option types', () => {
  for (const [label, bad] of [['a number', 42], ['an object', { token: TOKEN }], ['an array', [TOKEN]], ['a boolean', true], ['a bigint', 1n], ['a symbol', Symbol('s')]]) {
    test('configure({sessionToken: ' + label + '}) → INVALID_OPTIONS (configure and constructor)', () => {
      const { sdk } = setup();
      const err = syncThrow(() => sdk.configure({ sessionToken: bad }));
      assert.ok(err instanceof ConnectorBoundaryError);
      assert.equal(err.reason, BOUNDARY_REASONS.INVALID_OPTIONS);
      assert.equal(err.field, 'sessionToken');
      assertNoLeak(err, TOKEN);
      assert.equal(syncThrow(() => new WidgetServiceSDK({ sessionToken: bad })).reason, 'INVALID_OPTIONS');
    });
  }
  test('a rejected configure changes nothing, the token included', async () => {
    const { sdk, calls, up } = setup({ sessionToken: TOKEN, timeout: 100 });
    syncThrow(() => sdk.configure({ sessionToken: 'other.token', timeout: -1 }));
    syncThrow(() => sdk.configure({ sessionToken: 42, timeout: 200 }));
    assert.equal(sdk.getDefaultTimeout(), 100);
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer ' + TOKEN);
  });
});

describe('sessionToken: a function', () => {
  test('is called once per request, at call time, never at configure time; each call gets its own token', async () => {
    const { sdk, calls, up } = setup();
    const given = [];
    let n = 0;
    sdk.configure({
      sessionToken: () => {
        n++;
        given.push('tok.' + n);
        return 'tok.' + n;
      },
    });
    assert.equal(n, 0, 'not called by configure');
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(n, 2, 'two calls → two invocations');
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer tok.1');
    assert.equal(seenHeader(up.requests[1], 'Authorization'), 'Bearer tok.2');
    assert.equal(sdk.getHeaders().Authorization, undefined, 'never exposed nor cached in the default headers');
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(n, 3);
  });
  test('is called synchronously by execute(), before any await', () => {
    const { sdk } = setup();
    let called = 0;
    sdk.configure({ sessionToken: () => { called++; return TOKEN; } });
    const pending = sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(called, 1);
    return pending;
  });
  test('concurrent calls each call it', async () => {
    const { sdk, calls, up } = setup();
    let n = 0;
    sdk.configure({ sessionToken: async () => 'tok.' + ++n });
    await Promise.all([sdk.connectors.execute({ permalink: 'p', method: 'GET' }), sdk.connectors.execute({ permalink: 'p-delete', method: 'DELETE' })]);
    assert.equal(n, 2);
    assert.deepEqual(up.requests.map((r) => seenHeader(r, 'Authorization')).sort(), ['Bearer tok.1', 'Bearer tok.2']);
  });
  test('an async function / a promise of a string is awaited', async () => {
    const { sdk, calls, up } = setup({
      sessionToken: () => new Promise((resolve) => setTimeout(() => resolve(TOKEN), 5)),
    });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    sdk.configure({ sessionToken: async () => 'second.token' });
    await sdk.connectors.composite.execute({ permalink: 'c' });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer ' + TOKEN);
    assert.equal(seenHeader(up.requests[1], 'Authorization'), 'Bearer second.token');
  });
  for (const [label, value] of [['null', null], ['undefined', undefined], ['""', '']]) {
    test('returning ' + label + ' (or a promise of it) sends no Authorization header for that call', async () => {
      const { sdk, calls, up } = setup();
      sdk.configure({ sessionToken: () => value });
      await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
      sdk.configure({ sessionToken: async () => value });
      await sdk.connectors.composite.execute({ permalink: 'c' });
      assert.equal(calls.length, 2);
      assert.equal(seenHeader(up.requests[0], 'Authorization'), undefined);
      assert.equal(seenHeader(up.requests[1], 'Authorization'), undefined);
    });
  }
  test('a signed-out member in between: token, none, token again', async () => {
    const { sdk, calls, up } = setup();
    const answers = [TOKEN, null, 'again.token'];
    sdk.configure({ sessionToken: () => answers.shift() });
    for (let i = 0; i < 3; i++) await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.deepEqual(up.requests.map((r) => seenHeader(r, 'Authorization')), ['Bearer ' + TOKEN, undefined, 'Bearer again.token']);
  });
  test('removed by configure({sessionToken: null}): no longer called', async () => {
    const { sdk, calls, up } = setup();
    let n = 0;
    sdk.configure({ sessionToken: () => { n++; return TOKEN; } });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    sdk.configure({ sessionToken: null });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(n, 1);
    assert.equal(seenHeader(up.requests[1], 'Authorization'), undefined);
  });
  test('is not called when the call itself is refused (synchronous boundary errors come first)', () => {
    const { sdk, calls, up } = setup();
    let n = 0;
    sdk.configure({ sessionToken: () => { n++; return TOKEN; } });
    assert.equal(syncThrow(() => sdk.connectors.execute({ permalink: '' })).reason, 'MISSING_PERMALINK');
    assert.equal(syncThrow(() => sdk.connectors.composite.execute({ permalink: 'c', pathParams: {} })).reason, 'PATH_PARAMS_ON_COMPOSITE');
    assert.equal(n, 0);
    assert.equal(calls.length, 0);
  });
  test('a configure() while the function is pending does not change that call', async () => {
    const { sdk, calls, up } = setup();
    let release;
    sdk.configure({ sessionToken: () => new Promise((resolve) => { release = resolve; }) });
    const pending = sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    sdk.configure({ sessionToken: 'later.token' });
    release('first.token');
    await pending;
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.deepEqual(up.requests.map((r) => seenHeader(r, 'Authorization')), ['Bearer first.token', 'Bearer later.token']);
  });
});

describe('sessionToken: a function that fails → INVALID_SESSION_TOKEN, nothing sent, no token in the message', () => {
  test('a function that throws (cause: what it threw)', async () => {
    const { sdk, calls, up } = setup();
    const thrown = new Error('backend down');
    sdk.configure({ sessionToken: () => { throw thrown; } });
    const err = await expectTokenRejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }), calls);
    assert.equal(err.cause, thrown);
    assert.match(err.message, /threw/);
    await expectTokenRejection(sdk.connectors.composite.execute({ permalink: 'c' }), calls);
  });
  test('a throwing function rejects the promise: execute() itself does not throw', async () => {
    const { sdk, calls, up } = setup({ sessionToken: () => { throw new Error('x'); } });
    let promise;
    assert.doesNotThrow(() => { promise = sdk.connectors.execute({ permalink: 'p', method: 'GET' }); });
    await expectTokenRejection(promise, calls);
  });
  test('a promise that rejects (cause: the rejection)', async () => {
    const { sdk, calls, up } = setup();
    const reason = new TypeError('Failed to fetch');
    sdk.configure({ sessionToken: () => Promise.reject(reason) });
    const err = await expectTokenRejection(sdk.connectors.executeWithMeta({ permalink: 'p', method: 'GET' }), calls);
    assert.equal(err.cause, reason);
    assert.match(err.message, /rejected/);
    sdk.configure({ sessionToken: async () => { throw reason; } });
    await expectTokenRejection(sdk.connectors.composite.executeWithMeta({ permalink: 'c' }), calls);
  });
  for (const [label, value] of [['a number', 42], ['an object', { token: SECRET }], ['an array', [SECRET]], ['a boolean', true], ['a function', () => SECRET], ['a Response', new Response(SECRET)]]) {
    test('a result that is ' + label + ' (sync or async)', async () => {
      const { sdk, calls, up } = setup();
      sdk.configure({ sessionToken: () => value });
      const err = await expectTokenRejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }), calls, SECRET);
      assert.match(err.message, new RegExp('got ' + label));
      sdk.configure({ sessionToken: async () => value });
      await expectTokenRejection(sdk.connectors.composite.execute({ permalink: 'c' }), calls, SECRET);
    });
  }
  for (const [label, value] of [
    ['a space', SECRET + ' more'],
    ['a leading space', ' ' + SECRET],
    ['a trailing newline', SECRET + '\n'],
    ['a tab', SECRET + '\tx'],
    ['CR LF (header injection)', SECRET + '\r\nX-Injected: 1'],
    ['NUL', SECRET + '\0'],
    ['DEL', SECRET + '\x7f'],
    ['a non-ASCII character', SECRET + 'é'],
    ["a 'Bearer ' prefix", 'Bearer ' + SECRET],
  ]) {
    test('a token with ' + label, async () => {
      const { sdk, calls, up } = setup();
      sdk.configure({ sessionToken: () => value });
      await expectTokenRejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }), calls, SECRET);
      sdk.configure({ sessionToken: async () => value });
      await expectTokenRejection(sdk.connectors.composite.execute({ permalink: 'c' }), calls, SECRET);
    });
  }
  test('a token over 8192 bytes (8192 is fine)', async () => {
    const { sdk, calls, up } = setup();
    sdk.configure({ sessionToken: () => 'x'.repeat(8193) });
    const err = await expectTokenRejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }), calls, 'x'.repeat(50));
    assert.match(err.message, /8193 bytes long \(max 8192\)/);
    sdk.configure({ sessionToken: async () => 'x'.repeat(8192) });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(calls.length, 1);
  });
  test('after a failure the next call asks again', async () => {
    const { sdk, calls, up } = setup();
    let n = 0;
    sdk.configure({ sessionToken: () => (++n === 1 ? Promise.reject(new Error('not yet')) : TOKEN) });
    await expectTokenRejection(sdk.connectors.execute({ permalink: 'p', method: 'GET' }), calls);
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer ' + TOKEN);
  });
});

describe('sessionToken and headers, credentials, timeouts', () => {
  test('it wins over an Authorization in per-call headers and in the default headers (one header, any case)', async () => {
    const { sdk, calls, up } = setup({ sessionToken: TOKEN, headers: { authorization: 'Basic ZGVmYXVsdA==' } });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { AUTHORIZATION: 'Bearer caller', 'X-Other': '1' } });
    await sdk.connectors.composite.execute({ permalink: 'c', headers: { Authorization: 'Bearer caller' } });
    for (const call of calls) {
      const names = Object.keys(call.init.headers).filter((k) => k.toLowerCase() === 'authorization');
      assert.deepEqual(names, ['Authorization']);
    }
    // One value arrives (two would be joined with a comma).
    assert.deepEqual(up.requests.map((r) => seenHeader(r, 'Authorization')), ['Bearer ' + TOKEN, 'Bearer ' + TOKEN]);
    assert.equal(seenHeader(up.requests[0], 'X-Other'), '1');
  });
  test('when the function gives no token, an Authorization the caller set is sent as before', async () => {
    const { sdk, calls, up } = setup({ sessionToken: () => null });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { Authorization: 'Bearer caller' } });
    assert.equal(seenHeader(up.requests[0], 'Authorization'), 'Bearer caller');
  });
  test('the other headers are unchanged (CSRF, X-Path-Params, Content-Type)', async () => {
    const { sdk, calls, up } = setup({ sessionToken: TOKEN, csrfToken: 'csrf', headers: { 'X-App': 'w' } });
    await sdk.connectors.execute({ permalink: 'p-post', method: 'POST', payload: { a: 1 }, pathParams: { item_id: 7 } });
    assert.deepEqual(calls[0].init.headers, {
      'X-App': 'w', 'X-CSRF-Token': 'csrf', 'X-Path-Params': 'item_id=7', 'Content-Type': 'application/json', Authorization: 'Bearer ' + TOKEN,
    });
    const got = up.last();
    assert.deepEqual(
      Object.fromEntries(['X-App', 'X-CSRF-Token', 'X-Path-Params', 'Content-Type', 'Authorization'].map((h) => [h, seenHeader(got, h)])),
      { 'X-App': 'w', 'X-CSRF-Token': 'csrf', 'X-Path-Params': 'item_id=7', 'Content-Type': 'application/json', Authorization: 'Bearer ' + TOKEN }
    );
    assert.equal(got.path, '/echo/7');
    assert.equal(got.body, '{"a":1}');
  });
  test('getHeaders() never shows the token', () => {
    const sdk = new WidgetServiceSDK({ sessionToken: TOKEN, headers: { 'X-A': '1' } });
    assert.deepEqual(sdk.getHeaders(), { 'X-A': '1' });
  });
  test('the credentials mode is what it was (same-origin by default, include when set)', async () => {
    const { sdk, calls, up } = setup({ sessionToken: TOKEN });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    sdk.configure({ credentials: 'include' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.deepEqual(calls.map((c) => c.init.credentials), ['same-origin', 'include']);
  });
  test('the call timeout covers a token function that never answers; fetch is not called', async () => {
    const { sdk, calls, up } = setup({ sessionToken: () => new Promise(() => {}) });
    await assert.rejects(sdk.connectors.execute({ permalink: 'p', method: 'GET', timeout: 20 }), (e) => e.timedOut === true && /timed out after 20 ms/.test(e.message));
    assert.equal(calls.length, 0);
  });
  test("the caller's signal aborts a pending token function; fetch is not called", async () => {
    const { sdk, calls, up } = setup({ sessionToken: () => new Promise(() => {}) });
    const controller = new AbortController();
    const pending = sdk.connectors.composite.execute({ permalink: 'c', signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, (e) => e.aborted === true);
    assert.equal(calls.length, 0);
  });
});

describe('sessionToken on the default instance and in the classic build', () => {
  test('module-level configure / WidgetServiceSDK.configure set it on the default instance', async () => {
    const up = world.upstream;
    up.reset();
    try {
      mod.configure({ baseUrl: world.runtime.url, sessionToken: TOKEN });
      await mod.connectors.execute({ permalink: 'p', method: 'GET' });
      WidgetServiceSDK.configure({ sessionToken: async () => 'static.token' });
      await WidgetServiceSDK.connectors.composite.execute({ permalink: 'c' });
      assert.deepEqual(up.requests.map((r) => seenHeader(r, 'Authorization')), ['Bearer ' + TOKEN, 'Bearer static.token']);
      assert.deepEqual(mod.getHeaders(), {});
    } finally {
      mod.configure({ baseUrl: '', sessionToken: null });
    }
  });
  test('the UMD build as a classic script (connectors-sdk.js) behaves the same', async () => {
    const classic = readFileSync(UMD_PATH, 'utf8');
    const fetch = recordingFetch();
    const calls = fetch.calls;
    const up = world.upstream;
    up.reset();
    const window = {};
    vm.runInNewContext(classic, { window, URLSearchParams, AbortController, setTimeout, clearTimeout, fetch });
    const sdk = new window.WidgetServiceSDK({ baseUrl: world.runtime.url, sessionToken: TOKEN });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    let n = 0;
    sdk.configure({ sessionToken: async () => 'fn.' + ++n });
    await sdk.connectors.composite.execute({ permalink: 'c' });
    await sdk.connectors.composite.execute({ permalink: 'c' });
    sdk.configure({ sessionToken: null });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.deepEqual(up.requests.map((r) => seenHeader(r, 'Authorization')), ['Bearer ' + TOKEN, 'Bearer fn.1', 'Bearer fn.2', undefined]);
    assert.deepEqual(calls.map((c) => c.init.credentials), ['same-origin', 'same-origin', 'same-origin', 'same-origin']);

    sdk.configure({ sessionToken: () => SECRET + ' x' });
    await assert.rejects(sdk.connectors.execute({ permalink: 'p', method: 'GET' }), (e) =>
      e instanceof window.ConnectorBoundaryError && e.reason === 'INVALID_SESSION_TOKEN' && !e.message.includes(SECRET));
    sdk.configure({ sessionToken: () => Promise.reject(new Error('down')) });
    await assert.rejects(sdk.connectors.composite.execute({ permalink: 'c' }), (e) => e.reason === 'INVALID_SESSION_TOKEN');
    assert.throws(() => sdk.configure({ sessionToken: 42 }), (e) => e instanceof window.ConnectorBoundaryError && e.reason === 'INVALID_OPTIONS');
    assert.equal(window.WidgetServiceSDK.BOUNDARY_REASONS.INVALID_SESSION_TOKEN, 'INVALID_SESSION_TOKEN');
    assert.equal(calls.length, 4, 'nothing sent for the refused tokens');
  });
});

describe('a real member token on a runtime with identity (the demo key)', () => {
  let rt;
  let up;
  let member;
  before(async () => {
    up = await startUpstream();
    const registry = {
      connectors: [{
        name: 'my profile',
        permalink: 'my-profile',
        url: "{{ get_variable('upstream') }}/profile",
        headers: [{ key: 'X-Member', value: '{{ user.id }}' }],
      }],
    };
    rt = await startRuntime({ registry, variables: { upstream: up.url }, args: DEMO_IDENTITY_ARGS });
    member = await demoToken('member-sdk-42');
  });
  after(async () => {
    if (rt) await rt.stop();
    if (up) await up.stop();
  });

  test('a token function: the runtime verifies it and the connector reads user.id; the token never reaches the upstream', async () => {
    let n = 0;
    const sdk = new WidgetServiceSDK({ baseUrl: rt.url, sessionToken: async () => { n++; return member; } });
    const seen = await sdk.connectors.execute({ permalink: 'my-profile', method: 'GET' });
    assert.equal(n, 1);
    assert.equal(seen.headers['x-member'], 'member-sdk-42');
    assert.equal(seen.headers.authorization, undefined, 'the runtime consumes Authorization');
  });
  test('signed out (the function gives null): the runtime refuses a connector that reads user (401 IDENTITY_REQUIRED)', async () => {
    const sdk = new WidgetServiceSDK({ baseUrl: rt.url, sessionToken: () => null });
    await assert.rejects(sdk.connectors.execute({ permalink: 'my-profile', method: 'GET' }),
      (e) => e instanceof mod.ConnectorExecuteError && e.status === 401 && e.code === 'IDENTITY_REQUIRED');
  });
  test('a 401 from the runtime is a ConnectorExecuteError as usual (a token it cannot verify)', async () => {
    const fetch = recordingFetch();
    const sdk = new WidgetServiceSDK({ baseUrl: rt.url, sessionToken: TOKEN, fetch });
    up.reset();
    await assert.rejects(sdk.connectors.execute({ permalink: 'my-profile', method: 'GET' }),
      (e) => e instanceof mod.ConnectorExecuteError && e.code === 'IDENTITY_INVALID' && e.status === 401 && /^[0-9a-f]{32}$/.test(e.requestId));
    assert.equal(fetch.calls.length, 1);
    assert.equal(up.requests.length, 0, 'the upstream is not called');
  });
});
