// console/index.html (loaded from disk, as the page is): self-contained (no external
// resources), and its script driven end to end in jsdom through the UMD SDK build, with Node's
// own fetch against the real runtime (release binary: `serve --console --debug-requests`,
// identity on with the demo key) and a recording upstream on 127.0.0.1. The pure helpers
// (waterfallModel, debugRequests, ...) are also checked on fixed timings, where exact layout
// numbers can be asserted.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';
import { openPage } from '../testlib/dom.mjs';
import { binary, startRuntime, startUpstream, demoToken, DEMO_IDENTITY_ARGS, waitFor } from '../testlib/runtime.mjs';

const HTML = readFileSync(new URL('../../console/index.html', import.meta.url), 'utf8');
const base = "{{ get_variable('upstream') }}";
const SECRETS = { api_key: 'console-api-key-1', client_secret: 'console-client-secret-1' };

/** The registry the console lists (in this order). */
function consoleRegistry() {
  return {
    connectors: [
      {
        name: 'Get item', permalink: 'get-item', url: base + '/items/{{ pathParams.item_id }}',
        path_parameters: [{ key: 'item_id' }],
        headers: [{ key: 'Accept', value: 'application/json' }],
        authentication: { type: 'api_key', config: { key: 'X-Api-Key', value: "{{ get_secret('api_key') }}", in: 'header' } },
      },
      { name: 'Create item', permalink: 'create-item', method: 'POST', url: base + '/echo' },
    ],
    composite_connectors: [
      {
        name: 'Auth and fetch user', permalink: 'auth-and-fetch-user',
        steps: [
          {
            name: 'auth', method: 'POST', url: base + '/oauth/token',
            headers: [{ key: 'Content-Type', value: 'application/json' }, { key: 'X-Client-Secret', value: "{{ get_secret('client_secret') }}" }],
            request_body: '{"grant": "<b>x</b>", "user": {{ request.body_text | default("null", true) | from_json | tojson }}}',
          },
          {
            name: 'fetch-user', url: base + '/users/u1',
            headers: [
              { key: 'Accept', value: 'application/json' },
              { key: 'X-Note', value: '<img src=x onerror=alert(1)>' },
              { key: 'Authorization', value: "Bearer {{ steps.auth.body | from_json | attr('access_token') }}" },
            ],
            query_parameters: [{ key: 'lang', value: "{{ request.query_parameters.lang | default('en', true) }}" }],
          },
        ],
      },
      {
        name: 'Broken chain', permalink: 'broken-chain',
        steps: [
          { name: 'auth', method: 'POST', url: base + '/oauth/token' },
          { name: 'fetch-user', url: base + '/answer?status=404' },
        ],
      },
      {
        // Chain control (docs/spec.md §12): parallel, a skipped step, one that continues after
        // an error (after 2 attempts), a for_each step of 3 items, 2 at a time.
        name: 'Member dashboard', permalink: 'member-dashboard', execution: 'parallel',
        steps: [
          { name: 'token', method: 'POST', url: base + '/delay/20' },
          { name: 'catalog', url: base + '/delay/60' },
          { name: 'profile', url: base + "/delay/30?t={{ steps.token.status_code }}" },
          { name: 'offers', when: 'false', url: base + '/echo' },
          { name: 'audit', url: base + '/answer?status=503', depends_on: ['profile'], retry: { attempts: 2, backoff_ms: 10, retry_on: [503] }, on_error: 'continue' },
          { name: 'details', for_each: '[1, 2, 3]', max_concurrency: 2, depends_on: ['catalog'], url: base + '/delay/25?i={{ item }}' },
        ],
        response_body: '{"ok": true}',
        response_content_type: 'application/json',
      },
      {
        // Each step's request_body is cut in the debug header, but two of them pass its 16 KiB.
        name: 'Echo twice', permalink: 'echo-twice',
        steps: ['a', 'b'].map((name) => ({ name, method: 'POST', url: base + '/echo', request_body: '{{ request.body_text }}' })),
      },
      {
        name: 'Render fails', permalink: 'render-fails',
        steps: [
          { name: 'token', method: 'POST', url: base + '/oauth/token' },
          { name: 'profile', url: base + "/users/{{ steps.token.body | from_json | attr('no_such_key') }}" },
        ],
      },
    ],
  };
}
const PERMALINKS = ['get-item', 'create-item', 'auth-and-fetch-user', 'broken-chain', 'member-dashboard', 'echo-twice', 'render-fails'];

/** The upstream's answers: a token endpoint, a user, items (`text` answers plain text), delays. */
function upstreamHandler(record, req, res) {
  const json = (body) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (record.path === '/oauth/token') return json({ access_token: 'tok-1', token_type: 'Bearer' });
  if (record.path === '/users/u1') return json({ user: 'u1', tags: ['a'] });
  if (record.path === '/items/text') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return res.end('plain words');
  }
  if (record.path.startsWith('/items/')) return json({ id: record.path.slice('/items/'.length) });
  const delay = /^\/delay\/(\d+)$/.exec(record.path);
  if (delay) return setTimeout(() => json({ waited: Number(delay[1]) }), Number(delay[1]));
  return false;
}

let upstream;
let runtime;
let plainRuntime; // without --debug-requests
let member; // a member token the runtime accepts
before(async () => {
  binary();
  upstream = await startUpstream(upstreamHandler);
  const common = { registry: consoleRegistry(), variables: { upstream: upstream.url }, secrets: SECRETS };
  runtime = await startRuntime({ ...common, args: ['--console', '--debug-requests', ...DEMO_IDENTITY_ARGS] });
  plainRuntime = await startRuntime({ ...common, args: ['--console'] });
  member = await demoToken('member-console-7');
});
after(async () => {
  for (const s of [runtime, plainRuntime, upstream]) if (s) await s.stop();
});

const pages = [];
after(() => pages.forEach((p) => p.close()));

/** Opens the console (console/index.html from disk) as served at `origin`/console; waits for its list. */
async function openConsole(origin = runtime.url) {
  const page = await openPage(HTML, { url: origin + '/console' });
  pages.push(page);
  page.$ = (sel) => page.document.querySelector(sel);
  page.$$ = (sel) => [...page.document.querySelectorAll(sel)];
  await waitFor(() => page.$$('#connector-list li').length > 0 || /Could not/.test(page.$('#list-message').textContent), 10000, 'the connector list');
  return page;
}

/** Clicks Execute and waits for the run to finish (or be refused). */
async function run(page) {
  const before = page.calls.length;
  page.$('#execute').click();
  await waitFor(() => page.$('#status').textContent !== 'Running…' && !page.$('form').hasAttribute('aria-busy'), 10000, 'the run');
  return page.calls.length > before ? page.calls[page.calls.length - 1] : null;
}

function pick(page, permalink) {
  page.$('#connector-list li[data-permalink="' + permalink + '"] button').click();
}

function rows(page, containerId) {
  return page.$$('#' + containerId + ' .row').map((r) => [r.querySelector('.row-key'), r.querySelector('.row-value')]);
}

function input(el, value) {
  el.value = value;
  el.dispatchEvent(new el.ownerDocument.defaultView.Event('input', { bubbles: true }));
}

/** Copies a value out of the page's realm so deepEqual compares structure only. */
function plain(value) {
  return JSON.parse(JSON.stringify(value));
}

/** A waterfall label's text, without its "Request" tab (there when the runtime answered X-Debug-Request). */
function labelText(label) {
  const tab = label.querySelector('.wf-tab');
  return tab ? label.textContent.slice(0, -tab.textContent.length) : label.textContent;
}

/** The X-Connector-Timing the runtime answered `call` with, parsed. */
function timingOf(call) {
  return JSON.parse(call.response.headers.get('X-Connector-Timing'));
}

// Fixed timings for the pure helpers (the runtime's real ones are checked above against the model).
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

describe('console/index.html is self-contained', () => {
  const doc = new JSDOM(HTML).window.document; // parsed, scripts not run
  test('no external resources: only /sdk/connectors-sdk.js is loaded', () => {
    assert.doesNotMatch(HTML, /<(script|link|img|iframe)[^>]+(src|href)="(https?:)?\/\//i);
    assert.doesNotMatch(HTML, /@import|url\(/i);
    assert.deepEqual([...doc.querySelectorAll('script[src]')].map((s) => s.getAttribute('src')), ['/sdk/connectors-sdk.js']);
    assert.equal(doc.querySelectorAll('link[rel~="stylesheet"]').length, 0);
  });
  test('builds the page from text nodes only: no HTML parsing of data', () => {
    assert.doesNotMatch(HTML, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser/);
  });
  test('has the stable ids the brief names', () => {
    for (const id of ['connector-list', 'payload', 'execute', 'status', 'result-body', 'error-envelope', 'waterfall', 'request-id']) {
      assert.ok(doc.getElementById(id), '#' + id);
    }
    assert.equal(doc.getElementById('payload').localName, 'textarea');
    assert.equal(doc.getElementById('execute').localName, 'button');
  });
  test('accessibility basics: lang, title, a label for every form control', () => {
    assert.equal(doc.documentElement.getAttribute('lang'), 'en');
    assert.ok(doc.title.trim().length > 0);
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
    const model = page.window.ConnectorConsole.waterfallModel(COMPOSITE_TIMING);
    assert.deepEqual(plain(model.segments.map((s) => [s.id, s.offset, s.duration, s.status])), [['auth', 0, 120, 200], ['fetch-user', 120, 85, 200]]);
    assert.equal(model.scale, 210);
    assert.ok(Math.abs(model.segments[1].left - (120 / 210) * 100) < 1e-9);
  });
  test('waterfallModel: simple breakdown setup → http_request → transform', async () => {
    const page = await openConsole();
    const model = page.window.ConnectorConsole.waterfallModel(SIMPLE_TIMING, { status: 200 });
    assert.deepEqual(plain(model.segments.map((s) => [s.id, s.offset, s.duration])), [['setup', 0, 3], ['http_request', 3, 15], ['transform', 18, 2]]);
    assert.equal(model.segments[1].detail, 'api.example · 200');
  });
  test('waterfallModel: a failed composite marks the last step; no timing → null', async () => {
    const page = await openConsole();
    const { waterfallModel } = page.window.ConnectorConsole;
    const failed = waterfallModel({ total_ms: 5, steps: [{ name: 'a', duration_ms: 2, status_code: 200 }, { name: 'b', duration_ms: 3, status_code: null }] }, { failed: true });
    assert.deepEqual(plain(failed.segments.map((s) => s.failed)), [false, true]);
    assert.equal(waterfallModel(null), null);
    assert.equal(waterfallModel({ total_ms: 1 }), null);
  });
  test('waterfallModel: chain control steps sit at their start_ms, so parallel steps overlap', async () => {
    const page = await openConsole();
    const model = page.window.ConnectorConsole.waterfallModel(CHAIN_TIMING);
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
    const { waterfallModel } = page.window.ConnectorConsole;
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
    const { parsePayload, rowsToObject } = page.window.ConnectorConsole;
    assert.equal(parsePayload('  ').empty, true);
    assert.equal(parsePayload('{"a":1}').value.a, 1);
    assert.equal(parsePayload('{a:1}').ok, false);
    assert.equal(rowsToObject([{ key: '', value: '' }]), undefined);
    assert.deepEqual({ ...rowsToObject([{ key: ' a ', value: '1' }, { key: '', value: '' }, { key: '', value: 'x' }]) }, { a: '1', '': 'x' });
  });
});

describe('console pure helpers: debugRequests', () => {
  test('debugRequests: composite by step (items in order), simple under http_request, null without', async () => {
    const page = await openConsole();
    const { debugRequests } = page.window.ConnectorConsole;
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

describe('console in a DOM, against the runtime', () => {
  test('lists the loaded connectors from GET /console/api/connectors', async () => {
    const page = await openConsole();
    assert.equal(page.calls[0].url, '/console/api/connectors');
    assert.equal(page.calls[0].response.status, 200);
    const listed = (await (await fetch(runtime.url + '/console/api/connectors')).json()).connectors;
    assert.deepEqual(listed.map((c) => c.permalink).sort(), [...PERMALINKS].sort(), 'the runtime lists the registry');
    const items = page.$$('#connector-list li[data-permalink]');
    assert.deepEqual(items.map((li) => li.getAttribute('data-permalink')), listed.map((c) => c.permalink), 'in the order the runtime gave');
    const kind = (p) => items.find((li) => li.getAttribute('data-permalink') === p).getAttribute('data-kind');
    assert.deepEqual(PERMALINKS.map(kind), ['simple', 'simple', 'composite', 'composite', 'composite', 'composite', 'composite']);
    assert.match(items.find((li) => li.getAttribute('data-permalink') === 'auth-and-fetch-user').textContent, /Auth and fetch user/);
    assert.equal(page.$('#connector-count').textContent, String(PERMALINKS.length));
    assert.equal(page.$('#execute').disabled, true, 'nothing selected yet');
  });

  test('the filter hides connectors that do not match', async () => {
    const page = await openConsole();
    input(page.$('#filter'), 'item');
    const shown = page.$$('#connector-list li').filter((li) => !li.hidden).map((li) => li.getAttribute('data-permalink'));
    assert.deepEqual(shown.sort(), ['create-item', 'get-item']);
  });

  test('composite: executes through the SDK and shows status, request id, body and a waterfall per step', async () => {
    const page = await openConsole();
    pick(page, 'auth-and-fetch-user');
    assert.equal(page.$('#connector-title').textContent, 'Auth and fetch user');
    assert.equal(page.$('#path-group').hidden, true, 'no path params for composites');
    assert.match(page.$('#connector-steps').textContent, /auth → fetch-user/);
    input(page.$('#payload'), '{"user": "u1"}');
    page.$('[data-add="query"]').click();
    const [[key, value]] = rows(page, 'query-rows');
    key.value = 'lang';
    value.value = 'fr';
    upstream.reset();
    const call = await run(page);
    assert.equal(call.url, '/connectors/composite/auth-and-fetch-user/execute?lang=fr');
    assert.equal(call.init.method, 'POST');
    assert.equal(call.init.body, '{"user":"u1"}');
    // The runtime ran both steps with what the console sent.
    assert.deepEqual(upstream.requests.map((r) => r.path), ['/oauth/token', '/users/u1']);
    assert.deepEqual(JSON.parse(upstream.requests[0].body).user, { user: 'u1' });
    assert.deepEqual(upstream.requests[1].query, [['lang', 'fr']]);
    assert.equal(page.$('#status').textContent, '200');
    assert.equal(page.$('#status').className, 'ok');
    assert.equal(page.$('#request-id').textContent, call.response.headers.get('X-Request-ID'));
    assert.deepEqual(JSON.parse(page.$('#result-body').textContent), { user: 'u1', tags: ['a'] });
    assert.match(page.$('#result-body').textContent, /\n {2}"user"/, 'pretty-printed');
    assert.equal(page.$('#error-envelope').hidden, true);
    const timing = timingOf(call);
    const model = page.window.ConnectorConsole.waterfallModel(timing);
    const bars = page.$$('#waterfall .bar[data-step]');
    assert.deepEqual(bars.map((b) => b.getAttribute('data-step')), ['auth', 'fetch-user']);
    assert.deepEqual(bars.map((b) => Number(b.getAttribute('data-offset-ms'))), plain(model.segments.map((s) => s.offset)));
    assert.ok(Number(bars[1].getAttribute('data-offset-ms')) >= Number(bars[0].getAttribute('data-offset-ms')), 'fetch-user after auth');
    // (The page writes toFixed(3) percentages; CSS reads them back normalised, '0.000%' as '0%'.)
    bars.forEach((b, i) => {
      assert.ok(Math.abs(parseFloat(b.style.left) - model.segments[i].left) <= 1e-3, 'left of ' + i);
      assert.ok(Math.abs(parseFloat(b.style.width) - model.segments[i].width) <= 1e-3, 'width of ' + i);
      assert.match(b.style.left, /%$/);
    });
    const labels = page.$$('#waterfall .wf-label').map(labelText);
    assert.deepEqual(labels, timing.steps.map((s) => s.name + ' · 200 · ' + s.duration_ms.toFixed(1) + ' ms'));
    assert.equal(page.$('#execute').disabled, false, 'enabled again after the run');
    assert.equal(page.window.location.hash, '#auth-and-fetch-user');
  });

  test('composite with chain control: bars at start_ms (parallel steps overlap), skipped and continued marked, item sub-bars', async () => {
    const page = await openConsole();
    pick(page, 'member-dashboard');
    const call = await run(page);
    assert.equal(page.$('#status').textContent, '200');
    const timing = timingOf(call);
    const by = Object.fromEntries(timing.steps.map((s) => [s.name, s]));
    const bars = page.$$('#waterfall .bar[data-step]');
    assert.deepEqual(bars.map((b) => b.getAttribute('data-step')), ['token', 'catalog', 'profile', 'offers', 'audit', 'details']);
    assert.deepEqual(bars.map((b) => Number(b.getAttribute('data-offset-ms'))), ['token', 'catalog', 'profile', 'offers', 'audit', 'details'].map((n) => by[n].start_ms));
    assert.deepEqual(bars.map((b) => b.getAttribute('data-state')), ['ok', 'ok', 'ok', 'skipped', 'continued', 'ok']);
    const model = page.window.ConnectorConsole.waterfallModel(timing);
    assert.ok(Math.abs(parseFloat(bars[1].style.left) - model.segments[1].left) <= 1e-3);
    const [token, catalog] = model.segments;
    assert.ok(catalog.left < token.left + token.width, 'catalog starts with token, not after it');
    assert.ok(bars[3].classList.contains('skipped'));
    assert.ok(bars[4].classList.contains('continued'));
    assert.ok(!bars.some((b) => b.classList.contains('failed')));
    const subs = page.$$('#waterfall .wf-row[data-step="details"] .sub-bar');
    assert.deepEqual(subs.map((b) => b.getAttribute('data-item')), ['0', '1', '2']);
    assert.deepEqual(subs.map((b) => Number(b.getAttribute('data-offset-ms'))), by.details.items.map((it) => it.start_ms));
    assert.ok(subs.every((b) => ['0', '1'].includes(b.getAttribute('data-lane'))), 'two items at a time: two lanes');
    assert.equal(page.$$('#waterfall .sub-bar').length, 3, 'only the for_each step has sub-bars');
    const labels = page.$$('#waterfall .wf-label').map(labelText);
    assert.match(labels[3], /^offers · skipped · \d+\.\d ms$/);
    assert.match(labels[4], /^audit · 503 · continued after error · 2 attempts · \d+\.\d ms$/);
    assert.match(labels[5], /^details · 3 items · 200 · \d+\.\d ms$/);
  });

  test('simple GET: path params prefilled and sent in X-Path-Params; payload disabled; breakdown waterfall', async () => {
    const page = await openConsole();
    pick(page, 'get-item');
    assert.equal(page.$('#payload-group').disabled, true);
    assert.equal(page.$('#path-group').hidden, false);
    const pathRows = rows(page, 'path-rows');
    assert.equal(pathRows.length, 1);
    assert.equal(pathRows[0][0].value, 'item_id');
    pathRows[0][1].value = 'itm_042';
    input(page.$('#payload'), 'not json, but GET has no payload');
    assert.equal(page.$('#execute').disabled, false);
    upstream.reset();
    const call = await run(page);
    assert.equal(call.url, '/connectors/get-item/execute');
    assert.equal(call.init.method, 'GET');
    assert.equal(call.init.body, undefined);
    assert.equal(call.init.headers['X-Path-Params'], 'item_id=itm_042');
    assert.equal(upstream.last().path, '/items/itm_042');
    assert.equal(upstream.last().headers['x-api-key'], SECRETS.api_key);
    assert.deepEqual(JSON.parse(page.$('#result-body').textContent), { id: 'itm_042' });
    assert.deepEqual(page.$$('#waterfall .bar[data-step]').map((b) => b.getAttribute('data-step')), ['setup', 'http_request', 'transform']);
    assert.ok(page.$('#waterfall').textContent.includes(new URL(upstream.url).host), 'the upstream host is shown');
    assert.ok(page.$('#waterfall').textContent.includes('Total ' + timingOf(call).total_ms.toFixed(1) + ' ms'));
  });

  test('simple POST: invalid JSON disables Execute and explains why', async () => {
    const page = await openConsole();
    pick(page, 'create-item');
    const payload = page.$('#payload');
    input(payload, '{"name": ');
    assert.equal(page.$('#execute').disabled, true);
    assert.equal(payload.getAttribute('aria-invalid'), 'true');
    assert.match(page.$('#payload-error').textContent, /Invalid JSON/);
    input(payload, '{"name": "x"}');
    assert.equal(page.$('#execute').disabled, false);
    assert.equal(page.$('#payload-error').textContent, '');
    upstream.reset();
    const call = await run(page);
    assert.equal(call.init.method, 'POST');
    assert.equal(call.init.body, '{"name":"x"}');
    assert.equal(call.init.headers['Content-Type'], 'application/json');
    assert.equal(upstream.last().body, '{"name":"x"}', 'the body reached the upstream');
  });

  test('an error envelope is shown with code, scope and detail, and the waterfall marks the failed step', async () => {
    const page = await openConsole();
    pick(page, 'broken-chain');
    const call = await run(page);
    assert.equal(call.response.status, 502);
    const envelope = JSON.parse(page.$('#result-body').textContent);
    assert.equal(page.$('#status').className, 'error');
    assert.match(page.$('#status').textContent, /502 DOWNSTREAM_HTTP_ERROR/);
    assert.equal(page.$('#request-id').textContent, envelope.request_id);
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
    await run(page);
    assert.equal(page.calls.length, 1, 'only the list request');
    assert.equal(page.$('#status').textContent, 'Not sent');
    const box = page.$('#client-error');
    assert.equal(box.hidden, false);
    assert.equal(box.getAttribute('data-reason'), 'EMPTY_KEY');
    assert.equal(page.$('#error-envelope').hidden, true);
  });

  test('a network failure is shown as such (the runtime went away)', async () => {
    const gone = await startRuntime({ registry: consoleRegistry(), variables: { upstream: upstream.url }, secrets: SECRETS, args: ['--console'] });
    const page = await openConsole(gone.url);
    pick(page, 'create-item');
    await gone.stop();
    await run(page);
    assert.equal(page.$('#status').textContent, 'Network error');
    assert.match(page.$('#client-error').textContent, /fetch failed/);
  });

  test('a non-JSON body is shown as text', async () => {
    const page = await openConsole();
    pick(page, 'get-item');
    rows(page, 'path-rows')[0][1].value = 'text';
    await run(page);
    assert.equal(page.$('#status').textContent, '200');
    assert.equal(page.$('#result-body').textContent, 'plain words');
  });

  describe('a server that is not this runtime (a proxy, another origin hiding headers)', () => {
    let standIn;
    let answerList;
    before(async () => {
      standIn = await startUpstream((record, req, res) => {
        if (record.path === '/console/api/connectors') return answerList(res);
        if (record.path === '/connectors/get-item/execute') {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          return res.end('plain words');
        }
        if (record.path === '/connectors/composite/auth-and-fetch-user/execute') {
          // A header cut whole (not JSON any more), then none at all.
          const headers = { 'Content-Type': 'application/json', 'X-Connector-Timing': JSON.stringify(COMPOSITE_TIMING) };
          if (record.body === '{"n":1}') headers['X-Debug-Request'] = '{"steps":[{"step":"auth","url":"https://a...[cut]';
          res.writeHead(200, headers);
          return res.end('{"ok":true}');
        }
        return false;
      });
    });
    after(() => standIn && standIn.stop());

    test('an answer without X-Connector-Timing: the body is shown and the waterfall says why it is empty', async () => {
      const list = await (await fetch(runtime.url + '/console/api/connectors')).text();
      answerList = (res) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(list);
      };
      const page = await openConsole(standIn.url);
      pick(page, 'get-item');
      rows(page, 'path-rows')[0][1].value = 'x';
      await run(page);
      assert.equal(page.$('#result-body').textContent, 'plain words');
      assert.match(page.$('#waterfall').textContent, /No X-Connector-Timing/);
    });
    test('a debug header that is not JSON is noted, without tabs; the next run without one forgets it', async () => {
      const list = await (await fetch(runtime.url + '/console/api/connectors')).text();
      answerList = (res) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(list);
      };
      const page = await openConsole(standIn.url);
      pick(page, 'auth-and-fetch-user');
      input(page.$('#payload'), '{"n":1}');
      await run(page);
      assert.equal(page.$$('#waterfall .wf-tab').length, 0);
      assert.match(page.$('#waterfall .wf-debug-note').textContent, /not JSON \(cut at its size limit\)/);
      input(page.$('#payload'), '{"n":2}');
      await run(page);
      assert.equal(page.$$('#waterfall .wf-debug-note').length, 0);
      assert.equal(page.$$('#waterfall .bar[data-step]').length, 2);
    });
    test('a failing connector list is reported', async () => {
      answerList = (res) => {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('nope');
      };
      const page = await openConsole(standIn.url);
      assert.match(page.$('#list-message').textContent, /Could not load connectors/);
      assert.equal(page.$$('#connector-list li').length, 0);
    });
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

describe('console: X-Debug-Request (a "Request" tab per step), as the runtime answers it', () => {
  test('every run asks for it with X-Debug-Request: 1 (the connector list does not)', async () => {
    const page = await openConsole();
    pick(page, 'get-item');
    rows(page, 'path-rows')[0][1].value = 'itm_1';
    await run(page);
    pick(page, 'auth-and-fetch-user');
    await run(page);
    assert.deepEqual(page.calls.slice(1).map((c) => c.init.headers['X-Debug-Request']), ['1', '1']);
    assert.equal(page.calls[0].init.headers['X-Debug-Request'], undefined);
    assert.ok(page.calls.slice(1).every((c) => c.response.headers.get('X-Debug-Request')), 'the runtime answered it');
  });

  test('composite: each step that ran gets a Request tab with its resolved request, as text (secrets as their template)', async () => {
    const page = await openConsole();
    pick(page, 'auth-and-fetch-user');
    page.$('[data-add="query"]').click();
    const [[key, value]] = rows(page, 'query-rows');
    key.value = 'lang';
    value.value = 'fr';
    await run(page);
    const tabs = page.$$('#waterfall .wf-tab');
    assert.deepEqual(tabs.map((t) => [t.getAttribute('data-step'), t.textContent, t.getAttribute('aria-expanded')]), [['auth', 'Request', 'false'], ['fetch-user', 'Request', 'false']]);
    const panel = page.$('#waterfall .wf-request[data-step="fetch-user"]');
    assert.equal(panel.hidden, true, 'closed until its tab is clicked');
    assert.equal(tabs[1].getAttribute('aria-controls'), panel.id);
    tabs[1].click();
    assert.equal(panel.hidden, false);
    assert.equal(tabs[1].getAttribute('aria-expanded'), 'true');
    const field = (p, name) => p.querySelector('[data-field="' + name + '"]').textContent;
    assert.equal(field(panel, 'method'), 'GET');
    assert.equal(field(panel, 'url'), upstream.url + '/users/u1');
    assert.match(field(panel, 'headers'), /^accept: application\/json$/im);
    assert.match(field(panel, 'headers'), /^x-note: <img src=x onerror=alert\(1\)>$/im);
    assert.match(field(panel, 'headers'), /^authorization: Bearer tok-1$/im);
    assert.equal(field(panel, 'query_parameters'), 'lang: fr');
    assert.equal(field(panel, 'request_body'), '(none)');
    assert.equal(panel.querySelectorAll('img').length, 0, 'markup in the header stays text');
    tabs[1].click();
    assert.equal(panel.hidden, true, 'the tab closes it again');
    tabs[0].click();
    const auth = page.$('#waterfall .wf-request[data-step="auth"]');
    assert.match(field(auth, 'headers'), /^x-client-secret: \{\{ get_secret\('client_secret'\) \}\}$/im, 'a secret shows as its template text');
    assert.ok(!page.document.body.textContent.includes(SECRETS.client_secret), 'never the secret itself');
    const body = field(auth, 'request_body');
    assert.deepEqual(JSON.parse(body), { grant: '<b>x</b>', user: null });
    assert.match(body, /\n {2}"grant"/, 'a JSON body is pretty-printed');
    assert.equal(auth.querySelectorAll('b').length, 0);
    // The panel sits right after its step's row.
    const kids = [...page.$('#waterfall').children];
    const at = kids.indexOf(auth);
    assert.equal(kids[at - 1].getAttribute('data-step'), 'auth');
  });

  test('chain control: a for_each step lists its items in order, a skipped step has no tab', async () => {
    const page = await openConsole();
    pick(page, 'member-dashboard');
    await run(page);
    assert.deepEqual(page.$$('#waterfall .wf-tab').map((t) => t.getAttribute('data-step')).sort(), ['audit', 'catalog', 'details', 'profile', 'token']);
    const details = page.$('#waterfall .wf-request[data-step="details"]');
    assert.deepEqual([...details.querySelectorAll('h4')].map((h) => h.textContent), ['Item 0', 'Item 1', 'Item 2']);
    assert.deepEqual([...details.querySelectorAll('[data-field="url"]')].map((u) => u.textContent), [1, 2, 3].map((i) => upstream.url + '/delay/25?i=' + i));
  });

  test('an error answer shows the tabs of the steps that ran (a step whose template failed did not run)', async () => {
    const page = await openConsole();
    pick(page, 'render-fails');
    await run(page);
    assert.match(page.$('#status').textContent, /422 TEMPLATE_RENDERING_ERROR/);
    assert.deepEqual(page.$$('#waterfall .wf-tab').map((t) => t.getAttribute('data-step')), ['token']);
    assert.equal(page.$('#waterfall .wf-request[data-step="profile"]'), null);
    pick(page, 'broken-chain');
    await run(page);
    assert.match(page.$('#status').textContent, /502/);
    assert.deepEqual(page.$$('#waterfall .wf-tab').map((t) => t.getAttribute('data-step')), ['auth', 'fetch-user']);
  });

  test('simple connector: the one request belongs to the http_request row', async () => {
    const page = await openConsole();
    pick(page, 'get-item');
    rows(page, 'path-rows')[0][1].value = 'itm_042';
    await run(page);
    const tabs = page.$$('#waterfall .wf-tab');
    assert.deepEqual(tabs.map((t) => t.getAttribute('data-step')), ['http_request']);
    tabs[0].click();
    const panel = page.$('#waterfall .wf-request[data-step="http_request"]');
    assert.equal(panel.hidden, false);
    assert.equal(panel.querySelector('[data-field="url"]').textContent, upstream.url + '/items/itm_042');
    assert.match(panel.querySelector('[data-field="authentication"]').textContent, /\{\{ get_secret\('api_key'\) \}\}/);
    assert.equal(panel.querySelectorAll('h4').length, 0, 'one call: no item headings');
  });

  test('long values are cut to keep the header within 16 KiB: the console shows them, marked, as text', async () => {
    const page = await openConsole();
    pick(page, 'echo-twice');
    input(page.$('#payload'), JSON.stringify({ big: 'x'.repeat(20000) }));
    const call = await run(page);
    const header = call.response.headers.get('X-Debug-Request');
    assert.ok(header.length <= 16 * 1024);
    assert.deepEqual(JSON.parse(header).steps.map((st) => st.step), ['a', 'b'], 'still JSON');
    const tabs = page.$$('#waterfall .wf-tab');
    assert.equal(tabs.length, 2);
    tabs[0].click();
    const body = page.$('#waterfall .wf-request[data-step="a"] [data-field="request_body"]').textContent;
    assert.match(body, /\.\.\.\[cut\]/);
    assert.ok(body.length < 16 * 1024);
  });

  test('a runtime without --debug-requests does not answer it: nothing changes, and a run after forgets the previous one', async () => {
    const plainPage = await openConsole(plainRuntime.url);
    pick(plainPage, 'auth-and-fetch-user');
    const call = await run(plainPage);
    assert.equal(call.response.headers.get('X-Debug-Request'), null);
    assert.equal(plainPage.$('#status').textContent, '200');
    assert.equal(plainPage.$$('#waterfall .wf-tab').length, 0);
    assert.equal(plainPage.$$('#waterfall .wf-request').length, 0);
    assert.equal(plainPage.$$('#waterfall .wf-debug-note').length, 0);
    assert.equal(plainPage.$$('#waterfall .bar[data-step]').length, 2, 'the waterfall is drawn as before');
  });
});

describe('console: the member token (Authorization: Bearer), on a runtime with identity', () => {
  const BOGUS = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtZW1iZXItNyJ9.c2lnLXZhbHVl';

  /** Every text and attribute value in the page (its output and log areas included). */
  function pageStrings(page) {
    const out = [];
    const walk = (node) => {
      if (node.nodeType === 3) {
        out.push(node.data);
        return;
      }
      if (node.attributes) for (const a of node.attributes) out.push(a.value);
      for (const child of node.childNodes || []) walk(child);
    };
    walk(page.document);
    return out;
  }

  /** Records every Web Storage write of the page. */
  function watchStorage(page) {
    const writes = [];
    const proto = page.window.Storage.prototype;
    const setItem = proto.setItem;
    proto.setItem = function (k, v) {
      writes.push([k, v]);
      return setItem.call(this, k, v);
    };
    return writes;
  }

  function assertNotShown(page, secret, writes) {
    for (const text of pageStrings(page)) assert.ok(!text.includes(secret), 'the token is shown in the page: ' + text.slice(0, 200));
    assert.ok(!String(page.window.location.href).includes(secret), 'the token is in the URL');
    assert.deepEqual(writes, [], 'nothing may be written to Web Storage');
    assert.equal(page.window.localStorage.length + page.window.sessionStorage.length, 0);
  }

  test('a labelled password field with a show toggle, not persisted anywhere', async () => {
    assert.doesNotMatch(HTML, /localStorage|sessionStorage|document\.cookie/);
    const page = await openConsole();
    const field = page.$('#session-token');
    assert.equal(field.localName, 'input');
    assert.equal(field.getAttribute('type'), 'password');
    assert.equal(field.getAttribute('autocomplete'), 'off');
    assert.match(page.$('label[for="session-token"]').textContent, /Member token \(JWT\) — sent as Authorization: Bearer/);
    const toggle = page.$('#session-token-toggle');
    assert.equal(toggle.getAttribute('aria-controls'), 'session-token');
    assert.equal(toggle.getAttribute('aria-pressed'), 'false');
    toggle.click();
    assert.equal(field.getAttribute('type'), 'text');
    assert.equal(toggle.getAttribute('aria-pressed'), 'true');
    assert.equal(toggle.textContent, 'Hide');
    toggle.click();
    assert.equal(field.getAttribute('type'), 'password');
    assert.equal(toggle.textContent, 'Show');
  });

  test('filled in: every run sends Authorization: Bearer <token> (trimmed), simple and composite; the runtime accepts it; it is never shown', async () => {
    const page = await openConsole();
    const writes = watchStorage(page);
    page.$('#session-token').value = '  ' + member + '\n';
    pick(page, 'get-item');
    rows(page, 'path-rows')[0][1].value = 'itm_7';
    await run(page);
    assert.equal(page.$('#status').textContent, '200');
    pick(page, 'auth-and-fetch-user');
    assert.equal(page.$('#session-token').value.trim(), member, 'choosing another connector keeps the token');
    await run(page);
    await run(page);
    const runs = page.calls.slice(1);
    assert.deepEqual(runs.map((c) => c.url), ['/connectors/get-item/execute', '/connectors/composite/auth-and-fetch-user/execute', '/connectors/composite/auth-and-fetch-user/execute']);
    for (const call of runs) {
      assert.equal(call.init.headers.Authorization, 'Bearer ' + member);
      assert.equal(call.response.status, 200, 'the runtime verified the token');
    }
    assert.equal(runs[0].init.credentials, 'same-origin');
    assert.equal(page.calls[0].init.headers?.Authorization, undefined, 'the connector list does not carry it');
    assert.equal(page.$('#status').textContent, '200');
    assertNotShown(page, member, writes);
  });

  test('empty (or blank) sends no Authorization header; clearing it stops sending it', async () => {
    const page = await openConsole();
    pick(page, 'create-item');
    await run(page);
    page.$('#session-token').value = '   ';
    await run(page);
    page.$('#session-token').value = member;
    await run(page);
    page.$('#session-token').value = '';
    await run(page);
    const auth = page.calls.slice(1).map((c) => Object.keys(c.init.headers).find((k) => k.toLowerCase() === 'authorization'));
    assert.deepEqual(auth, [undefined, undefined, 'Authorization', undefined]);
    assert.deepEqual(page.calls.slice(1).map((c) => c.response.status), [200, 200, 200, 200]);
  });

  test('an unusable token (inner whitespace) is refused by the SDK: not sent, reason shown, token not shown', async () => {
    const page = await openConsole();
    const writes = watchStorage(page);
    page.$('#session-token').value = 'not a-token ' + member;
    pick(page, 'create-item');
    await run(page);
    assert.equal(page.calls.length, 1, 'only the list request');
    assert.equal(page.$('#status').textContent, 'Not sent');
    const box = page.$('#client-error');
    assert.equal(box.hidden, false);
    assert.equal(box.getAttribute('data-reason'), 'INVALID_SESSION_TOKEN');
    assert.equal(page.$('#execute').disabled, false, 'can run again');
    assertNotShown(page, member, writes);
  });

  test('a token the runtime cannot verify: 401 IDENTITY_INVALID shown as an envelope, without the token', async () => {
    const page = await openConsole();
    const writes = watchStorage(page);
    page.$('#session-token').value = BOGUS;
    pick(page, 'create-item');
    const call = await run(page);
    assert.equal(call.init.headers.Authorization, 'Bearer ' + BOGUS);
    assert.equal(call.response.status, 401);
    assert.match(page.$('#status').textContent, /401 IDENTITY_INVALID/);
    assert.equal(page.$('#error-envelope').getAttribute('data-code'), 'IDENTITY_INVALID');
    assertNotShown(page, BOGUS, writes);
  });
});
