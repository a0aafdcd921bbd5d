/*
 * connector-runtime widget SDK (ES module).
 *
 * This file is the single source of truth: `sdk/connectors-sdk.js` (the UMD build: CommonJS
 * `require`, AMD, or a classic script that sets `window.WidgetServiceSDK`) is generated from it
 * by `node sdk/build.mjs`. No dependencies.
 *
 * Routes (see the runtime's README, "HTTP API"):
 *   simple:    <METHOD> {baseUrl}/connectors/{permalink}/execute?{query}   (path params in X-Path-Params)
 *   composite: POST     {baseUrl}/connectors/composite/{permalink}/execute?{query}
 */

/** Version of this SDK. */
const SDK_VERSION = '2.0.0';

/** Default request timeout, in milliseconds. */
const DEFAULT_TIMEOUT_MS = 30000;

/** Longest serialized header value (X-Path-Params or any custom header) the SDK sends. */
const MAX_HEADER_LENGTH = 4096;

/** Methods a simple connector can declare. */
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

/** Methods whose call carries the JSON payload. */
const BODY_METHODS = ['POST', 'PUT', 'PATCH'];

/** The header that carries a simple connector's path parameters. */
const PATH_PARAMS_HEADER = 'X-Path-Params';

/** The header that carries the CSRF token. */
const CSRF_HEADER = 'X-CSRF-Token';

/**
 * Id of the page element the CSRF token is read from when none is configured
 * (`<meta id="csrftoken" content="...">` or `<input id="csrftoken" value="...">`).
 */
const CSRF_ELEMENT_ID = 'csrftoken';

/** The header that carries the session token, as `Bearer <token>`. */
const AUTHORIZATION_HEADER = 'Authorization';

/** Longest session token the SDK sends, in bytes (a token is ASCII, so also in characters). */
const MAX_SESSION_TOKEN_LENGTH = 8192;

/** Stable `ConnectorBoundaryError.reason` codes. */
const BOUNDARY_REASONS = Object.freeze({
  /** `execute` was called without options, or an option has the wrong shape (e.g. `queryParams` is an array). */
  INVALID_OPTIONS: 'INVALID_OPTIONS',
  /** `permalink` is missing, empty or not a string. */
  MISSING_PERMALINK: 'MISSING_PERMALINK',
  /** `pathParams` was passed to `connectors.composite.execute` (composites have no path params). */
  PATH_PARAMS_ON_COMPOSITE: 'PATH_PARAMS_ON_COMPOSITE',
  /** A key of `queryParams`, `pathParams` or `headers` is empty (or not a string). */
  EMPTY_KEY: 'EMPTY_KEY',
  /** A value is not a string or a finite number (or, for a header, contains CR, LF, NUL or a non-Latin-1 character). */
  INVALID_VALUE: 'INVALID_VALUE',
  /** A serialized header (X-Path-Params or a custom header value) is longer than 4096 characters. */
  HEADER_TOO_LONG: 'HEADER_TOO_LONG',
  /** A header name is not a valid HTTP token. */
  INVALID_HEADER_NAME: 'INVALID_HEADER_NAME',
  /** A custom header tries to set X-Path-Params, which the SDK owns. */
  RESERVED_HEADER: 'RESERVED_HEADER',
  /** `method` is missing from `connectors.execute`, empty, or not a string (it is required). */
  MISSING_METHOD: 'MISSING_METHOD',
  /** `method` is a string but not one of GET POST PUT PATCH DELETE HEAD OPTIONS. */
  INVALID_METHOD: 'INVALID_METHOD',
  /** The payload of a POST/PUT/PATCH/composite call cannot be serialized to JSON. */
  INVALID_PAYLOAD: 'INVALID_PAYLOAD',
  /** A timeout is not a positive finite number of milliseconds. */
  INVALID_TIMEOUT: 'INVALID_TIMEOUT',
  /** `baseUrl` is not a string. */
  INVALID_BASE_URL: 'INVALID_BASE_URL',
  /**
   * `csrfToken` is not a string (or null to clear it), or it (or the page's `#csrftoken` element)
   * holds a character a header cannot carry (one longer than 4096 characters is HEADER_TOO_LONG).
   */
  INVALID_CSRF_TOKEN: 'INVALID_CSRF_TOKEN',
  /**
   * The session token is unusable: a `sessionToken` string (or what its function returned) holds
   * whitespace, a control or a non-ASCII character or is longer than 8192 bytes; the function
   * returned something other than a string, null or undefined; or it threw, or its promise rejected.
   * The message never contains the token.
   */
  INVALID_SESSION_TOKEN: 'INVALID_SESSION_TOKEN',
});

const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// CR, LF, NUL, or anything outside Latin-1 cannot travel in a header value.
// eslint-disable-next-line no-control-regex
const BAD_HEADER_VALUE_RE = /[\r\n\0]|[^\u0000-\u00ff]/;
// A bearer token is visible ASCII: no whitespace, no control character, nothing above 0x7e.
const SESSION_TOKEN_RE = /^[\x21-\x7e]+$/;

/**
 * Thrown synchronously, before any request is sent, when a call breaks the SDK's rules.
 * `reason` is one of BOUNDARY_REASONS; `field` names the option (`pathParams`, `headers`, ...);
 * `key` names the offending key when there is one.
 * The one exception is INVALID_SESSION_TOKEN raised while a `sessionToken` function is resolved
 * for a call: that function may be async, so the call's promise rejects with it instead (still
 * before any request is sent).
 */
class ConnectorBoundaryError extends Error {
  constructor(reason, message, details) {
    super(message);
    this.name = 'ConnectorBoundaryError';
    this.reason = reason;
    this.field = details && details.field !== undefined ? details.field : null;
    this.key = details && details.key !== undefined ? details.key : null;
  }
}

/**
 * A connector run that the runtime answered with a non-2xx status.
 * For the runtime's error envelope, `code`/`reason` = `errors.code`, `detail` = `errors.detail`,
 * `failureScope` = `errors.scope`, `params` = `errors.params`, `requestId` = `request_id`.
 * For any other non-2xx answer, `code`/`reason` = `HTTP_<status>` and `body` holds what came back.
 */
class ConnectorExecuteError extends Error {
  constructor(fields) {
    const f = fields || {};
    const code = f.code || (f.status ? 'HTTP_' + f.status : 'UNKNOWN_ERROR');
    const where = f.permalink ? "Connector '" + f.permalink + "'" : 'Connector';
    super(where + ' failed with HTTP ' + f.status + ' ' + code + (f.detail ? ': ' + f.detail : ''));
    this.name = 'ConnectorExecuteError';
    this.code = code;
    this.reason = code;
    this.detail = f.detail !== undefined ? f.detail : null;
    this.failureScope = f.failureScope !== undefined ? f.failureScope : null;
    this.params = Array.isArray(f.params) ? f.params : [];
    this.requestId = f.requestId || null;
    this.status = f.status;
    this.timing = f.timing !== undefined ? f.timing : null;
    this.serverTiming = f.serverTiming || [];
    this.permalink = f.permalink || null;
    this.body = f.body !== undefined ? f.body : null;
  }
}

function boundary(reason, message, field, key) {
  return new ConnectorBoundaryError(reason, message, { field, key });
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** [key, value] pairs of a plain object, a Map, URLSearchParams or Headers. */
function entriesOf(value, field) {
  if (value === undefined || value === null) return [];
  if (!isPlainObject(value)) {
    throw boundary(BOUNDARY_REASONS.INVALID_OPTIONS, field + ' must be an object of key/value pairs', field);
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null && typeof value.entries === 'function') {
    return Array.from(value.entries());
  }
  return Object.keys(value).map((k) => [k, value[k]]);
}

/** Checks one key/value pair and returns the value as a string. */
function checkPair(key, value, field) {
  if (typeof key !== 'string' || key.length === 0) {
    throw boundary(BOUNDARY_REASONS.EMPTY_KEY, field + ' has an empty key', field, key);
  }
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  throw boundary(
    BOUNDARY_REASONS.INVALID_VALUE,
    field + "['" + key + "'] must be a string or a finite number, got " + describe(value),
    field,
    key
  );
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return String(value);
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** Checked, stringified pairs of a query/path params option. */
function checkParams(value, field) {
  return entriesOf(value, field).map(([k, v]) => [k, checkPair(k, v, field)]);
}

/** Checks a header name/value and returns the value as a string. */
function checkHeader(name, value, field) {
  const text = checkPair(name, value, field);
  if (!HEADER_NAME_RE.test(name)) {
    throw boundary(BOUNDARY_REASONS.INVALID_HEADER_NAME, field + ": '" + name + "' is not a valid header name", field, name);
  }
  if (name.toLowerCase() === PATH_PARAMS_HEADER.toLowerCase()) {
    throw boundary(
      BOUNDARY_REASONS.RESERVED_HEADER,
      field + ': ' + PATH_PARAMS_HEADER + ' is set by the SDK from pathParams',
      field,
      name
    );
  }
  if (BAD_HEADER_VALUE_RE.test(text)) {
    throw boundary(
      BOUNDARY_REASONS.INVALID_VALUE,
      field + "['" + name + "'] contains a character a header cannot carry (CR, LF, NUL or non-Latin-1)",
      field,
      name
    );
  }
  checkHeaderLength(name, text, field);
  return text;
}

function checkHeaderLength(name, text, field) {
  if (text.length > MAX_HEADER_LENGTH) {
    throw boundary(
      BOUNDARY_REASONS.HEADER_TOO_LONG,
      'header ' + name + ' would be ' + text.length + ' characters long (max ' + MAX_HEADER_LENGTH + ')',
      field,
      name
    );
  }
}

/** Checked headers as [name, value] pairs. */
function checkHeaders(value, field) {
  return entriesOf(value, field).map(([k, v]) => [k, checkHeader(k, v, field)]);
}

function formEncode(pairs) {
  const search = new URLSearchParams();
  for (const [k, v] of pairs) search.append(k, v);
  return search.toString();
}

function checkTimeout(value, field) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw boundary(
      BOUNDARY_REASONS.INVALID_TIMEOUT,
      field + ' must be a positive number of milliseconds, got ' + describe(value),
      field
    );
  }
  return value;
}

function checkBaseUrl(value) {
  if (typeof value !== 'string') {
    throw boundary(BOUNDARY_REASONS.INVALID_BASE_URL, 'baseUrl must be a string, got ' + describe(value), 'baseUrl');
  }
  return value.replace(/\/+$/, '');
}

function checkCsrfToken(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value !== 'string') {
    throw boundary(BOUNDARY_REASONS.INVALID_CSRF_TOKEN, 'csrfToken must be a string, got ' + describe(value), 'csrfToken');
  }
  if (BAD_HEADER_VALUE_RE.test(value)) {
    throw boundary(BOUNDARY_REASONS.INVALID_CSRF_TOKEN, 'csrfToken contains a character a header cannot carry', 'csrfToken');
  }
  checkHeaderLength(CSRF_HEADER, value, 'csrfToken');
  return value;
}

/**
 * The CSRF token the page holds, read now: the `content` attribute of the element with id
 * `csrftoken` (a `<meta>`), else its `value` (an `<input>`; the current value), trimmed.
 * Null when there is no document, no such element, or it is empty. A token a header cannot
 * carry throws INVALID_CSRF_TOKEN (synchronously, before any request).
 */
function pageCsrfToken() {
  const doc = typeof document !== 'undefined' ? document : null;
  if (!doc || typeof doc.getElementById !== 'function') return null;
  const el = doc.getElementById(CSRF_ELEMENT_ID);
  if (!el) return null;
  let value = typeof el.getAttribute === 'function' ? el.getAttribute('content') : null;
  if (value === null || value === undefined) value = typeof el.value === 'string' ? el.value : null;
  if (typeof value !== 'string') return null;
  value = value.trim();
  if (value === '') return null;
  if (BAD_HEADER_VALUE_RE.test(value)) {
    throw boundary(
      BOUNDARY_REASONS.INVALID_CSRF_TOKEN,
      "the page's #" + CSRF_ELEMENT_ID + ' element holds a character a header cannot carry',
      'csrfToken'
    );
  }
  checkHeaderLength(CSRF_HEADER, value, 'csrfToken');
  return value;
}

/** What a value is, without the value itself (for messages about secrets). */
function kindOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : (/^[aeiou]/.test(type) ? 'an ' : 'a ') + type;
}

/** Checks a session token string; messages never contain the token. */
function checkSessionToken(token) {
  if (!SESSION_TOKEN_RE.test(token)) {
    const hint = /^bearer\s/i.test(token) ? " (pass the token alone: the SDK adds 'Bearer ')" : '';
    throw boundary(
      BOUNDARY_REASONS.INVALID_SESSION_TOKEN,
      'sessionToken holds whitespace, a control character or a non-ASCII character' + hint,
      'sessionToken'
    );
  }
  if (token.length > MAX_SESSION_TOKEN_LENGTH) {
    throw boundary(
      BOUNDARY_REASONS.INVALID_SESSION_TOKEN,
      'sessionToken is ' + token.length + ' bytes long (max ' + MAX_SESSION_TOKEN_LENGTH + ')',
      'sessionToken'
    );
  }
  return token;
}

/** The `sessionToken` setting: a checked string, a function, or null (none). */
function checkSessionTokenOption(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'function') return value;
  if (typeof value !== 'string') {
    throw boundary(
      BOUNDARY_REASONS.INVALID_OPTIONS,
      'sessionToken must be a string, a function or null, got ' + kindOf(value),
      'sessionToken'
    );
  }
  return checkSessionToken(value);
}

function sessionTokenFailure(message, cause) {
  const err = boundary(BOUNDARY_REASONS.INVALID_SESSION_TOKEN, message + '; no request was sent', 'sessionToken');
  if (cause !== undefined) err.cause = cause;
  return err;
}

/**
 * The token to send for one call, or null for none: a string setting as is; a function is
 * called (once, now) and its result, or what its promise resolves with, is checked.
 */
async function resolveSessionToken(source) {
  if (source === null || typeof source === 'string') return source;
  let value;
  try {
    value = source();
  } catch (e) {
    throw sessionTokenFailure('the sessionToken function threw', e);
  }
  if (value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function') {
    try {
      value = await value;
    } catch (e) {
      throw sessionTokenFailure("the sessionToken function's promise rejected", e);
    }
  }
  if (value === null || value === undefined || value === '') return null;
  if (typeof value !== 'string') {
    // The likely slip: `() => fetch(url)` instead of `() => fetch(url).then((r) => r.text())`.
    const looksLikeResponse = isPlainObject(value) && typeof value.text === 'function' && typeof value.status === 'number';
    throw sessionTokenFailure(
      'the sessionToken function must return a string, null or undefined (or a promise of one), got ' +
        (looksLikeResponse ? "a Response (return its text(), e.g. fetch(url).then((r) => r.text()))" : kindOf(value))
    );
  }
  return checkSessionToken(value);
}

/** `headers` with `Authorization: Bearer <token>` replacing any Authorization header; as is without a token. */
function withSessionToken(headers, token) {
  if (token === null) return headers;
  const out = {};
  for (const k of Object.keys(headers)) {
    if (k.toLowerCase() !== AUTHORIZATION_HEADER.toLowerCase()) out[k] = headers[k];
  }
  out[AUTHORIZATION_HEADER] = 'Bearer ' + token;
  return out;
}

function checkPermalink(options) {
  const permalink = options.permalink;
  if (typeof permalink !== 'string' || permalink.trim().length === 0) {
    throw boundary(BOUNDARY_REASONS.MISSING_PERMALINK, 'permalink is required (a non-empty string)', 'permalink');
  }
  return permalink;
}

function serializePayload(payload) {
  let text;
  try {
    text = JSON.stringify(payload);
  } catch (e) {
    throw boundary(
      BOUNDARY_REASONS.INVALID_PAYLOAD,
      'payload cannot be serialized to JSON: ' + (e && e.message ? e.message : String(e)),
      'payload'
    );
  }
  if (text === undefined) {
    throw boundary(BOUNDARY_REASONS.INVALID_PAYLOAD, 'payload cannot be serialized to JSON (' + typeof payload + ')', 'payload');
  }
  return text;
}

/**
 * Splits `text` on `separator` where it is not inside double quotes (`\"` does not end a
 * quoted part).
 */
function splitOutsideQuotes(text, separator) {
  const parts = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"' && text[i - 1] !== '\\') quoted = !quoted;
    if (c === separator && !quoted) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

/**
 * Parses a `Server-Timing` header into `[{name, dur, desc}]` (`dur` in ms or null, `desc` or null).
 */
function parseServerTiming(header) {
  if (typeof header !== 'string' || header.trim() === '') return [];
  const entries = [];
  for (const part of splitOutsideQuotes(header, ',')) {
    const params = splitOutsideQuotes(part, ';');
    const name = params.shift().trim();
    if (!name) continue;
    const entry = { name, dur: null, desc: null };
    for (const p of params) {
      const eq = p.indexOf('=');
      if (eq < 0) continue;
      const key = p.slice(0, eq).trim().toLowerCase();
      let val = p.slice(eq + 1).trim();
      if (val.length >= 2 && val[0] === '"' && val[val.length - 1] === '"') {
        val = val.slice(1, -1).replace(/\\(.)/g, '$1');
      }
      if (key === 'dur') {
        const n = Number(val);
        entry.dur = Number.isFinite(n) ? n : null;
      } else if (key === 'desc') {
        entry.desc = val;
      }
    }
    entries.push(entry);
  }
  return entries;
}

/** Parses an `X-Connector-Timing` header (JSON); null when absent or unreadable. */
function parseConnectorTiming(header) {
  if (typeof header !== 'string' || header.trim() === '') return null;
  try {
    const value = JSON.parse(header);
    return value !== null && typeof value === 'object' ? value : null;
  } catch (e) {
    return null;
  }
}

function isJsonContentType(contentType) {
  if (!contentType) return false;
  const mime = contentType.split(';')[0].trim().toLowerCase();
  return mime === 'application/json' || mime.endsWith('+json');
}

function isEnvelope(body) {
  return (
    body !== null &&
    typeof body === 'object' &&
    body.success === false &&
    body.errors !== null &&
    typeof body.errors === 'object' &&
    typeof body.errors.code === 'string'
  );
}

function headersToObject(headers) {
  const out = {};
  if (headers && typeof headers.forEach === 'function') {
    headers.forEach((value, name) => {
      out[name] = value;
    });
  }
  return out;
}

/**
 * One client of the connector runtime.
 *
 *   const sdk = new WidgetServiceSDK({ baseUrl: 'https://runtime.example', csrfToken, headers, timeout });
 *   sdk.configure({ sessionToken: () => fetch('/my-backend/connector-token').then((r) => r.text()) });
 *   const data = await sdk.connectors.execute({ permalink: 'get-item', method: 'GET', pathParams: { item_id: 'itm_042' } });
 *   const out = await sdk.connectors.composite.execute({ permalink: 'auth-and-fetch-user', payload: {...} });
 */
class WidgetServiceSDK {
  /**
   * @param {object} [options] baseUrl ('' = same origin), csrfToken, sessionToken, headers, timeout (ms),
   *   credentials (fetch's, default 'same-origin'), fetch (a fetch implementation; default globalThis.fetch).
   */
  constructor(options) {
    this._baseUrl = '';
    this._csrfToken = null;
    // A string or a function; never the result of a function (those are not kept).
    this._sessionToken = null;
    this._headers = [];
    this._timeout = DEFAULT_TIMEOUT_MS;
    this._credentials = 'same-origin';
    this._fetch = null;
    /** `X-Connector-Timing` of the last answered call (parsed), or null. */
    this.lastTiming = null;
    /** `X-Request-ID` of the last answered call, or null. */
    this.lastRequestId = null;
    if (options !== undefined && options !== null) {
      if (!isPlainObject(options)) {
        throw boundary(BOUNDARY_REASONS.INVALID_OPTIONS, 'WidgetServiceSDK options must be an object', 'options');
      }
      if (options.fetch !== undefined && options.fetch !== null) {
        if (typeof options.fetch !== 'function') {
          throw boundary(BOUNDARY_REASONS.INVALID_OPTIONS, 'fetch must be a function', 'fetch');
        }
        this._fetch = options.fetch;
      }
      this.configure(options);
    }
    const self = this;
    const composite = {
      execute(opts) {
        return self._send(self._prepareComposite(opts)).then((meta) => meta.data);
      },
      executeWithMeta(opts) {
        return self._send(self._prepareComposite(opts));
      },
    };
    /** `connectors.execute`, `connectors.executeWithMeta`, `connectors.composite.*`. */
    this.connectors = {
      execute(opts) {
        return self._send(self._prepareSimple(opts)).then((meta) => meta.data);
      },
      executeWithMeta(opts) {
        return self._send(self._prepareSimple(opts));
      },
      composite,
    };
  }

  /**
   * Changes settings; only the keys given change (unknown keys are ignored).
   * `headers` replaces the default headers; `csrfToken: null` clears the configured token (the
   * page's `#csrftoken` element, when there is one, is then read at each call).
   *
   * `sessionToken` is the signed-in member's token (a JWT), sent as `Authorization: Bearer <token>`
   * on every execute call: a string, or a function returning a string or a promise of one, called
   * once per call right before it (never cached, so it can hand out fresh tokens). A function that
   * returns null, undefined or '' sends no token for that call. `sessionToken: null` (or
   * `undefined`, or '') removes it. When a token is sent it replaces any Authorization header from
   * the default or per-call headers.
   * @returns {WidgetServiceSDK} this
   */
  configure(options) {
    if (options === undefined || options === null) return this;
    if (!isPlainObject(options)) {
      throw boundary(BOUNDARY_REASONS.INVALID_OPTIONS, 'configure() takes an object', 'options');
    }
    // Validate everything first so that a rejected call changes nothing.
    const next = {};
    if (options.baseUrl !== undefined) next.baseUrl = checkBaseUrl(options.baseUrl);
    if (options.csrfToken !== undefined) next.csrfToken = checkCsrfToken(options.csrfToken);
    // Unlike the other keys, an explicit `sessionToken: undefined` removes the token too.
    if ('sessionToken' in options) next.sessionToken = checkSessionTokenOption(options.sessionToken);
    if (options.headers !== undefined) next.headers = checkHeaders(options.headers, 'headers');
    if (options.timeout !== undefined) next.timeout = checkTimeout(options.timeout, 'timeout');
    if (options.credentials !== undefined) {
      if (!['omit', 'same-origin', 'include'].includes(options.credentials)) {
        throw boundary(BOUNDARY_REASONS.INVALID_OPTIONS, "credentials must be 'omit', 'same-origin' or 'include'", 'credentials');
      }
      next.credentials = options.credentials;
    }
    if ('baseUrl' in next) this._baseUrl = next.baseUrl;
    if ('csrfToken' in next) this._csrfToken = next.csrfToken;
    if ('sessionToken' in next) this._sessionToken = next.sessionToken;
    if ('headers' in next) this._headers = dedupeHeaders(next.headers);
    if ('timeout' in next) this._timeout = next.timeout;
    if ('credentials' in next) this._credentials = next.credentials;
    return this;
  }

  /**
   * Merges headers into the default headers (case-insensitive names); a null/undefined value removes one.
   * @returns {WidgetServiceSDK} this
   */
  updateHeaders(headers) {
    const pairs = entriesOf(headers, 'headers');
    const removals = [];
    const additions = [];
    for (const [k, v] of pairs) {
      if (v === null || v === undefined) {
        if (typeof k !== 'string' || k.length === 0) {
          throw boundary(BOUNDARY_REASONS.EMPTY_KEY, 'headers has an empty key', 'headers', k);
        }
        removals.push(k.toLowerCase());
      } else {
        additions.push([k, checkHeader(k, v, 'headers')]);
      }
    }
    let merged = this._headers.filter(([k]) => !removals.includes(k.toLowerCase()));
    merged = dedupeHeaders(merged.concat(additions));
    this._headers = merged;
    return this;
  }

  /** Sets the default timeout (ms). @returns {WidgetServiceSDK} this */
  setDefaultTimeout(ms) {
    this._timeout = checkTimeout(ms, 'timeout');
    return this;
  }

  /**
   * The headers sent with every call: the default headers plus X-CSRF-Token when configured (a copy).
   * The session token's Authorization header is not included: it is resolved per call and never exposed.
   */
  getHeaders() {
    const out = {};
    for (const [k, v] of this._headers) out[k] = v;
    const csrf = this._currentCsrfToken();
    if (csrf !== null && !this._headers.some(([k]) => k.toLowerCase() === CSRF_HEADER.toLowerCase())) {
      out[CSRF_HEADER] = csrf;
    }
    return out;
  }

  /** The default timeout in ms. */
  getDefaultTimeout() {
    return this._timeout;
  }

  /** The base URL ('' = same origin). */
  getBaseUrl() {
    return this._baseUrl;
  }

  // ---- internals -------------------------------------------------------------------------

  /** The configured CSRF token, else the page's `#csrftoken` (read now), else null. */
  _currentCsrfToken() {
    return this._csrfToken !== null ? this._csrfToken : pageCsrfToken();
  }

  _prepareCommon(options) {
    if (!isPlainObject(options)) {
      throw boundary(BOUNDARY_REASONS.INVALID_OPTIONS, 'execute() takes an options object', 'options');
    }
    const permalink = checkPermalink(options);
    const query = checkParams(options.queryParams, 'queryParams');
    const headers = checkHeaders(options.headers, 'headers');
    const timeout = options.timeout === undefined ? this._timeout : checkTimeout(options.timeout, 'timeout');
    const signal = options.signal;
    if (signal !== undefined && signal !== null && (typeof signal !== 'object' || typeof signal.addEventListener !== 'function')) {
      throw boundary(BOUNDARY_REASONS.INVALID_OPTIONS, 'signal must be an AbortSignal', 'signal');
    }
    return { permalink, query, headers, timeout, signal: signal || null };
  }

  _prepareSimple(options) {
    const common = this._prepareCommon(options);
    let method = options.method;
    if (typeof method !== 'string' || method.trim() === '') {
      throw boundary(
        BOUNDARY_REASONS.MISSING_METHOD,
        "method is required: the connector's own method, one of " + METHODS.join(', ') +
          (method === undefined ? '' : ', got ' + (typeof method === 'string' ? "''" : describe(method))),
        'method'
      );
    }
    if (!METHODS.includes(method.toUpperCase())) {
      throw boundary(
        BOUNDARY_REASONS.INVALID_METHOD,
        'method must be one of ' + METHODS.join(', ') + ", got '" + method + "'",
        'method'
      );
    }
    method = method.toUpperCase();
    const pathPairs = checkParams(options.pathParams, 'pathParams');
    const extra = [];
    if (pathPairs.length > 0) {
      const value = formEncode(pathPairs);
      checkHeaderLength(PATH_PARAMS_HEADER, value, 'pathParams');
      extra.push([PATH_PARAMS_HEADER, value]);
    }
    let body;
    if (BODY_METHODS.includes(method) && options.payload !== undefined) {
      body = serializePayload(options.payload);
    }
    const path = '/connectors/' + encodeURIComponent(common.permalink) + '/execute';
    return this._request(common, method, path, extra, body);
  }

  _prepareComposite(options) {
    if (isPlainObject(options) && options.pathParams !== undefined) {
      throw boundary(
        BOUNDARY_REASONS.PATH_PARAMS_ON_COMPOSITE,
        'composite connectors take no pathParams (use queryParams or the payload)',
        'pathParams'
      );
    }
    const common = this._prepareCommon(options);
    let body;
    if (options.payload !== undefined) body = serializePayload(options.payload);
    const path = '/connectors/composite/' + encodeURIComponent(common.permalink) + '/execute';
    return this._request(common, 'POST', path, [], body);
  }

  _request(common, method, path, extra, body) {
    const query = formEncode(common.query);
    const url = this._baseUrl + path + (query ? '?' + query : '');
    // Defaults, then the CSRF token, then the call's headers, then the SDK's own.
    let pairs = this._headers.slice();
    // Read now, so that a page that adds its #csrftoken element later is served.
    const csrf = this._currentCsrfToken();
    if (csrf !== null) pairs.push([CSRF_HEADER, csrf]);
    pairs = dedupeHeaders(pairs.concat(common.headers).concat(extra));
    if (body !== undefined && !pairs.some(([k]) => k.toLowerCase() === 'content-type')) {
      pairs.push(['Content-Type', 'application/json']);
    }
    const headers = {};
    for (const [k, v] of pairs) headers[k] = v;
    return {
      permalink: common.permalink,
      url,
      method,
      headers,
      body,
      timeout: common.timeout,
      signal: common.signal,
    };
  }

  async _send(req) {
    const fetchImpl = this._fetch || (typeof globalThis.fetch === 'function' ? globalThis.fetch.bind(globalThis) : null);
    if (!fetchImpl) {
      throw new Error('fetch is not available in this environment');
    }
    const label = "connector '" + req.permalink + "'";
    // The setting as it is now, so that a configure() during this call does not change it.
    const tokenSource = this._sessionToken;
    const controller = new AbortController();
    let timer = null;
    let onUserAbort = null;
    // Rejects when the timeout fires or the caller's signal aborts, even if fetch ignores the signal.
    const stopped = new Promise((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error('Request to ' + label + ' timed out after ' + req.timeout + ' ms');
        err.timedOut = true;
        controller.abort();
        reject(err);
      }, Math.min(req.timeout, 2147483647));
      if (req.signal) {
        onUserAbort = () => {
          const err = new Error('Request to ' + label + ' was aborted');
          err.aborted = true;
          controller.abort();
          reject(err);
        };
        if (req.signal.aborted) onUserAbort();
        else req.signal.addEventListener('abort', onUserAbort, { once: true });
      }
    });
    stopped.catch(() => {});
    const init = {
      method: req.method,
      headers: req.headers,
      signal: controller.signal,
      credentials: this._credentials,
    };
    if (req.body !== undefined) init.body = req.body;
    try {
      // The session token function runs now, once for this call; the timeout and signal cover it.
      const token = tokenSource === null ? null : await Promise.race([resolveSessionToken(tokenSource), stopped]);
      init.headers = withSessionToken(req.headers, token);
      let response;
      try {
        response = await Promise.race([Promise.resolve().then(() => fetchImpl(req.url, init)), stopped]);
      } catch (e) {
        if (e && (e.timedOut || e.aborted)) throw e;
        const err = new Error('Network error calling ' + label + ': ' + (e && e.message ? e.message : String(e)));
        err.cause = e;
        throw err;
      }
      let text;
      try {
        text = await Promise.race([response.text(), stopped]);
      } catch (e) {
        if (e && (e.timedOut || e.aborted)) throw e;
        const err = new Error('Network error reading the response of ' + label + ': ' + (e && e.message ? e.message : String(e)));
        err.cause = e;
        throw err;
      }
      return this._interpret(req, response, text);
    } finally {
      clearTimeout(timer);
      if (req.signal && onUserAbort) req.signal.removeEventListener('abort', onUserAbort);
    }
  }

  _interpret(req, response, text) {
    const status = response.status;
    const get = (name) => (response.headers && typeof response.headers.get === 'function' ? response.headers.get(name) : null);
    const contentType = get('Content-Type');
    const timing = parseConnectorTiming(get('X-Connector-Timing'));
    const serverTiming = parseServerTiming(get('Server-Timing'));
    let requestId = get('X-Request-ID') || (timing && typeof timing.request_id === 'string' ? timing.request_id : null);

    let data = text;
    let parsed = false;
    if (isJsonContentType(contentType)) {
      if (text === '') {
        data = null;
        parsed = true;
      } else {
        try {
          data = JSON.parse(text);
          parsed = true;
        } catch (e) {
          data = text;
        }
      }
    }
    this.lastTiming = timing;
    this.lastRequestId = requestId;

    if (status < 200 || status > 299) {
      // An envelope may come with a wrong Content-Type; try it anyway.
      if (!parsed && text) {
        try {
          const maybe = JSON.parse(text);
          if (isEnvelope(maybe)) data = maybe;
        } catch (e) {
          /* not JSON */
        }
      }
      if (isEnvelope(data)) {
        const errors = data.errors;
        if (typeof data.request_id === 'string' && data.request_id) requestId = data.request_id;
        this.lastRequestId = requestId;
        throw new ConnectorExecuteError({
          code: errors.code,
          detail: typeof errors.detail === 'string' ? errors.detail : null,
          failureScope: typeof errors.scope === 'string' ? errors.scope : null,
          params: Array.isArray(errors.params) ? errors.params : [],
          requestId,
          status,
          timing,
          serverTiming,
          permalink: req.permalink,
          body: data,
        });
      }
      throw new ConnectorExecuteError({
        code: 'HTTP_' + status,
        detail: 'HTTP ' + status + (response.statusText ? ' ' + response.statusText : ''),
        failureScope: null,
        params: [],
        requestId,
        status,
        timing,
        serverTiming,
        permalink: req.permalink,
        body: data,
      });
    }
    return {
      data,
      status,
      requestId,
      timing,
      serverTiming,
      contentType: contentType || null,
      headers: headersToObject(response.headers),
    };
  }

  // ---- the shared default instance (the newer entry point) ---------------------------------

  /** The default instance behind the static API. */
  static get defaultInstance() {
    return defaultSdk;
  }

  /** `WidgetServiceSDK.connectors.execute(...)` etc. on the default instance. */
  static get connectors() {
    return defaultSdk.connectors;
  }

  static configure(options) {
    return defaultSdk.configure(options);
  }

  static updateHeaders(headers) {
    return defaultSdk.updateHeaders(headers);
  }

  static setDefaultTimeout(ms) {
    return defaultSdk.setDefaultTimeout(ms);
  }

  static getHeaders() {
    return defaultSdk.getHeaders();
  }

  static getDefaultTimeout() {
    return defaultSdk.getDefaultTimeout();
  }

  static getBaseUrl() {
    return defaultSdk.getBaseUrl();
  }
}

WidgetServiceSDK.version = SDK_VERSION;
WidgetServiceSDK.BOUNDARY_REASONS = BOUNDARY_REASONS;
WidgetServiceSDK.ConnectorBoundaryError = ConnectorBoundaryError;
WidgetServiceSDK.ConnectorExecuteError = ConnectorExecuteError;
WidgetServiceSDK.parseServerTiming = parseServerTiming;
WidgetServiceSDK.parseConnectorTiming = parseConnectorTiming;

/** Last value wins for a header name, compared case-insensitively; keeps the last spelling. */
function dedupeHeaders(pairs) {
  const out = [];
  for (const [k, v] of pairs) {
    const lower = k.toLowerCase();
    const i = out.findIndex(([name]) => name.toLowerCase() === lower);
    if (i >= 0) out.splice(i, 1);
    out.push([k, v]);
  }
  return out;
}

const defaultSdk = new WidgetServiceSDK();

/** The default instance's API, for `import { connectors, configure } from '.../connectors-sdk.mjs'`. */
const sdk = defaultSdk;
const connectors = defaultSdk.connectors;
const configure = (options) => defaultSdk.configure(options);
const updateHeaders = (headers) => defaultSdk.updateHeaders(headers);
const setDefaultTimeout = (ms) => defaultSdk.setDefaultTimeout(ms);
const getHeaders = () => defaultSdk.getHeaders();
const getDefaultTimeout = () => defaultSdk.getDefaultTimeout();
const getBaseUrl = () => defaultSdk.getBaseUrl();

// @@EXPORTS-BEGIN (sdk/build.mjs turns this block into the UMD build's exports: module.exports, define(), window globals)
export {
  WidgetServiceSDK,
  ConnectorBoundaryError,
  ConnectorExecuteError,
  BOUNDARY_REASONS,
  DEFAULT_TIMEOUT_MS,
  MAX_HEADER_LENGTH,
  MAX_SESSION_TOKEN_LENGTH,
  CSRF_ELEMENT_ID,
  SDK_VERSION,
  parseServerTiming,
  parseConnectorTiming,
  sdk,
  connectors,
  configure,
  updateHeaders,
  setDefaultTimeout,
  getHeaders,
  getDefaultTimeout,
  getBaseUrl,
};
export default sdk;
// @@EXPORTS-END
