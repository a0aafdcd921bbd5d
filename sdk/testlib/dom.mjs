// A page in jsdom (a DOM from npm, sdk/README.md "Tests" says why) whose fetch is Node's own,
// as a browser's would be: relative URLs resolve against the page's URL and the page's
// AbortSignal aborts the request. `<script src="/sdk/connectors-sdk.js">` gets this working
// tree's UMD build (not the copy compiled into the binary), so the tests test the files on disk.

import { readFileSync } from 'node:fs';
import { JSDOM, VirtualConsole, requestInterceptor } from 'jsdom';
import { UMD_PATH } from '../build.mjs';

/** A Node AbortSignal that follows the page's (jsdom's) one. */
function nodeSignal(signal) {
  if (!signal) return undefined;
  const controller = new AbortController();
  if (signal.aborted) controller.abort(signal.reason);
  else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  return controller.signal;
}

/**
 * Opens `html` at `url` with its scripts run; resolves once it has loaded with
 * `{window, document, calls, errors, logs, close()}`. `calls` lists every fetch the page made
 * (`{url, resolved, init, response}`), in order; `errors` what its scripts threw later.
 */
export async function openPage(html, { url }) {
  const calls = [];
  // Errors of the page's scripts fail the test; its console.* output is kept in `logs`.
  const errors = [];
  const logs = [];
  const virtualConsole = new VirtualConsole();
  virtualConsole.on('jsdomError', (e) => errors.push(e));
  for (const level of ['log', 'info', 'warn', 'error']) virtualConsole.on(level, (...a) => logs.push([level, ...a]));
  const dom = new JSDOM(html, {
    url,
    virtualConsole,
    runScripts: 'dangerously',
    resources: {
      interceptors: [
        requestInterceptor((request) => {
          if (new URL(request.url).pathname === '/sdk/connectors-sdk.js') {
            return new Response(readFileSync(UMD_PATH), { headers: { 'Content-Type': 'text/javascript; charset=utf-8' } });
          }
          return undefined;
        }),
      ],
    },
    beforeParse(window) {
      window.fetch = (input, init) => {
        const resolved = new URL(String(input), window.location.href).href;
        const call = { url: String(input), resolved, init: init || {}, response: null };
        calls.push(call);
        const options = init ? { ...init, signal: nodeSignal(init.signal) } : undefined;
        return globalThis.fetch(resolved, options).then((response) => {
          call.response = response;
          return response;
        });
      };
    },
  });
  const { window } = dom;
  if (window.document.readyState !== 'complete') {
    await new Promise((resolve) => window.addEventListener('load', resolve, { once: true }));
  }
  if (errors.length) {
    window.close();
    throw errors[0];
  }
  return { dom, window, document: window.document, calls, errors, logs, close: () => window.close() };
}
