// The classic-script build: up to date with the module, and working as a plain <script>.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { buildClassic, buildFromDisk, CLASSIC_PATH, MODULE_PATH } from '../build.mjs';
import * as mod from '../connectors-sdk.mjs';

const classic = readFileSync(CLASSIC_PATH, 'utf8');

test('sdk/connectors-sdk.js is up to date with sdk/connectors-sdk.mjs (run `node sdk/build.mjs`)', () => {
  assert.equal(classic, buildFromDisk());
});

test('the module is dependency-free: no import statement', () => {
  const source = readFileSync(MODULE_PATH, 'utf8');
  assert.doesNotMatch(source, /^\s*import\b/m);
  assert.doesNotMatch(source, /\brequire\(/);
});

test('the build refuses a module with exports outside the block, or without the block', () => {
  assert.throws(() => buildClassic('export const a = 1;\n// @@EXPORTS-BEGIN\nexport {};\n// @@EXPORTS-END\n'), /outside the exports block/);
  assert.throws(() => buildClassic('const a = 1;\nexport { a };\n'), /block is missing/);
});

test('the classic script has no import/export and sets the three globals on window', () => {
  assert.doesNotMatch(classic, /^\s*(import|export)\b/m);
  const window = {};
  vm.runInNewContext(classic, { window, URLSearchParams, AbortController, setTimeout, clearTimeout });
  assert.deepEqual(Object.keys(window).sort(), ['ConnectorBoundaryError', 'ConnectorExecuteError', 'WidgetServiceSDK']);
  assert.equal(typeof window.WidgetServiceSDK, 'function');
  assert.equal(window.WidgetServiceSDK.ConnectorBoundaryError, window.ConnectorBoundaryError);
  assert.equal(window.WidgetServiceSDK.version, mod.SDK_VERSION);
  assert.deepEqual({ ...window.WidgetServiceSDK.BOUNDARY_REASONS }, { ...mod.BOUNDARY_REASONS });
});

test('the classic script works: new window.WidgetServiceSDK() and the static default instance', async () => {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    if (url.includes('fail')) {
      return new Response(JSON.stringify({ success: false, errors: { code: 'CONNECTOR_NOT_FOUND', detail: 'd', scope: null, params: [] }, request_id: 'r' }), { status: 404, headers: { 'Content-Type': 'application/json' } });
    }
    return new Response('{"ok":true}', { headers: { 'Content-Type': 'application/json' } });
  };
  const window = {};
  vm.runInNewContext(classic, { window, URLSearchParams, AbortController, setTimeout, clearTimeout, fetch });
  const sdk = new window.WidgetServiceSDK({ baseUrl: '/rt', csrfToken: 't' });
  const data = await sdk.connectors.execute({ permalink: 'get-item', pathParams: { item_id: 'x 1' } });
  assert.deepEqual({ ...data }, { ok: true });
  assert.equal(calls[0].url, '/rt/connectors/get-item/execute');
  assert.equal(calls[0].init.headers['X-Path-Params'], 'item_id=x+1');
  assert.equal(calls[0].init.headers['X-CSRF-Token'], 't');

  window.WidgetServiceSDK.configure({ baseUrl: 'https://rt.example' });
  await window.WidgetServiceSDK.connectors.composite.execute({ permalink: 'c', payload: { a: 1 } });
  assert.equal(calls[1].url, 'https://rt.example/connectors/composite/c/execute');
  assert.equal(calls[1].init.body, '{"a":1}');

  assert.throws(
    () => sdk.connectors.composite.execute({ permalink: 'c', pathParams: { a: 1 } }),
    (e) => e instanceof window.ConnectorBoundaryError && e.reason === 'PATH_PARAMS_ON_COMPOSITE'
  );
  await assert.rejects(
    sdk.connectors.execute({ permalink: 'fail' }),
    (e) => e instanceof window.ConnectorExecuteError && e.code === 'CONNECTOR_NOT_FOUND' && e.status === 404
  );
  assert.equal(calls.length, 3);
});

test('the .d.ts declares every runtime export and every reason code', () => {
  const dts = readFileSync(new URL('../connectors-sdk.d.ts', import.meta.url), 'utf8');
  for (const name of Object.keys(mod)) {
    if (name === 'default') {
      assert.match(dts, /export default /);
      continue;
    }
    assert.match(dts, new RegExp('export declare (const|class|function) ' + name + '\\b'), name);
  }
  for (const reason of Object.keys(mod.BOUNDARY_REASONS)) assert.match(dts, new RegExp("'" + reason + "'"), reason);
});

test('package.json: private, ESM, no dependencies, test script', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(pkg.private, true);
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.devDependencies, undefined);
  assert.match(pkg.scripts.test, /node --test/);
});
