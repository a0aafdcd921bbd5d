// Shared test helpers: a fake fetch that records every call and answers with a canned Response.
import { WidgetServiceSDK } from '../connectors-sdk.mjs';

/** JSON response with optional extra headers. */
export function jsonResponse(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

/** A fake fetch; `responder(url, init, call)` returns a Response (or throws / rejects). */
export function fakeFetch(responder) {
  const calls = [];
  const fn = async (url, init) => {
    const call = { url, init, headers: { ...(init && init.headers) } };
    calls.push(call);
    if (!responder) return jsonResponse({ ok: true });
    return responder(url, init, call);
  };
  fn.calls = calls;
  return fn;
}

/** A new SDK wired to a new fake fetch. */
export function setup(responder, options = {}) {
  const fetch = fakeFetch(responder);
  const sdk = new WidgetServiceSDK({ fetch, ...options });
  return { sdk, fetch, calls: fetch.calls };
}

/** Header lookup by case-insensitive name in a recorded call. */
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
