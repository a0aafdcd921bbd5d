// Smoke-runs load/k6.js without k6 (which no package registry here provides): the script's
// k6 imports are replaced by a small synchronous shim (requests go through curl), then
// setup() runs once and every scenario's exec function runs ITERATIONS times against
// BASE_URL. Every k6 check must pass. Used by scripts/e2e/prometheus_dashboard.py against
// the local server, so the load script's paths, headers and expected statuses are tested
// against the real registry.
//
//   node scripts/e2e/k6_smoke.mjs load/k6.js http://127.0.0.1:PORT [ITERATIONS]

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [scriptPath, baseUrl, iterationsArg] = process.argv.slice(2);
if (!scriptPath || !baseUrl) {
  console.error('usage: k6_smoke.mjs SCRIPT BASE_URL [ITERATIONS]');
  process.exit(2);
}
const base = new URL(baseUrl);
if (!['127.0.0.1', 'localhost', '[::1]'].includes(base.hostname)) {
  console.error(`refusing to send traffic to ${base.hostname}: loopback only`);
  process.exit(2);
}
const iterations = parseInt(iterationsArg || '50', 10);

let requests = 0;
const checks = { passed: 0, failed: 0, failures: new Map() };

function request(method, url, body, params = {}) {
  if (!url.startsWith(baseUrl)) {
    throw new Error(`the script requested ${url}, outside BASE_URL ${baseUrl}`);
  }
  const argv = ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', method, '--max-time', '30'];
  for (const [k, v] of Object.entries(params.headers || {})) {
    argv.push('-H', `${k}: ${v}`);
  }
  if (body !== null && body !== undefined && body !== '') {
    argv.push('--data-binary', String(body));
  }
  argv.push(url);
  requests += 1;
  let status = 0;
  try {
    status = parseInt(execFileSync('curl', argv, { encoding: 'utf8' }), 10) || 0;
  } catch (e) {
    status = 0;
  }
  return { status, request: { method, url } };
}

globalThis.__k6shim = {
  http: {
    request,
    get: (url, params) => request('GET', url, null, params),
    post: (url, body, params) => request('POST', url, body, params),
    expectedStatuses: (...codes) => ({ codes }),
  },
  check(res, sets) {
    let all = true;
    for (const [name, fn] of Object.entries(sets)) {
      if (fn(res)) {
        checks.passed += 1;
      } else {
        checks.failed += 1;
        all = false;
        checks.failures.set(name, (checks.failures.get(name) || 0) + 1);
      }
    }
    return all;
  },
  sleep(seconds) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);
  },
};

const source = readFileSync(scriptPath, 'utf8');
const importRe = /^import\s+(.+?)\s+from\s+'k6(\/[a-z]+)?';\s*$/gm;
const imports = [...source.matchAll(importRe)].map((m) => m[2] || '');
const unknown = imports.filter((m) => !['', '/http'].includes(m));
if (unknown.length) {
  console.error(`the shim does not provide k6 modules: ${unknown.join(', ')}`);
  process.exit(1);
}
const shimmed = [
  'const { http, check, sleep } = globalThis.__k6shim;',
  `const __ENV = ${JSON.stringify({ BASE_URL: baseUrl })};`,
  source.replace(importRe, ''),
].join('\n');
const dir = mkdtempSync(join(tmpdir(), 'k6-smoke-'));
const file = join(dir, 'script.mjs');
writeFileSync(file, shimmed);
let mod;
try {
  mod = await import(pathToFileURL(file).href);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const scenarios = Object.entries(mod.options?.scenarios || {});
if (!scenarios.length) {
  console.error('the script defines no scenarios');
  process.exit(1);
}
for (const [name, sc] of scenarios) {
  const exec = sc.exec || 'default';
  if (typeof mod[exec] !== 'function') {
    console.error(`scenario ${name}: exec function ${exec} is not exported`);
    process.exit(1);
  }
}
if (typeof mod.setup === 'function') {
  mod.setup();
}
for (const [, sc] of scenarios) {
  const fn = mod[sc.exec || 'default'];
  for (let i = 0; i < iterations; i += 1) {
    fn();
  }
}
for (const [name, count] of checks.failures) {
  console.log(`  failed check: ${name} (${count}x)`);
}
console.log(`k6 smoke: ${scenarios.length} scenario(s), ${requests} requests, ` +
  `checks ${checks.passed} ok / ${checks.failed} failed`);
process.exit(checks.failed === 0 && checks.passed > 0 ? 0 : 1);
