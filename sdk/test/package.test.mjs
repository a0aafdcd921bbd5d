// The npm package as a user gets it: `npm pack` (run on a copy of sdk/, so its prepack build
// cannot touch the working tree) ships exactly the expected files; the tarball installs into a
// fresh project (no registry needed: it has no dependencies), where `import` gets the ES module,
// `require` the UMD build, and both call the real runtime.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startEcho } from '../testlib/echo.mjs';

const run = promisify(execFile);
const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(path.join(SDK_DIR, 'package.json'), 'utf8'));
const EXPECTED_FILES = ['LICENSE', 'README.md', 'connectors-sdk.d.mts', 'connectors-sdk.d.ts', 'connectors-sdk.js', 'connectors-sdk.mjs', 'package.json'];
// What `npm pack` needs from sdk/: what ships, and the build its prepack runs.
const SOURCES = ['package.json', 'README.md', 'LICENSE', 'build.mjs', 'connectors-sdk.mjs', 'connectors-sdk.js', 'connectors-sdk.d.ts', 'connectors-sdk.d.mts'];
const npmEnv = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

let tmp;
let world;
let packed; // npm pack --json's entry
before(async () => {
  tmp = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'connector-runtime-sdk-pack-')));
  world = await startEcho();
});
after(async () => {
  if (world) await world.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('npm pack builds the package: name, version and exactly the files that ship', async () => {
  const src = path.join(tmp, 'src');
  const out = path.join(tmp, 'out');
  for (const d of [src, out]) rmSync(d, { recursive: true, force: true });
  await run('mkdir', ['-p', src, out]);
  for (const f of SOURCES) copyFileSync(path.join(SDK_DIR, f), path.join(src, f));
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', out], { cwd: src, env: npmEnv, timeout: 120000 });
  [packed] = JSON.parse(stdout);
  assert.equal(packed.name, '@connector-runtime/sdk');
  assert.equal(packed.version, pkg.version);
  assert.deepEqual(packed.files.map((f) => f.path).sort(), EXPECTED_FILES);
  assert.ok(packed.files.every((f) => f.size > 0));
  // The prepack build changed nothing: what ships is what is committed.
  for (const f of ['connectors-sdk.js', 'connectors-sdk.d.mts']) {
    assert.equal(readFileSync(path.join(src, f), 'utf8'), readFileSync(path.join(SDK_DIR, f), 'utf8'), f);
  }
  packed.tarball = path.join(out, packed.filename);
});

test('the tarball installs into a new project; import and require both work against the runtime', async () => {
  assert.ok(packed, 'npm pack ran');
  const project = path.join(tmp, 'project');
  await run('mkdir', ['-p', project]);
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'sdk-consumer', version: '1.0.0', private: true }));
  await run('npm', ['install', '--no-package-lock', '--offline', packed.tarball], { cwd: project, env: npmEnv, timeout: 120000 });

  writeFileSync(path.join(project, 'esm.mjs'), `
import sdk, { WidgetServiceSDK, connectors, ConnectorBoundaryError, SDK_VERSION } from '@connector-runtime/sdk';
import { createRequire } from 'node:module';
const resolved = import.meta.resolve('@connector-runtime/sdk');
let missing;
try { connectors.execute({ permalink: 'p' }); } catch (e) { missing = e instanceof ConnectorBoundaryError && e.reason; }
const client = new WidgetServiceSDK({ baseUrl: process.argv[2] });
const seen = await client.connectors.execute({ permalink: 'p', method: 'GET', pathParams: { item_id: 'esm' } });
console.log(JSON.stringify({ resolved, isDefault: sdk === WidgetServiceSDK.defaultInstance, version: SDK_VERSION, missing, path: seen.path }));
`);
  writeFileSync(path.join(project, 'cjs.cjs'), `
const m = require('@connector-runtime/sdk');
const resolved = require.resolve('@connector-runtime/sdk');
let missing;
try { m.connectors.execute({ permalink: 'p' }); } catch (e) { missing = e instanceof m.ConnectorBoundaryError && e.reason; }
const client = new m.WidgetServiceSDK({ baseUrl: process.argv[2] });
client.connectors.execute({ permalink: 'p', method: 'GET', pathParams: { item_id: 'cjs' } }).then((seen) => {
  console.log(JSON.stringify({ resolved, isDefault: m.default === m.sdk, version: m.SDK_VERSION, missing, path: seen.path, globals: typeof globalThis.WidgetServiceSDK }));
});
`);
  const installed = path.join(project, 'node_modules', '@connector-runtime', 'sdk');
  const esm = JSON.parse((await run(process.execPath, ['esm.mjs', world.runtime.url], { cwd: project, timeout: 30000 })).stdout);
  assert.deepEqual(esm, {
    resolved: 'file://' + path.join(installed, 'connectors-sdk.mjs'),
    isDefault: true,
    version: pkg.version,
    missing: 'MISSING_METHOD',
    path: '/echo/esm',
  });
  const cjs = JSON.parse((await run(process.execPath, ['cjs.cjs', world.runtime.url], { cwd: project, timeout: 30000 })).stdout);
  assert.deepEqual(cjs, {
    resolved: path.join(installed, 'connectors-sdk.js'),
    isDefault: true,
    version: pkg.version,
    missing: 'MISSING_METHOD',
    path: '/echo/cjs',
    globals: 'undefined',
  });
  const installedPkg = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8'));
  assert.equal(installedPkg.types, './connectors-sdk.d.ts');
});
