// configure / updateHeaders / setDefaultTimeout and the getters; the module-level default
// instance. Calls go to the real runtime (sdk/testlib/echo.mjs).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as mod from '../connectors-sdk.mjs';
import { WidgetServiceSDK } from '../connectors-sdk.mjs';
import { startEcho, makeSetup, recordingFetch, seenHeader } from '../testlib/echo.mjs';

let world;
let setup;
before(async () => {
  world = await startEcho();
  setup = makeSetup(world);
});
after(() => world && world.stop());

describe('getters and setters', () => {
  test('defaults', () => {
    const sdk = new WidgetServiceSDK();
    assert.equal(sdk.getBaseUrl(), '');
    assert.equal(sdk.getDefaultTimeout(), 30000);
    assert.deepEqual(sdk.getHeaders(), {});
    assert.equal(sdk.lastTiming, null);
    assert.equal(sdk.lastRequestId, null);
  });
  test('constructor options', () => {
    const sdk = new WidgetServiceSDK({ baseUrl: 'https://x.example', csrfToken: 't', headers: { 'X-A': 1 }, timeout: 500 });
    assert.equal(sdk.getBaseUrl(), 'https://x.example');
    assert.equal(sdk.getDefaultTimeout(), 500);
    assert.deepEqual(sdk.getHeaders(), { 'X-A': '1', 'X-CSRF-Token': 't' });
  });
  test('configure changes only the keys given, ignores unknown keys, and chains', () => {
    const sdk = new WidgetServiceSDK({ baseUrl: '/rt', timeout: 100, headers: { 'X-A': '1' } });
    assert.equal(sdk.configure({ timeout: 200, whatever: true }), sdk);
    assert.equal(sdk.getBaseUrl(), '/rt');
    assert.equal(sdk.getDefaultTimeout(), 200);
    assert.deepEqual(sdk.getHeaders(), { 'X-A': '1' });
    sdk.configure();
    sdk.configure(null);
    assert.equal(sdk.getDefaultTimeout(), 200);
  });
  test('configure({headers}) replaces the default headers', () => {
    const sdk = new WidgetServiceSDK({ headers: { 'X-A': '1', 'X-B': '2' } });
    sdk.configure({ headers: { 'X-C': '3' } });
    assert.deepEqual(sdk.getHeaders(), { 'X-C': '3' });
  });
  test('updateHeaders merges case-insensitively, null/undefined removes, and chains', () => {
    const sdk = new WidgetServiceSDK({ headers: { 'X-A': '1', 'X-B': '2' } });
    assert.equal(sdk.updateHeaders({ 'x-a': 'one', 'X-C': 3, 'X-B': null }), sdk);
    assert.deepEqual(sdk.getHeaders(), { 'x-a': 'one', 'X-C': '3' });
    sdk.updateHeaders({ 'X-C': undefined });
    assert.deepEqual(sdk.getHeaders(), { 'x-a': 'one' });
    sdk.updateHeaders();
    assert.deepEqual(sdk.getHeaders(), { 'x-a': 'one' });
  });
  test('getHeaders returns a copy', () => {
    const sdk = new WidgetServiceSDK({ headers: { 'X-A': '1' } });
    sdk.getHeaders()['X-A'] = 'changed';
    assert.deepEqual(sdk.getHeaders(), { 'X-A': '1' });
  });
  test('getHeaders: an explicit X-CSRF-Token header wins over csrfToken', () => {
    const sdk = new WidgetServiceSDK({ csrfToken: 'cfg', headers: { 'x-csrf-token': 'hdr' } });
    assert.deepEqual(sdk.getHeaders(), { 'x-csrf-token': 'hdr' });
  });
  test('setDefaultTimeout changes the timeout and chains', () => {
    const sdk = new WidgetServiceSDK();
    assert.equal(sdk.setDefaultTimeout(1234), sdk);
    assert.equal(sdk.getDefaultTimeout(), 1234);
  });
  test('updated headers are sent on later calls', async () => {
    const { sdk, up } = setup();
    sdk.updateHeaders({ Authorization: 'Bearer abc' });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.last(), 'Authorization'), 'Bearer abc');
    sdk.updateHeaders({ Authorization: null });
    await sdk.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seenHeader(up.last(), 'Authorization'), undefined);
  });
  test('instances are independent', () => {
    const a = new WidgetServiceSDK({ timeout: 10 });
    const b = new WidgetServiceSDK();
    a.updateHeaders({ 'X-A': '1' });
    assert.equal(b.getDefaultTimeout(), 30000);
    assert.deepEqual(b.getHeaders(), {});
  });
});

describe('module exports and the default instance', () => {
  test('named exports exist', () => {
    for (const name of ['WidgetServiceSDK', 'ConnectorBoundaryError', 'ConnectorExecuteError', 'BOUNDARY_REASONS',
      'DEFAULT_TIMEOUT_MS', 'MAX_HEADER_LENGTH', 'MAX_SESSION_TOKEN_LENGTH', 'CSRF_ELEMENT_ID', 'SDK_VERSION', 'parseServerTiming', 'parseConnectorTiming', 'sdk',
      'connectors', 'configure', 'updateHeaders', 'setDefaultTimeout', 'getHeaders', 'getDefaultTimeout', 'getBaseUrl']) {
      assert.ok(name in mod, name);
    }
    assert.equal(mod.default, mod.sdk);
    assert.equal(mod.DEFAULT_TIMEOUT_MS, 30000);
    assert.equal(mod.MAX_HEADER_LENGTH, 4096);
    assert.equal(mod.CSRF_ELEMENT_ID, 'csrftoken');
    assert.equal(WidgetServiceSDK.defaultInstance, mod.sdk);
    assert.equal(WidgetServiceSDK.connectors, mod.connectors);
    assert.equal(WidgetServiceSDK.ConnectorBoundaryError, mod.ConnectorBoundaryError);
  });
  test('module-level functions and static methods drive the same default instance', async (t) => {
    const rt = world.runtime.url;
    const spy = recordingFetch();
    const original = globalThis.fetch;
    t.mock.method(globalThis, 'fetch', (url, init) => {
      spy.calls.push({ url, init });
      return original(url, init);
    });
    try {
      mod.configure({ baseUrl: rt, csrfToken: 'c1', timeout: 999 });
      assert.equal(mod.getBaseUrl(), rt);
      assert.equal(WidgetServiceSDK.getBaseUrl(), rt);
      assert.equal(WidgetServiceSDK.getDefaultTimeout(), 999);
      mod.setDefaultTimeout(1000);
      assert.equal(mod.getDefaultTimeout(), 1000);
      WidgetServiceSDK.setDefaultTimeout(1001);
      assert.equal(mod.getDefaultTimeout(), 1001);
      mod.updateHeaders({ 'X-A': '1' });
      WidgetServiceSDK.updateHeaders({ 'X-B': '2' });
      assert.deepEqual(mod.getHeaders(), { 'X-A': '1', 'X-B': '2', 'X-CSRF-Token': 'c1' });
      assert.deepEqual(WidgetServiceSDK.getHeaders(), mod.getHeaders());
      const seen = await mod.connectors.execute({ permalink: 'p', method: 'GET' });
      assert.equal(seenHeader(seen, 'X-A'), '1');
      assert.equal(seenHeader(seen, 'X-B'), '2');
      await WidgetServiceSDK.connectors.composite.execute({ permalink: 'c' });
      assert.equal(spy.calls[0].url, rt + '/connectors/p/execute');
      assert.equal(spy.calls[1].url, rt + '/connectors/composite/c/execute');
      assert.equal(seenHeader(world.upstream.last(), 'X-CSRF-Token'), 'c1');
      WidgetServiceSDK.configure({ baseUrl: '' });
      assert.equal(mod.getBaseUrl(), '');
    } finally {
      mod.configure({ baseUrl: '', csrfToken: null, headers: {}, timeout: 30000 });
    }
  });
  test('the older entry point `new WidgetServiceSDK()` keeps working alongside the default instance', async () => {
    const older = new WidgetServiceSDK({ baseUrl: world.runtime.url });
    assert.notEqual(older, mod.sdk);
    const seen = await older.connectors.execute({ permalink: 'p', method: 'GET' });
    assert.equal(seen.path, '/echo/none');
  });
});
