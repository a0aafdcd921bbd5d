// The SDK tests' world: the real runtime serving a registry of "echo" connectors whose
// upstream is a recording Node server (testlib/runtime.mjs), so a test sees what the SDK put on
// the wire as the runtime passed it on:
//
// - every header the tests use is declared `overridable` with the default `absent`, so the
//   caller's value (the SDK's) reaches the upstream as sent — X-Path-Params and X-CSRF-Token
//   included — and `absent` means the SDK sent none;
// - a simple connector's POST/PUT/PATCH body (blank `request_body`) goes upstream unchanged,
//   with the caller's Content-Type (docs/spec.md §15);
// - the composite `c` sends upstream `{"query": request.query_parameters, "body": body_text,
//   "content_type": ...}`.
//
// Permalinks: `p` (GET), `p-post`, `p-put`, `p-patch`, `p-delete`, `p-head`, `p-options`, the
// composite `c`, `answer` (answers what its query asks: testlib/runtime.mjs `/answer`) and
// `slow` (upstream `/hang`, with a 300 ms step timeout on the runtime when asked).

import { WidgetServiceSDK } from '../connectors-sdk.mjs';
import { binary, startRuntime, startUpstream } from './runtime.mjs';

export const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

/** Header names the echo connectors pass on (any case works on the wire). */
export const ECHO_HEADERS = [
  'X-Path-Params', 'X-CSRF-Token', 'Authorization', 'Content-Type', 'X-Tenant', 'X-App', 'X-Extra',
  'X-Once', 'X-Other', 'X-A', 'X-B', 'X-C', 'X-N', 'X-Big',
];
/** Query keys the simple echo connectors pass on (the composite `c` sees every key). */
export const ECHO_QUERY = ['q', 'page', 'empty', 'ké y', 'a', 'b', 'lang'];

const ABSENT = 'absent';
const base = "{{ get_variable('upstream') }}";

/** The permalink of the simple echo connector for `method`. */
export function echo(method) {
  return method.toUpperCase() === 'GET' ? 'p' : 'p-' + method.toLowerCase();
}

export function echoRegistry() {
  const headers = ECHO_HEADERS.map((key) => ({ key, value: ABSENT, overridable: true }));
  const query = ECHO_QUERY.map((key) => ({ key, value: ABSENT, overridable: true }));
  const simple = METHODS.map((method) => ({
    name: 'echo ' + method.toLowerCase(),
    permalink: echo(method),
    method,
    url: base + '/echo/{{ pathParams.item_id }}',
    path_parameters: [{ key: 'item_id', value: 'none' }],
    headers,
    query_parameters: query,
  }));
  simple.push({
    name: 'answer',
    permalink: 'answer',
    url: base + '/answer',
    query_parameters: ['status', 'type', 'body', 'delay_ms'].map((key) => ({ key, value: '', overridable: true })),
  });
  simple.push({ name: 'slow', permalink: 'slow', url: base + '/hang' });
  return {
    connectors: simple,
    composite_connectors: [
      {
        name: 'echo composite',
        permalink: 'c',
        steps: [
          {
            name: 'echo',
            method: 'POST',
            url: base + '/echo-composite',
            headers,
            request_body:
              '{"query": {{ request.query_parameters | tojson }}, "body": {{ request.body_text | tojson }}, "content_type": {{ request.headers["Content-Type"] | default(none) | tojson }}}',
          },
        ],
      },
    ],
  };
}

/**
 * Starts the upstream and the runtime; `{runtime, upstream, stop()}`. `args` go to `serve`
 * (e.g. `--step-timeout-ms`).
 */
export async function startEcho({ args = [], registry = echoRegistry() } = {}) {
  binary(); // fails first, saying how to build it
  const upstream = await startUpstream();
  let runtime;
  try {
    runtime = await startRuntime({ registry, variables: { upstream: upstream.url }, args });
  } catch (e) {
    await upstream.stop();
    throw e;
  }
  return {
    runtime,
    upstream,
    async stop() {
      await runtime.stop();
      await upstream.stop();
    },
  };
}

/**
 * A fetch that records each call's URL and init (what the SDK asked for: method, credentials,
 * signal, headers) in `calls` and passes it to Node's own fetch unchanged.
 */
export function recordingFetch() {
  const calls = [];
  const fn = (url, init) => {
    calls.push({ url, init, headers: { ...(init && init.headers) } });
    return globalThis.fetch(url, init);
  };
  fn.calls = calls;
  return fn;
}

/**
 * A new SDK on the echo world's runtime (`baseUrl` = the runtime) with a recording fetch:
 * `{sdk, calls, up}`; `up.requests` (emptied here) is what the upstream got, `up.last()` the last.
 */
export function makeSetup(world) {
  return (options = {}) => {
    world.upstream.reset();
    const fetch = recordingFetch();
    const sdk = new WidgetServiceSDK({ baseUrl: world.runtime.url, fetch, ...options });
    return { sdk, calls: fetch.calls, up: world.upstream };
  };
}

/** The value of header `name` the upstream got, undefined when the SDK sent none. */
export function seenHeader(record, name) {
  const v = record.headers[name.toLowerCase()];
  return v === ABSENT ? undefined : v;
}

/** The query the upstream got, as an object, without the keys the SDK did not send. */
export function seenQuery(record) {
  return Object.fromEntries(record.query.filter(([, v]) => v !== ABSENT));
}

/** Header lookup by case-insensitive name in a recorded fetch call (what the SDK asked fetch for). */
export function header(call, name) {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(call.init.headers || {})) {
    if (k.toLowerCase() === lower) return v;
  }
  return undefined;
}

/** The error thrown synchronously by fn (fails if none). */
export function syncThrow(fn) {
  let result;
  try {
    result = fn();
  } catch (e) {
    return e;
  }
  if (result && typeof result.catch === 'function') result.catch(() => {});
  throw new Error('expected a synchronous throw, got ' + (result && typeof result.then === 'function' ? 'a promise' : String(result)));
}

/** The rejection of `promise` (fails if it resolves). */
export async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}
