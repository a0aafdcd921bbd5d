// console/index.html: self-contained (no external resources), and its script driven end to end
// in a tiny DOM (sdk/testlib/mini-dom.mjs) against a fake runtime, through the classic SDK build.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { parseHTML } from '../testlib/mini-dom.mjs';

const HTML = readFileSync(new URL('../../console/index.html', import.meta.url), 'utf8');
const SDK_JS = readFileSync(new URL('../connectors-sdk.js', import.meta.url), 'utf8');

const CONNECTORS = {
  connectors: [
    { permalink: 'get-item', name: 'Get item', kind: 'simple', method: 'GET', path_parameters: ['item_id'], steps: [] },
    { permalink: 'create-item', name: 'Create item', kind: 'simple', method: 'POST', path_parameters: [], steps: [] },
    { permalink: 'auth-and-fetch-user', name: 'Auth and fetch user', kind: 'composite', method: 'POST', path_parameters: [], steps: ['auth', 'fetch-user'] },
  ],
};
const SIMPLE_TIMING = { request_id: 'req-s', total_ms: 20, internal_ms: 5, external_ms: 15, breakdown: { setup_ms: 3, transform_ms: 2, cache_ms: 0, http_request_ms: 15 }, cache_hit: false, external_host: 'api.example' };
const COMPOSITE_TIMING = { request_id: 'req-c', total_ms: 210, steps: [{ name: 'auth', index: 0, duration_ms: 120, status_code: 200 }, { name: 'fetch-user', index: 1, duration_ms: 85, status_code: 200 }] };
// Chain control (docs/spec.md §12): a parallel run, each step at its start_ms, with a skipped
// step, one that continued after an error and a for_each step whose 3 items ran 2 at a time.
const CHAIN_TIMING = {
  request_id: 'req-p', total_ms: 120,
  steps: [
    { name: 'token', index: 0, start_ms: 0.5, duration_ms: 20, status_code: 200, state: 'ok' },
    { name: 'catalog', index: 1, start_ms: 0.6, duration_ms: 50, status_code: 200, state: 'ok' },
    { name: 'profile', index: 2, start_ms: 21, duration_ms: 40, status_code: 200, state: 'ok' },
    { name: 'offers', index: 3, start_ms: 21.2, duration_ms: 0.1, status_code: null, state: 'skipped' },
    { name: 'audit', index: 4, start_ms: 61.5, duration_ms: 8, status_code: 503, state: 'continued', attempts: 2 },
    {
      name: 'details', index: 5, start_ms: 51, duration_ms: 65, status_code: 200, state: 'ok',
      items: [
        { index: 0, start_ms: 51.2, duration_ms: 30, status_code: 200 },
        { index: 1, start_ms: 51.3, duration_ms: 32, status_code: 200 },
        { index: 2, start_ms: 81.5, duration_ms: 34, status_code: 200 },
      ],
    },
  ],
};

function json(body, status, headers) {
  return new Response(JSON.stringify(body), { status: status || 200, headers: { 'Content-Type': 'application/json', ...(headers || {}) } });
}

/** Loads the console into a mini DOM with a fake runtime; `routes(url, init)` may override answers. */
async function openConsole(routes) {
  const document = parseHTML(HTML);
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init: init || {} });
    const custom = routes && (await routes(url, init || {}));
    if (custom) return custom;
    if (url === '/console/api/connectors') return json(CONNECTORS);
    if (url.startsWith('/connectors/composite/')) {
      return json({ user: 'u1', tags: ['a'] }, 200, { 'X-Request-ID': 'req-c', 'X-Connector-Timing': JSON.stringify(COMPOSITE_TIMING) });
    }
    return json({ id: 'itm_042' }, 200, { 'X-Request-ID': 'req-s', 'X-Connector-Timing': JSON.stringify(SIMPLE_TIMING) });
  };
  // Web Storage that records every write: the console must never persist anything (the member token above all).
  const storageWrites = [];
  const storage = (name) => ({
    getItem: () => null,
    setItem: (k, v) => storageWrites.push([name, k, v]),
    removeItem: () => {},
    clear: () => {},
    key: () => null,
    length: 0,
  });
  const ctx = {
    document, fetch, Response, Headers, URLSearchParams, AbortController, setTimeout, clearTimeout,
    performance, console, location: { hash: '' }, history: { replaceState(_, __, hash) { ctx.location.hash = hash; } },
    localStorage: storage('localStorage'), sessionStorage: storage('sessionStorage'),
  };
  ctx.window = ctx;
  vm.createContext(ctx);
  const scripts = document.scripts;
  for (const s of scripts) {
    if (s.src) {
      assert.equal(s.src, '/sdk/connectors-sdk.js');
      vm.runInContext(SDK_JS, ctx, { filename: 'connectors-sdk.js' });
    } else {
      vm.runInContext(s.text, ctx, { filename: 'console-inline.js' });
    }
  }
  await settle();
  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel) => document.querySelectorAll(sel);
  return { document, ctx, calls, storageWrites, $, $$ };
}

/** Copies a value out of the console's realm so deepEqual compares structure only. */
function plain(value) {
  return JSON.parse(JSON.stringify(value));
}

async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 0));
}

function pick(page, permalink) {
  page.$('#connector-list li[data-permalink="' + permalink + '"] button').click();
}

function rows(page, containerId) {
  return page.$$('#' + containerId + ' .row').map((r) => [r.querySelector('.row-key'), r.querySelector('.row-value')]);
}

describe('console/index.html is self-contained', () => {
  test('no external resources: only /sdk/connectors-sdk.js is loaded', () => {
    assert.doesNotMatch(HTML, /<(script|link|img|iframe)[^>]+(src|href)="(https?:)?\/\//i);
    assert.doesNotMatch(HTML, /@import|url\(/i);
    const srcs = [...HTML.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(srcs, ['/sdk/connectors-sdk.js']);
    assert.doesNotMatch(HTML, /<link[^>]+stylesheet/i);
  });
  test('builds the page from text nodes only: no HTML parsing of data', () => {
    assert.doesNotMatch(HTML, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser/);
  });
  test('has the stable ids the brief names', () => {
    const doc = parseHTML(HTML);
    for (const id of ['connector-list', 'payload', 'execute', 'status', 'result-body', 'error-envelope', 'waterfall', 'request-id']) {
      assert.ok(doc.getElementById(id), '#' + id);
    }
    assert.equal(doc.getElementById('payload').localName, 'textarea');
    assert.equal(doc.getElementById('execute').localName, 'button');
  });
  test('accessibility basics: lang, title, a label for every form control', () => {
    assert.match(HTML, /<html lang="en">/);
    assert.match(HTML, /<title>[^<]+<\/title>/);
    const doc = parseHTML(HTML);
    for (const control of doc.querySelectorAll('input, textarea')) {
      const id = control.id;
      const labelled = control.hasAttribute('aria-label') || (id && doc.querySelector('label[for="' + id + '"]'));
      assert.ok(labelled, 'unlabelled control #' + id);
    }
  });
});

describe('console pure helpers', () => {
  test('waterfallModel: composite steps are laid end to end with cumulative offsets', async () => {
    const page = await openConsole();
    const model = page.ctx.ConnectorConsole.waterfallModel(COMPOSITE_TIMING);
    assert.deepEqual(plain(model.segments.map((s) => [s.id, s.offset, s.duration, s.status])), [['auth', 0, 120, 200], ['fetch-user', 120, 85, 200]]);
    assert.equal(model.scale, 210);
    assert.ok(Math.abs(model.segments[1].left - (120 / 210) * 100) < 1e-9);
  });
  test('waterfallModel: simple breakdown setup → http_request → transform', async () => {
    const page = await openConsole();
    const model = page.ctx.ConnectorConsole.waterfallModel(SIMPLE_TIMING, { status: 200 });
    assert.deepEqual(plain(model.segments.map((s) => [s.id, s.offset, s.duration])), [['setup', 0, 3], ['http_request', 3, 15], ['transform', 18, 2]]);
    assert.equal(model.segments[1].detail, 'api.example · 200');
  });
  test('waterfallModel: a failed composite marks the last step; no timing → null', async () => {
    const page = await openConsole();
    const { waterfallModel } = page.ctx.ConnectorConsole;
    const failed = waterfallModel({ total_ms: 5, steps: [{ name: 'a', duration_ms: 2, status_code: 200 }, { name: 'b', duration_ms: 3, status_code: null }] }, { failed: true });
    assert.deepEqual(plain(failed.segments.map((s) => s.failed)), [false, true]);
    assert.equal(waterfallModel(null), null);
    assert.equal(waterfallModel({ total_ms: 1 }), null);
  });
  test('waterfallModel: chain control steps sit at their start_ms, so parallel steps overlap', async () => {
    const page = await openConsole();
    const model = page.ctx.ConnectorConsole.waterfallModel(CHAIN_TIMING);
    assert.deepEqual(plain(model.segments.map((s) => [s.id, s.offset, s.duration, s.state])), [
      ['token', 0.5, 20, 'ok'], ['catalog', 0.6, 50, 'ok'], ['profile', 21, 40, 'ok'],
      ['offers', 21.2, 0.1, 'skipped'], ['audit', 61.5, 8, 'continued'], ['details', 51, 65, 'ok'],
    ]);
    assert.equal(model.scale, 120);
    const [token, catalog, profile] = model.segments;
    assert.ok(catalog.left < token.left + token.width, 'token and catalog overlap');
    assert.ok(Math.abs(profile.left - (21 / 120) * 100) < 1e-9);
    assert.ok(Math.abs(catalog.width - (50 / 120) * 100) < 1e-9);
  });
  test('waterfallModel: states mark skipped, continued and failed steps; for_each items get lanes', async () => {
    const page = await openConsole();
    const { waterfallModel } = page.ctx.ConnectorConsole;
    const model = waterfallModel(CHAIN_TIMING);
    const by = Object.fromEntries(model.segments.map((s) => [s.id, s]));
    assert.equal(by.offers.detail, 'skipped');
    assert.equal(by.offers.failed, false);
    assert.equal(by.audit.detail, '503 · continued after error · 2 attempts');
    assert.equal(by.audit.failed, false, 'a continued step did not fail the run');
    assert.equal(by.details.detail, '3 items · 200');
    assert.deepEqual(plain(by.details.items.map((it) => [it.index, it.offset, it.duration, it.lane])), [[0, 51.2, 30, 0], [1, 51.3, 32, 1], [2, 81.5, 34, 0]]);
    assert.equal(by.details.lanes, 2, 'two items at a time');
    assert.ok(Math.abs(by.details.items[2].left - (81.5 / 120) * 100) < 1e-9);
    // A failed step is marked by its state, whatever its status; the steps after it are not.
    const failed = waterfallModel({
      total_ms: 30,
      steps: [
        { name: 'a', start_ms: 0, duration_ms: 10, status_code: 200, state: 'ok' },
        { name: 'b', start_ms: 10, duration_ms: 20, status_code: null, state: 'failed', items: [{ index: 0, start_ms: 10, duration_ms: 20, status_code: null }] },
      ],
    }, { failed: true });
    assert.deepEqual(plain(failed.segments.map((s) => [s.failed, s.detail])), [[false, '200'], [true, '1 item · no answer']]);
    assert.equal(failed.segments[1].items[0].failed, true);
  });
  test('parsePayload and rowsToObject', async () => {
    const page = await openConsole();
    const { parsePayload, rowsToObject } = page.ctx.ConnectorConsole;
    assert.equal(parsePayload('  ').empty, true);
    assert.equal(parsePayload('{"a":1}').value.a, 1);
    assert.equal(parsePayload('{a:1}').ok, false);
    assert.equal(rowsToObject([{ key: '', value: '' }]), undefined);
    assert.deepEqual({ ...rowsToObject([{ key: ' a ', value: '1' }, { key: '', value: '' }, { key: '', value: 'x' }]) }, { a: '1', '': 'x' });
  });
});

describe('console in a DOM', () => {
  test('lists the loaded connectors from GET /console/api/connectors', async () => {
    const page = await openConsole();
    assert.equal(page.calls[0].url, '/console/api/connectors');
    const items = page.$$('#connector-list li[data-permalink]');
    assert.deepEqual(items.map((li) => li.getAttribute('data-permalink')), ['get-item', 'create-item', 'auth-and-fetch-user']);
    assert.deepEqual(items.map((li) => li.getAttribute('data-kind')), ['simple', 'simple', 'composite']);
    assert.match(items[2].textContent, /Auth and fetch user/);
    assert.equal(page.$('#connector-count').textContent, '3');
    assert.equal(page.$('#execute').disabled, true, 'nothing selected yet');
  });

  test('the filter hides connectors that do not match', async () => {
    const page = await openConsole();
    const filter = page.$('#filter');
    filter.value = 'item';
    filter.dispatch('input');
    assert.deepEqual(page.$$('#connector-list li').map((li) => li.hidden), [false, false, true]);
  });

  test('composite: executes through the SDK and shows status, request id, body and a waterfall per step', async () => {
    const page = await openConsole();
    pick(page, 'auth-and-fetch-user');
    assert.equal(page.$('#connector-title').textContent, 'Auth and fetch user');
    assert.equal(page.$('#path-group').hidden, true, 'no path params for composites');
    assert.match(page.$('#connector-steps').textContent, /auth → fetch-user/);
    page.$('#payload').value = '{"user": "u1"}';
    page.$('#payload').dispatch('input');
    page.$('[data-add="query"]').click();
    const [[key, value]] = rows(page, 'query-rows');
    key.value = 'lang';
    value.value = 'fr';
    page.$('#execute').click();
    await settle();
    const call = page.calls[1];
    assert.equal(call.url, '/connectors/composite/auth-and-fetch-user/execute?lang=fr');
    assert.equal(call.init.method, 'POST');
    assert.equal(call.init.body, '{"user":"u1"}');
    assert.equal(page.$('#status').textContent, '200');
    assert.equal(page.$('#status').className, 'ok');
    assert.equal(page.$('#request-id').textContent, 'req-c');
    assert.deepEqual(JSON.parse(page.$('#result-body').textContent), { user: 'u1', tags: ['a'] });
    assert.match(page.$('#result-body').textContent, /\n {2}"user"/, 'pretty-printed');
    assert.equal(page.$('#error-envelope').hidden, true);
    const bars = page.$$('#waterfall .bar[data-step]');
    assert.deepEqual(bars.map((b) => b.getAttribute('data-step')), ['auth', 'fetch-user']);
    assert.deepEqual(bars.map((b) => b.getAttribute('data-offset-ms')), ['0', '120']);
    assert.equal(bars[0].style.left, '0.000%');
    assert.equal(bars[1].style.left, ((120 / 210) * 100).toFixed(3) + '%');
    assert.equal(bars[1].style.width, ((85 / 210) * 100).toFixed(3) + '%');
    const labels = page.$$('#waterfall .wf-label').map((l) => l.textContent);
    assert.deepEqual(labels, ['auth · 200 · 120.0 ms', 'fetch-user · 200 · 85.0 ms']);
    assert.equal(page.$('#execute').disabled, false, 'enabled again after the run');
    assert.equal(page.ctx.location.hash, '#auth-and-fetch-user');
  });

  test('composite with chain control: bars at start_ms, skipped and continued marked, item sub-bars', async () => {
    const page = await openConsole((url) => (url.startsWith('/connectors/composite/') ? json({ ok: true }, 200, { 'X-Connector-Timing': JSON.stringify(CHAIN_TIMING) }) : null));
    pick(page, 'auth-and-fetch-user');
    page.$('#execute').click();
    await settle();
    const bars = page.$$('#waterfall .bar[data-step]');
    assert.deepEqual(bars.map((b) => b.getAttribute('data-step')), ['token', 'catalog', 'profile', 'offers', 'audit', 'details']);
    assert.deepEqual(bars.map((b) => b.getAttribute('data-offset-ms')), ['0.5', '0.6', '21', '21.2', '61.5', '51']);
    assert.deepEqual(bars.map((b) => b.getAttribute('data-state')), ['ok', 'ok', 'ok', 'skipped', 'continued', 'ok']);
    assert.equal(bars[1].style.left, ((0.6 / 120) * 100).toFixed(3) + '%', 'catalog starts with token, not after it');
    assert.ok(bars[3].classList.contains('skipped'));
    assert.ok(bars[4].classList.contains('continued'));
    assert.ok(!bars.some((b) => b.classList.contains('failed')));
    const subs = page.$$('#waterfall .wf-row[data-step="details"] .sub-bar');
    assert.deepEqual(subs.map((b) => [b.getAttribute('data-item'), b.getAttribute('data-lane'), b.getAttribute('data-offset-ms')]), [['0', '0', '51.2'], ['1', '1', '51.3'], ['2', '0', '81.5']]);
    assert.equal(subs[2].style.left, ((81.5 / 120) * 100).toFixed(3) + '%');
    assert.equal(page.$$('#waterfall .sub-bar').length, 3, 'only the for_each step has sub-bars');
    const labels = page.$$('#waterfall .wf-label').map((l) => l.textContent);
    assert.deepEqual(labels.slice(3), ['offers · skipped · 0.1 ms', 'audit · 503 · continued after error · 2 attempts · 8.0 ms', 'details · 3 items · 200 · 65.0 ms']);
  });

  test('simple GET: path params prefilled and sent in X-Path-Params; payload disabled; breakdown waterfall', async () => {
    const page = await openConsole();
    pick(page, 'get-item');
    assert.equal(page.$('#payload-group').disabled, true);
    assert.equal(page.$('#path-group').hidden, false);
    const pathRows = rows(page, 'path-rows');
    assert.equal(pathRows.length, 1);
    assert.equal(pathRows[0][0].value, 'item_id');
    pathRows[0][1].value = 'itm 042';
    page.$('#payload').value = 'not json, but GET has no payload';
    page.$('#payload').dispatch('input');
    assert.equal(page.$('#execute').disabled, false);
    page.$('#execute').click();
    await settle();
    const call = page.calls[1];
    assert.equal(call.url, '/connectors/get-item/execute');
    assert.equal(call.init.method, 'GET');
    assert.equal(call.init.body, undefined);
    assert.equal(call.init.headers['X-Path-Params'], 'item_id=itm+042');
    assert.deepEqual(page.$$('#waterfall .bar[data-step]').map((b) => b.getAttribute('data-step')), ['setup', 'http_request', 'transform']);
    assert.match(page.$('#waterfall').textContent, /api\.example/);
    assert.match(page.$('#waterfall').textContent, /Total 20\.0 ms/);
  });

  test('simple POST: invalid JSON disables Execute and explains why', async () => {
    const page = await openConsole();
    pick(page, 'create-item');
    const payload = page.$('#payload');
    payload.value = '{"name": ';
    payload.dispatch('input');
    assert.equal(page.$('#execute').disabled, true);
    assert.equal(payload.getAttribute('aria-invalid'), 'true');
    assert.match(page.$('#payload-error').textContent, /Invalid JSON/);
    payload.value = '{"name": "x"}';
    payload.dispatch('input');
    assert.equal(page.$('#execute').disabled, false);
    assert.equal(page.$('#payload-error').textContent, '');
    page.$('#execute').click();
    await settle();
    assert.equal(page.calls[1].init.method, 'POST');
    assert.equal(page.calls[1].init.body, '{"name":"x"}');
    assert.equal(page.calls[1].init.headers['Content-Type'], 'application/json');
  });

  test('an error envelope is shown with code, scope and detail, and the waterfall marks the failed step', async () => {
    const envelope = {
      success: false,
      errors: { code: 'DOWNSTREAM_HTTP_ERROR', detail: 'the upstream answered HTTP 404', scope: "Composite step 'fetch-user' (index 1): Downstream (HTTP error)", params: [] },
      request_id: 'req-e',
    };
    const timing = { request_id: 'req-e', total_ms: 200, steps: [{ name: 'auth', index: 0, duration_ms: 120, status_code: 200 }, { name: 'fetch-user', index: 1, duration_ms: 80, status_code: 404 }] };
    const page = await openConsole((url) => (url.startsWith('/connectors/composite/') ? json(envelope, 502, { 'X-Connector-Timing': JSON.stringify(timing) }) : null));
    pick(page, 'auth-and-fetch-user');
    page.$('#execute').click();
    await settle();
    assert.equal(page.$('#status').className, 'error');
    assert.match(page.$('#status').textContent, /502 DOWNSTREAM_HTTP_ERROR/);
    assert.equal(page.$('#request-id').textContent, 'req-e');
    const box = page.$('#error-envelope');
    assert.equal(box.hidden, false);
    assert.equal(box.getAttribute('data-code'), 'DOWNSTREAM_HTTP_ERROR');
    assert.equal(box.querySelector('[data-field="code"]').textContent, 'DOWNSTREAM_HTTP_ERROR');
    assert.equal(box.querySelector('[data-field="scope"]').textContent, "Composite step 'fetch-user' (index 1): Downstream (HTTP error)");
    assert.equal(box.querySelector('[data-field="detail"]').textContent, 'the upstream answered HTTP 404');
    assert.match(page.$('#result-body').textContent, /"success": false/);
    const bars = page.$$('#waterfall .bar[data-step]');
    assert.deepEqual(bars.map((b) => b.classList.contains('failed')), [false, true]);
  });

  test('a boundary error is shown and nothing is sent', async () => {
    const page = await openConsole();
    pick(page, 'get-item');
    const [[key, value]] = rows(page, 'path-rows');
    key.value = '';
    value.value = 'orphan';
    page.$('#execute').click();
    await settle();
    assert.equal(page.calls.length, 1, 'only the list request');
    assert.equal(page.$('#status').textContent, 'Not sent');
    const box = page.$('#client-error');
    assert.equal(box.hidden, false);
    assert.equal(box.getAttribute('data-reason'), 'EMPTY_KEY');
    assert.equal(page.$('#error-envelope').hidden, true);
  });

  test('a network failure is shown as such', async () => {
    const page = await openConsole((url) => (url.startsWith('/connectors/') ? Promise.reject(new TypeError('Failed to fetch')) : null));
    pick(page, 'create-item');
    page.$('#execute').click();
    await settle();
    assert.equal(page.$('#status').textContent, 'Network error');
    assert.match(page.$('#client-error').textContent, /Failed to fetch/);
  });

  test('a non-JSON body is shown as text', async () => {
    const page = await openConsole((url) => (url.startsWith('/connectors/') ? new Response('plain words', { headers: { 'Content-Type': 'text/plain' } }) : null));
    pick(page, 'get-item');
    page.$('#execute').click();
    await settle();
    assert.equal(page.$('#result-body').textContent, 'plain words');
    assert.match(page.$('#waterfall').textContent, /No X-Connector-Timing/);
  });

  test('a failing connector list is reported', async () => {
    const page = await openConsole((url) => (url === '/console/api/connectors' ? new Response('nope', { status: 500 }) : null));
    assert.match(page.$('#list-message').textContent, /Could not load connectors/);
    assert.equal(page.$$('#connector-list li').length, 0);
  });

  test('selecting another connector resets the form', async () => {
    const page = await openConsole();
    pick(page, 'create-item');
    page.$('#payload').value = '{"a":1}';
    page.$('[data-add="header"]').click();
    pick(page, 'get-item');
    assert.equal(page.$('#payload').value, '');
    assert.equal(rows(page, 'header-rows').length, 0);
    assert.equal(page.$('#connector-list li[data-permalink="get-item"]').className, 'selected');
    assert.equal(page.$('#connector-list li[data-permalink="get-item"] button').getAttribute('aria-current'), 'true');
    assert.equal(page.$('#connector-list li[data-permalink="create-item"] button').getAttribute('aria-current'), null);
  });
});

describe('console: X-Debug-Request (a "Request" tab per step)', () => {
  // The answer header as the runtime writes it (docs/spec.md §14): a secret as its template
  // text, a for_each step with one entry per item, a skipped step absent. The values carry
  // markup that must stay text.
  const COMPOSITE_DEBUG = {
    steps: [
      {
        step: 'auth', url: 'https://auth.example/oauth/token', method: 'POST',
        headers: { 'Content-Type': 'application/json' }, query_parameters: {},
        request_body: '{"client_secret":"{{ get_secret(\'client_secret\') }}","grant":"<b>x</b>"}',
        authentication: null, response_body: null, response_content_type: null,
      },
      {
        step: 'fetch-user', url: 'https://api.example/users/u1?lang=fr', method: 'GET',
        headers: { Accept: 'application/json', 'X-Note': '<img src=x onerror=alert(1)>' }, query_parameters: { lang: 'fr' },
        request_body: null, authentication: { type: 'bearer', token: "{{ get_secret('api_token') }}" },
        response_body: '{"name": {{ response.name | tojson }}}', response_content_type: 'application/json',
      },
    ],
  };
  const DEBUG_CHAIN = {
    steps: [
      { step: 'details', item: 1, url: 'https://api.example/d/2', method: 'GET', headers: {}, query_parameters: {}, request_body: null, authentication: null },
      { step: 'token', url: 'https://auth.example/t', method: 'POST', headers: {}, query_parameters: {}, request_body: 'a=1', authentication: null },
      { step: 'details', item: 0, url: 'https://api.example/d/1', method: 'GET', headers: {}, query_parameters: {}, request_body: null, authentication: null },
      { step: 'profile', url: null, method: 'GET', error: "no variable 'x'", authentication: null },
    ],
  };
  const SIMPLE_DEBUG = {
    url: 'https://api.example/items/itm_042', method: 'GET', headers: { Accept: 'application/json' },
    query_parameters: {}, authentication: { type: 'api_key', header: 'X-Api-Key', value: "{{ get_secret('api_key') }}" },
    request_body: null, response_body: null, response_content_type: null,
  };

  function composite(debug, timing, status) {
    return (url) => {
      if (!url.startsWith('/connectors/composite/')) return null;
      const headers = { 'X-Connector-Timing': JSON.stringify(timing || COMPOSITE_TIMING) };
      if (debug !== undefined) headers['X-Debug-Request'] = typeof debug === 'string' ? debug : JSON.stringify(debug);
      return json(status ? { success: false, errors: { code: 'DOWNSTREAM_HTTP_ERROR', detail: 'HTTP 404', scope: null, params: [] } } : { ok: true }, status || 200, headers);
    };
  }

  test('every run asks for it with X-Debug-Request: 1 (the connector list does not)', async () => {
    const page = await openConsole();
    pick(page, 'get-item');
    page.$('#execute').click();
    await settle();
    pick(page, 'auth-and-fetch-user');
    page.$('#execute').click();
    await settle();
    assert.deepEqual(page.calls.slice(1).map((c) => c.init.headers['X-Debug-Request']), ['1', '1']);
    assert.equal(page.calls[0].init.headers['X-Debug-Request'], undefined);
  });

  test('composite: each step that ran gets a Request tab with its resolved request, as text', async () => {
    const page = await openConsole(composite(COMPOSITE_DEBUG));
    pick(page, 'auth-and-fetch-user');
    page.$('#execute').click();
    await settle();
    const tabs = page.$$('#waterfall .wf-tab');
    assert.deepEqual(tabs.map((t) => [t.getAttribute('data-step'), t.textContent, t.getAttribute('aria-expanded')]), [['auth', 'Request', 'false'], ['fetch-user', 'Request', 'false']]);
    const panel = page.$('#waterfall .wf-request[data-step="fetch-user"]');
    assert.equal(panel.hidden, true, 'closed until its tab is clicked');
    assert.equal(tabs[1].getAttribute('aria-controls'), panel.id);
    tabs[1].click();
    assert.equal(panel.hidden, false);
    assert.equal(tabs[1].getAttribute('aria-expanded'), 'true');
    const field = (name) => panel.querySelector('[data-field="' + name + '"]').textContent;
    assert.equal(field('method'), 'GET');
    assert.equal(field('url'), 'https://api.example/users/u1?lang=fr');
    assert.equal(field('headers'), 'Accept: application/json\nX-Note: <img src=x onerror=alert(1)>');
    assert.equal(field('query_parameters'), 'lang: fr');
    assert.deepEqual(JSON.parse(field('authentication')), { type: 'bearer', token: "{{ get_secret('api_token') }}" });
    assert.equal(field('request_body'), '(none)');
    assert.equal(field('response_body'), '{"name": {{ response.name | tojson }}}');
    assert.equal(panel.querySelectorAll('img').length, 0, 'markup in the header stays text');
    tabs[1].click();
    assert.equal(panel.hidden, true, 'the tab closes it again');
    tabs[0].click();
    const auth = page.$('#waterfall .wf-request[data-step="auth"]');
    const body = auth.querySelector('[data-field="request_body"]').textContent;
    assert.deepEqual(JSON.parse(body), { client_secret: "{{ get_secret('client_secret') }}", grant: '<b>x</b>' });
    assert.match(body, /\n {2}"client_secret"/, 'a JSON body is pretty-printed');
    assert.equal(auth.querySelectorAll('b').length, 0);
    // The panel sits right after its step's row.
    const kids = page.$('#waterfall').children;
    const at = kids.indexOf(auth);
    assert.equal(kids[at - 1].getAttribute('data-step'), 'auth');
  });

  test('chain control: a for_each step lists its items in order, a skipped step has no tab, a render error is shown', async () => {
    const page = await openConsole(composite(DEBUG_CHAIN, CHAIN_TIMING));
    pick(page, 'auth-and-fetch-user');
    page.$('#execute').click();
    await settle();
    assert.deepEqual(page.$$('#waterfall .wf-tab').map((t) => t.getAttribute('data-step')), ['token', 'profile', 'details']);
    const details = page.$('#waterfall .wf-request[data-step="details"]');
    assert.deepEqual(details.querySelectorAll('h4').map((h) => h.textContent), ['Item 0', 'Item 1']);
    assert.deepEqual(details.querySelectorAll('[data-field="url"]').map((u) => u.textContent), ['https://api.example/d/1', 'https://api.example/d/2']);
    const profile = page.$('#waterfall .wf-request[data-step="profile"]');
    assert.equal(profile.querySelector('[data-field="error"]').textContent, "no variable 'x'");
    assert.equal(profile.querySelector('[data-field="url"]').textContent, '(not rendered)');
  });

  test('an error answer shows the tabs too', async () => {
    const page = await openConsole(composite(COMPOSITE_DEBUG, null, 502));
    pick(page, 'auth-and-fetch-user');
    page.$('#execute').click();
    await settle();
    assert.match(page.$('#status').textContent, /502/);
    assert.deepEqual(page.$$('#waterfall .wf-tab').map((t) => t.getAttribute('data-step')), ['auth', 'fetch-user']);
  });

  test('simple connector: the one request belongs to the http_request row', async () => {
    const page = await openConsole((url) => (url.startsWith('/connectors/get-item/')
      ? json({ id: 'itm_042' }, 200, { 'X-Connector-Timing': JSON.stringify(SIMPLE_TIMING), 'X-Debug-Request': JSON.stringify(SIMPLE_DEBUG) })
      : null));
    pick(page, 'get-item');
    page.$('#execute').click();
    await settle();
    const tabs = page.$$('#waterfall .wf-tab');
    assert.deepEqual(tabs.map((t) => t.getAttribute('data-step')), ['http_request']);
    tabs[0].click();
    const panel = page.$('#waterfall .wf-request[data-step="http_request"]');
    assert.equal(panel.hidden, false);
    assert.equal(panel.querySelector('[data-field="url"]').textContent, 'https://api.example/items/itm_042');
    assert.match(panel.querySelector('[data-field="authentication"]').textContent, /\{\{ get_secret\('api_key'\) \}\}/);
    assert.equal(panel.querySelectorAll('h4').length, 0, 'one call: no item headings');
  });

  test('without the header nothing changes; a header that is not JSON is noted, without tabs', async () => {
    const plainPage = await openConsole();
    pick(plainPage, 'auth-and-fetch-user');
    plainPage.$('#execute').click();
    await settle();
    assert.equal(plainPage.$$('#waterfall .wf-tab').length, 0);
    assert.equal(plainPage.$$('#waterfall .wf-request').length, 0);
    assert.equal(plainPage.$$('#waterfall .wf-debug-note').length, 0);
    const cut = await openConsole(composite('{"steps":[{"step":"auth","url":"https://a...[cut]'));
    pick(cut, 'auth-and-fetch-user');
    cut.$('#execute').click();
    await settle();
    assert.equal(cut.$$('#waterfall .wf-tab').length, 0);
    assert.match(cut.$('#waterfall .wf-debug-note').textContent, /not JSON \(cut at its size limit\)/);
    // The next run without the header forgets the previous one's.
    const page = await openConsole((url, init) => (url.startsWith('/connectors/composite/') && init.body === '{"n":1}' ? composite(COMPOSITE_DEBUG)(url) : null));
    pick(page, 'auth-and-fetch-user');
    page.$('#payload').value = '{"n":1}';
    page.$('#payload').dispatch('input');
    page.$('#execute').click();
    await settle();
    assert.equal(page.$$('#waterfall .wf-tab').length, 2);
    page.$('#payload').value = '{"n":2}';
    page.$('#payload').dispatch('input');
    page.$('#execute').click();
    await settle();
    assert.equal(page.$$('#waterfall .wf-tab').length, 0);
  });

  test('debugRequests: composite by step (items in order), simple under http_request, null without', async () => {
    const page = await openConsole();
    const { debugRequests } = page.ctx.ConnectorConsole;
    assert.equal(debugRequests(null), null);
    assert.equal(debugRequests(''), null);
    const chain = debugRequests(JSON.stringify(DEBUG_CHAIN));
    assert.deepEqual(plain(Object.keys(chain.byStep)), ['details', 'token', 'profile']);
    assert.deepEqual(plain(chain.byStep.details.map((e) => e.item)), [0, 1]);
    assert.equal(debugRequests(JSON.stringify(SIMPLE_DEBUG)).byStep.http_request[0].method, 'GET');
    assert.equal(debugRequests('[1]').ok, false);
    assert.equal(debugRequests('{').ok, false);
  });
});

describe('console: the member token (Authorization: Bearer)', () => {
  const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtZW1iZXItNyJ9.c2lnLXZhbHVl';

  /** Every text and attribute value in the page (its output and log areas included). */
  function pageStrings(page) {
    const out = [];
    const walk = (node) => {
      if (node.nodeType === 3) {
        out.push(node.data);
        return;
      }
      if (node.attributes) for (const v of node.attributes.values()) out.push(v);
      for (const child of node.childNodes || []) walk(child);
    };
    walk(page.document);
    return out;
  }

  function assertNotShown(page, secret) {
    for (const text of pageStrings(page)) assert.ok(!text.includes(secret), 'the token is shown in the page: ' + text.slice(0, 200));
    assert.ok(!String(page.ctx.location.hash).includes(secret), 'the token is in the URL');
    assert.deepEqual(page.storageWrites, [], 'nothing may be written to Web Storage');
  }

  test('a labelled password field with a show toggle, not persisted anywhere', async () => {
    assert.doesNotMatch(HTML, /localStorage|sessionStorage|document\.cookie/);
    const page = await openConsole();
    const input = page.$('#session-token');
    assert.equal(input.localName, 'input');
    assert.equal(input.getAttribute('type'), 'password');
    assert.equal(input.getAttribute('autocomplete'), 'off');
    assert.match(page.$('label[for="session-token"]').textContent, /Member token \(JWT\) — sent as Authorization: Bearer/);
    const toggle = page.$('#session-token-toggle');
    assert.equal(toggle.getAttribute('aria-controls'), 'session-token');
    assert.equal(toggle.getAttribute('aria-pressed'), 'false');
    toggle.click();
    assert.equal(input.getAttribute('type'), 'text');
    assert.equal(toggle.getAttribute('aria-pressed'), 'true');
    assert.equal(toggle.textContent, 'Hide');
    toggle.click();
    assert.equal(input.getAttribute('type'), 'password');
    assert.equal(toggle.textContent, 'Show');
  });

  test('filled in: every run sends Authorization: Bearer <token> (trimmed), simple and composite; the token is never shown', async () => {
    const page = await openConsole();
    page.$('#session-token').value = '  ' + JWT + '\n';
    pick(page, 'get-item');
    page.$('#execute').click();
    await settle();
    pick(page, 'auth-and-fetch-user');
    assert.equal(page.$('#session-token').value.trim(), JWT, 'choosing another connector keeps the token');
    page.$('#execute').click();
    await settle();
    page.$('#execute').click();
    await settle();
    const runs = page.calls.slice(1);
    assert.deepEqual(runs.map((c) => c.url), ['/connectors/get-item/execute', '/connectors/composite/auth-and-fetch-user/execute', '/connectors/composite/auth-and-fetch-user/execute']);
    for (const call of runs) assert.equal(call.init.headers.Authorization, 'Bearer ' + JWT);
    assert.equal(runs[0].init.credentials, 'same-origin');
    assert.equal(page.calls[0].init.headers.Authorization, undefined, 'the connector list does not carry it');
    assert.equal(page.$('#status').textContent, '200');
    assertNotShown(page, JWT);
  });

  test('empty (or blank) sends no Authorization header; clearing it stops sending it', async () => {
    const page = await openConsole();
    pick(page, 'create-item');
    page.$('#execute').click();
    await settle();
    page.$('#session-token').value = '   ';
    page.$('#execute').click();
    await settle();
    page.$('#session-token').value = JWT;
    page.$('#execute').click();
    await settle();
    page.$('#session-token').value = '';
    page.$('#execute').click();
    await settle();
    const auth = page.calls.slice(1).map((c) => Object.keys(c.init.headers).find((k) => k.toLowerCase() === 'authorization'));
    assert.deepEqual(auth, [undefined, undefined, 'Authorization', undefined]);
  });

  test('an unusable token (inner whitespace) is refused by the SDK: not sent, reason shown, token not shown', async () => {
    const page = await openConsole();
    page.$('#session-token').value = 'not a-token ' + JWT;
    pick(page, 'get-item');
    page.$('#execute').click();
    await settle();
    assert.equal(page.calls.length, 1, 'only the list request');
    assert.equal(page.$('#status').textContent, 'Not sent');
    const box = page.$('#client-error');
    assert.equal(box.hidden, false);
    assert.equal(box.getAttribute('data-reason'), 'INVALID_SESSION_TOKEN');
    assert.equal(page.$('#execute').disabled, false, 'can run again');
    assertNotShown(page, JWT);
  });

  test('a 401 IDENTITY_INVALID is shown as an envelope, without the token', async () => {
    const envelope = { success: false, errors: { code: 'IDENTITY_INVALID', detail: 'the token has expired', scope: null, params: [] }, request_id: 'req-i' };
    const page = await openConsole((url) => (url.startsWith('/connectors/') ? json(envelope, 401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' }) : null));
    page.$('#session-token').value = JWT;
    pick(page, 'get-item');
    page.$('#execute').click();
    await settle();
    assert.equal(page.calls[1].init.headers.Authorization, 'Bearer ' + JWT);
    assert.match(page.$('#status').textContent, /401 IDENTITY_INVALID/);
    assert.equal(page.$('#error-envelope').getAttribute('data-code'), 'IDENTITY_INVALID');
    assertNotShown(page, JWT);
  });
});
