// The SDK in a page (jsdom, with Node's own fetch against the real runtime): the CSRF token read
// from the page's #csrftoken element at each call (docs/spec.md §15), and same-origin calls.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as mod from '../connectors-sdk.mjs';
import { startEcho, seenHeader, syncThrow } from '../testlib/echo.mjs';
import { openPage } from '../testlib/dom.mjs';

let world;
before(async () => {
  world = await startEcho();
});
after(() => world && world.stop());

/** A widget page on the runtime's origin that loads the UMD build as a classic script. */
async function widgetPage(body = '') {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>widget</title></head><body>${body}
<script src="/sdk/connectors-sdk.js"></script></body></html>`;
  const page = await openPage(html, { url: world.runtime.url + '/widget.html' });
  assert.equal(typeof page.window.WidgetServiceSDK, 'function', 'the classic script defined window.WidgetServiceSDK');
  return page;
}

/** What the upstream got as X-CSRF-Token for one call made by `run()`. */
async function csrfSent(run) {
  world.upstream.reset();
  await run();
  assert.equal(world.upstream.requests.length, 1);
  return seenHeader(world.upstream.last(), 'X-CSRF-Token');
}

describe('csrfToken from the page (#csrftoken) when none is configured', () => {
  test('<meta id="csrftoken" content="..."> goes in X-CSRF-Token, simple and composite', async () => {
    const page = await widgetPage('<meta id="csrftoken" content="meta-tok-1">');
    try {
      const sdk = new page.window.WidgetServiceSDK({ baseUrl: world.runtime.url });
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'meta-tok-1');
      assert.equal(await csrfSent(() => sdk.connectors.composite.execute({ permalink: 'c' })), 'meta-tok-1');
      assert.deepEqual({ ...sdk.getHeaders() }, { 'X-CSRF-Token': 'meta-tok-1' });
    } finally {
      page.close();
    }
  });

  test('<input id="csrftoken" value="...">: its current value, read at each call', async () => {
    const page = await widgetPage('<form><input type="hidden" id="csrftoken" name="csrfmiddlewaretoken" value="input-tok-1"></form>');
    try {
      const sdk = page.window.WidgetServiceSDK.defaultInstance;
      sdk.configure({ baseUrl: world.runtime.url });
      assert.equal(await csrfSent(() => page.window.WidgetServiceSDK.connectors.execute({ permalink: 'p', method: 'GET' })), 'input-tok-1');
      page.document.getElementById('csrftoken').value = 'input-tok-2';
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'input-tok-2');
    } finally {
      page.close();
    }
  });

  test('read at request time: an element the page adds later is used, one it removes is not', async () => {
    const page = await widgetPage();
    try {
      const sdk = new page.window.WidgetServiceSDK({ baseUrl: world.runtime.url });
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), undefined, 'no element yet: no header');
      const meta = page.document.createElement('meta');
      meta.id = 'csrftoken';
      meta.setAttribute('content', 'late-tok');
      page.document.head.appendChild(meta);
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'late-tok');
      meta.setAttribute('content', 'rotated-tok');
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'rotated-tok');
      meta.remove();
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), undefined);
    } finally {
      page.close();
    }
  });

  test('a configured csrfToken wins; configure({csrfToken: null}) falls back to the page again', async () => {
    const page = await widgetPage('<meta id="csrftoken" content="page-tok">');
    try {
      const sdk = new page.window.WidgetServiceSDK({ baseUrl: world.runtime.url, csrfToken: 'configured-tok' });
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'configured-tok');
      assert.equal(sdk.getHeaders()['X-CSRF-Token'], 'configured-tok');
      sdk.configure({ csrfToken: null });
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'page-tok');
    } finally {
      page.close();
    }
  });

  test('a call header X-CSRF-Token still wins over the page token', async () => {
    const page = await widgetPage('<meta id="csrftoken" content="page-tok">');
    try {
      const sdk = new page.window.WidgetServiceSDK({ baseUrl: world.runtime.url });
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET', headers: { 'x-csrf-token': 'call' } })), 'call');
    } finally {
      page.close();
    }
  });

  test('trimmed; empty (or only spaces) means none; content wins over value', async () => {
    const page = await widgetPage('<meta id="csrftoken" content="  spaced-tok \n">');
    try {
      const sdk = new page.window.WidgetServiceSDK({ baseUrl: world.runtime.url });
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'spaced-tok');
      page.document.getElementById('csrftoken').setAttribute('content', '   ');
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), undefined);
      page.document.getElementById('csrftoken').remove();
      page.document.body.insertAdjacentHTML('beforeend', '<input id="csrftoken" value="v-tok" content="c-tok">');
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'c-tok');
    } finally {
      page.close();
    }
  });

  test('a page token a header cannot carry → INVALID_CSRF_TOKEN, synchronously, nothing sent', async () => {
    const page = await widgetPage('<meta id="csrftoken" content="snow ☃">');
    try {
      const sdk = new page.window.WidgetServiceSDK({ baseUrl: world.runtime.url });
      const err = syncThrow(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' }));
      assert.ok(err instanceof page.window.ConnectorBoundaryError);
      assert.equal(err.reason, 'INVALID_CSRF_TOKEN');
      assert.equal(err.field, 'csrfToken');
      assert.match(err.message, /#csrftoken/);
      page.document.getElementById('csrftoken').setAttribute('content', 'x'.repeat(4097));
      assert.equal(syncThrow(() => sdk.connectors.composite.execute({ permalink: 'c' })).reason, 'HEADER_TOO_LONG');
      assert.equal(page.calls.length, 0);
    } finally {
      page.close();
    }
  });

  test('the ES module reads the same element (a document in globalThis)', async () => {
    const page = await widgetPage('<meta id="csrftoken" content="esm-tok">');
    const had = 'document' in globalThis;
    globalThis.document = page.document;
    try {
      const sdk = new mod.WidgetServiceSDK({ baseUrl: world.runtime.url });
      assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), 'esm-tok');
      assert.equal(mod.getHeaders()['X-CSRF-Token'], 'esm-tok', 'the default instance too');
    } finally {
      if (!had) delete globalThis.document;
      page.close();
    }
  });

  test('without a document (Node, a worker) there is no page token', async () => {
    assert.equal(typeof globalThis.document, 'undefined');
    const sdk = new mod.WidgetServiceSDK({ baseUrl: world.runtime.url });
    assert.equal(await csrfSent(() => sdk.connectors.execute({ permalink: 'p', method: 'GET' })), undefined);
  });
});

describe('a page on the runtime origin', () => {
  test("baseUrl '' calls the page's own origin (relative URLs, as a browser resolves them)", async () => {
    const page = await widgetPage('<meta id="csrftoken" content="same-origin-tok">');
    try {
      world.upstream.reset();
      const sdk = new page.window.WidgetServiceSDK();
      assert.equal(sdk.getBaseUrl(), '');
      const meta = await sdk.connectors.executeWithMeta({ permalink: 'p', method: 'GET', pathParams: { item_id: 'itm_1' } });
      assert.equal(page.calls.at(-1).url, '/connectors/p/execute');
      assert.equal(page.calls.at(-1).resolved, world.runtime.url + '/connectors/p/execute');
      assert.equal(meta.status, 200);
      assert.equal(meta.data.path, '/echo/itm_1');
      assert.equal(seenHeader(world.upstream.last(), 'X-CSRF-Token'), 'same-origin-tok');
    } finally {
      page.close();
    }
  });

  test("the page's AbortSignal aborts a call", async () => {
    const page = await widgetPage();
    try {
      const sdk = new page.window.WidgetServiceSDK();
      const controller = new page.window.AbortController();
      const pending = sdk.connectors.execute({ permalink: 'slow', method: 'GET', signal: controller.signal });
      setTimeout(() => controller.abort(), 30);
      await assert.rejects(pending, (e) => e.aborted === true);
    } finally {
      page.close();
    }
  });
});
