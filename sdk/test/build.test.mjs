// The UMD build: up to date with the module, and working as CommonJS (`require`), under a real
// AMD loader (RequireJS in jsdom) and as a classic <script> that sets the window globals; the
// declarations; the npm package's manifest. Calls go to the real runtime.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';
import { JSDOM } from 'jsdom';
import { buildUmd, generated, exportsOf, GLOBALS, UMD_PATH, MODULE_PATH, TYPES_PATH, MODULE_TYPES_PATH } from '../build.mjs';
import * as mod from '../connectors-sdk.mjs';
import { startEcho, recordingFetch, seenHeader } from '../testlib/echo.mjs';

const SDK_DIR = path.dirname(fileURLToPath(import.meta.url)).replace(/[\\/]test$/, '');
const require = createRequire(import.meta.url);
const umd = readFileSync(UMD_PATH, 'utf8');
const pkg = JSON.parse(readFileSync(path.join(SDK_DIR, 'package.json'), 'utf8'));

let world;
before(async () => {
  world = await startEcho();
});
after(() => world && world.stop());

describe('generated files', () => {
  test('connectors-sdk.js and connectors-sdk.d.mts are up to date (run `node sdk/build.mjs`)', () => {
    for (const [file, text] of generated()) assert.equal(readFileSync(file, 'utf8'), text, path.basename(file));
  });
  test('the module is dependency-free: no import statement', () => {
    const source = readFileSync(MODULE_PATH, 'utf8');
    assert.doesNotMatch(source, /^\s*import\b/m);
    assert.doesNotMatch(source, /\brequire\(/);
  });
  test('the build refuses a module with exports outside the block, without the block, or without the globals', () => {
    const block = (names) => '// @@EXPORTS-BEGIN\nexport { ' + names + ' };\nexport default a;\n// @@EXPORTS-END\n';
    const all = GLOBALS.join(', ');
    assert.throws(() => buildUmd('export const a = 1;\n' + block(all)), /outside the exports block/);
    assert.throws(() => buildUmd('const a = 1;\nexport { a };\n'), /block is missing/);
    assert.throws(() => buildUmd('const a = 1;\n' + block('a')), /must export WidgetServiceSDK/);
    assert.throws(() => buildUmd('const a = 1;\n' + block(all + ', a as b')), /no `as` renames/);
    assert.deepEqual(exportsOf(block('x, y')), { names: ['x', 'y'], defaultName: 'a' });
  });
  test('the UMD build has no import/export statement', () => {
    assert.doesNotMatch(umd, /^\s*(import|export)\b/m);
  });
});

describe('the UMD build', () => {
  test('as a classic script: sets the three globals on window, and nothing else', () => {
    const window = {};
    vm.runInNewContext(umd, { window, URLSearchParams, AbortController, setTimeout, clearTimeout });
    assert.deepEqual(Object.keys(window).sort(), [...GLOBALS].sort());
    assert.equal(typeof window.WidgetServiceSDK, 'function');
    assert.equal(window.WidgetServiceSDK.ConnectorBoundaryError, window.ConnectorBoundaryError);
    assert.equal(window.WidgetServiceSDK.version, mod.SDK_VERSION);
    assert.deepEqual({ ...window.WidgetServiceSDK.BOUNDARY_REASONS }, { ...mod.BOUNDARY_REASONS });
  });

  test('as a classic script: new window.WidgetServiceSDK() and the static default instance call the runtime', async () => {
    const fetch = recordingFetch();
    const window = {};
    vm.runInNewContext(umd, { window, URLSearchParams, AbortController, setTimeout, clearTimeout, fetch });
    const up = world.upstream;
    up.reset();
    const sdk = new window.WidgetServiceSDK({ baseUrl: world.runtime.url, csrfToken: 't' });
    const data = await sdk.connectors.execute({ permalink: 'p', method: 'GET', pathParams: { item_id: 'x1' } });
    assert.equal(data.path, '/echo/x1');
    assert.equal(seenHeader(up.last(), 'X-Path-Params'), 'item_id=x1');
    assert.equal(seenHeader(up.last(), 'X-CSRF-Token'), 't');

    window.WidgetServiceSDK.configure({ baseUrl: world.runtime.url });
    await window.WidgetServiceSDK.connectors.composite.execute({ permalink: 'c', payload: { a: 1 } });
    assert.equal(JSON.parse(up.last().body).body, '{"a":1}');

    assert.throws(
      () => sdk.connectors.composite.execute({ permalink: 'c', pathParams: { a: 1 } }),
      (e) => e instanceof window.ConnectorBoundaryError && e.reason === 'PATH_PARAMS_ON_COMPOSITE'
    );
    assert.throws(() => sdk.connectors.execute({ permalink: 'p' }), (e) => e instanceof window.ConnectorBoundaryError && e.reason === 'MISSING_METHOD');
    await assert.rejects(
      sdk.connectors.execute({ permalink: 'fail', method: 'GET' }),
      (e) => e instanceof window.ConnectorExecuteError && e.code === 'CONNECTOR_NOT_FOUND' && e.status === 404
    );
    assert.equal(fetch.calls.length, 3);
  });

  test("under CommonJS: require() gives the module's exports and sets no global", async () => {
    const cjs = require('../connectors-sdk.js');
    assert.deepEqual(Object.keys(cjs).sort(), Object.keys(mod).sort());
    assert.equal(cjs.__esModule, true);
    assert.equal(cjs.default, cjs.sdk);
    assert.equal(cjs.SDK_VERSION, mod.SDK_VERSION);
    assert.notEqual(cjs.WidgetServiceSDK, mod.WidgetServiceSDK, 'its own copy');
    for (const g of GLOBALS) assert.equal(globalThis[g], undefined, g + ' leaked to globalThis');
    const sdk = new cjs.WidgetServiceSDK({ baseUrl: world.runtime.url });
    const meta = await sdk.connectors.executeWithMeta({ permalink: 'p-post', method: 'POST', payload: [1] });
    assert.equal(meta.status, 200);
    assert.equal(world.upstream.last().body, '[1]');
    assert.throws(() => sdk.connectors.execute({ permalink: 'p', method: 'FETCH' }), (e) => e instanceof cjs.ConnectorBoundaryError && e.reason === 'INVALID_METHOD');
  });

  test('under a real AMD loader (RequireJS in jsdom): an anonymous module with the exports; the globals too', async () => {
    const requireJs = pathToFileURL(require.resolve('requirejs/require.js')).href;
    const dom = new JSDOM(`<!doctype html><html><head><script src="${requireJs}"></script></head><body></body></html>`, {
      url: pathToFileURL(path.join(SDK_DIR, 'index.html')).href,
      runScripts: 'dangerously',
      resources: 'usable',
    });
    const { window } = dom;
    try {
      await new Promise((resolve, reject) => {
        window.addEventListener('load', resolve);
        window.addEventListener('error', (e) => reject(e.error || new Error(e.message)));
      });
      assert.equal(typeof window.define, 'function');
      assert.ok(window.define.amd, 'RequireJS is an AMD loader');
      window.fetch = globalThis.fetch;
      const amd = await new Promise((resolve, reject) => {
        window.requirejs.config({ baseUrl: pathToFileURL(SDK_DIR + path.sep).href });
        window.requirejs(['connectors-sdk'], resolve, reject);
      });
      assert.deepEqual(Object.keys(amd).sort(), Object.keys(mod).sort());
      assert.equal(amd.WidgetServiceSDK, window.WidgetServiceSDK, 'the globals are set under AMD too');
      const sdk = new amd.WidgetServiceSDK({ baseUrl: world.runtime.url });
      const seen = await sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'X-A': 'amd' } });
      assert.equal(seenHeader(seen, 'X-A'), 'amd');
    } finally {
      window.close();
    }
  });
});

describe('declarations', () => {
  const dts = readFileSync(TYPES_PATH, 'utf8');
  test('the .d.ts declares every runtime export and every reason code; method is required', () => {
    for (const name of Object.keys(mod)) {
      if (name === 'default') {
        assert.match(dts, /export default /);
        continue;
      }
      assert.match(dts, new RegExp('export declare (const|class|function) ' + name + '\\b'), name);
    }
    for (const reason of Object.keys(mod.BOUNDARY_REASONS)) assert.match(dts, new RegExp("'" + reason + "'"), reason);
    assert.match(dts, /interface SimpleExecuteOptions[^}]*\n\s+method: HttpMethod/);
  });
  test('the .d.mts (for the ES module) says the same', () => {
    assert.ok(readFileSync(MODULE_TYPES_PATH, 'utf8').endsWith(dts));
  });
});

describe('package.json (the npm package)', () => {
  test('a public package: name, version = SDK_VERSION, MIT, no runtime dependencies', () => {
    assert.equal(pkg.private, undefined);
    assert.equal(pkg.name, '@connector-runtime/sdk');
    assert.equal(pkg.version, mod.SDK_VERSION);
    assert.equal(pkg.license, 'MIT');
    assert.ok(existsSync(path.join(SDK_DIR, 'LICENSE')));
    assert.equal(pkg.dependencies, undefined);
    assert.equal(pkg.type, undefined, 'no "type": "module": connectors-sdk.js is the UMD, CommonJS to Node');
  });
  test('exports: import → the ES module, require/default → the UMD build, types → the declarations', () => {
    const dot = pkg.exports['.'];
    assert.deepEqual(dot.import, { types: './connectors-sdk.d.mts', default: './connectors-sdk.mjs' });
    assert.deepEqual(dot.require, { types: './connectors-sdk.d.ts', default: './connectors-sdk.js' });
    assert.equal(dot.default, './connectors-sdk.js');
    assert.equal(pkg.types, './connectors-sdk.d.ts');
    assert.equal(pkg.main, './connectors-sdk.js');
    for (const f of [dot.import.types, dot.import.default, dot.require.types, dot.require.default, pkg.types, pkg.main, pkg.module]) {
      assert.ok(existsSync(path.join(SDK_DIR, f)), f);
    }
  });
  test('files: only what ships', () => {
    assert.deepEqual([...pkg.files].sort(), ['LICENSE', 'connectors-sdk.d.mts', 'connectors-sdk.d.ts', 'connectors-sdk.js', 'connectors-sdk.mjs']);
  });
  test('dev dependencies: jsdom (pinned, with a lock file); scripts', () => {
    assert.match(pkg.devDependencies.jsdom, /^\d+\.\d+\.\d+$/);
    const lock = JSON.parse(readFileSync(path.join(SDK_DIR, 'package-lock.json'), 'utf8'));
    assert.equal(lock.packages[''].devDependencies.jsdom, pkg.devDependencies.jsdom);
    assert.equal(lock.packages['node_modules/jsdom'].version, pkg.devDependencies.jsdom);
    assert.match(pkg.scripts.test, /node --test/);
    assert.match(pkg.scripts.prepack, /node build\.mjs/);
  });
});

describe('what the runtime serves', () => {
  for (const file of ['connectors-sdk.js', 'connectors-sdk.mjs', 'connectors-sdk.d.ts']) {
    test(`GET /sdk/${file} is sdk/${file} (a stale binary fails here: rebuild it)`, async () => {
      const res = await fetch(world.runtime.url + '/sdk/' + file);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), readFileSync(path.join(SDK_DIR, file), 'utf8'));
      if (file !== 'connectors-sdk.d.ts') assert.match(res.headers.get('content-type'), /^text\/javascript/);
    });
  }
});
