// Type declarations for the connector-runtime widget SDK (npm: @connector-runtime/sdk).
// ES module: `connectors-sdk.mjs` (served at /sdk/connectors-sdk.mjs; its declarations are
// `connectors-sdk.d.mts`, generated from this file by `node sdk/build.mjs`).
// UMD build: `connectors-sdk.js` (served at /sdk/connectors-sdk.js): CommonJS `require`, AMD, or a
// classic script that sets `window.WidgetServiceSDK`, `window.ConnectorBoundaryError` and
// `window.ConnectorExecuteError`.

/** A query / path parameter or header value: a string or a finite number. */
export type ParamValue = string | number;

/** Key/value pairs: a plain object, a Map, URLSearchParams or Headers. */
export type ParamBag =
  | Record<string, ParamValue>
  | Map<string, ParamValue>
  | URLSearchParams
  | Headers;

/** Methods a simple connector can declare (any case is accepted; sent upper-case). */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS';

/** Options shared by both kinds of call. Unknown options are ignored. */
export interface CommonExecuteOptions {
  /** The connector's permalink (required, non-empty). */
  permalink: string;
  /** Sent as JSON (`Content-Type: application/json`). Simple connectors: only for POST/PUT/PATCH. */
  payload?: unknown;
  /** Appended to the URL query string (application/x-www-form-urlencoded). */
  queryParams?: ParamBag;
  /** Extra request headers for this call (override the configured ones, case-insensitively). */
  headers?: ParamBag;
  /** Timeout for this call in ms (default: the SDK's default timeout, 30000). */
  timeout?: number;
  /** Aborts the call; the promise then rejects with a plain Error. */
  signal?: AbortSignal;
}

/** `connectors.execute` options. */
export interface SimpleExecuteOptions extends CommonExecuteOptions {
  /**
   * Required: the connector's own method (the runtime answers 405 for another). Missing, empty
   * or not a string throws `MISSING_METHOD`; another string throws `INVALID_METHOD`.
   */
  method: HttpMethod | Lowercase<HttpMethod>;
  /** Sent in the `X-Path-Params` header as `k=v&k2=v2` (URL-encoded). */
  pathParams?: ParamBag;
}

/**
 * `connectors.composite.execute` options: always POST (a `method` option is ignored). Passing
 * `pathParams` throws `PATH_PARAMS_ON_COMPOSITE`.
 */
export interface CompositeExecuteOptions extends CommonExecuteOptions {
  pathParams?: never;
}

/** SDK settings; every key is optional and only the given keys change. Unknown keys are ignored. */
export interface SDKConfig {
  /** Where the runtime is; `''` (default) means same origin. Trailing slashes are dropped. */
  baseUrl?: string;
  /**
   * Sent as `X-CSRF-Token` on every call; `null` or `''` clears it. When none is configured, the
   * SDK reads the page's element with id `csrftoken` at each call: its `content` attribute
   * (`<meta id="csrftoken" content="...">`), else its `value` (`<input id="csrftoken" value="...">`).
   * A configured token wins.
   */
  csrfToken?: string | null;
  /**
   * The signed-in member's token (a JWT your backend signs), sent as
   * `Authorization: Bearer <token>` on every execute call, simple and composite.
   *
   * - A string is sent as is (it must be visible ASCII, at most 8192 bytes; otherwise
   *   `configure` throws `INVALID_SESSION_TOKEN`).
   * - A function is called once per call, right before it is sent, and never cached: return
   *   the token, or a promise of it, so the page can refresh tokens. `null`, `undefined` or
   *   `''` sends no Authorization header for that call. If it throws, its promise rejects, or
   *   it gives anything else (or a string with whitespace, control or non-ASCII characters, or
   *   longer than 8192 bytes), the call's promise rejects with a `ConnectorBoundaryError`
   *   `INVALID_SESSION_TOKEN` and nothing is sent. The call's timeout and signal cover it.
   * - `null` or `undefined` (given explicitly) or `''` removes it.
   *
   * When a token is sent it replaces any `Authorization` header of the default or per-call
   * headers. Another type (a number, an object, ...) throws `INVALID_OPTIONS`.
   */
  sessionToken?: string | null | (() => string | null | undefined | Promise<string | null | undefined>);
  /** Default headers for every call (replaces the previous default headers). */
  headers?: ParamBag;
  /** Default timeout in ms (positive; default 30000). */
  timeout?: number;
  /** fetch's credentials mode (default `'same-origin'`). */
  credentials?: 'omit' | 'same-origin' | 'include';
}

/** Constructor options: the settings plus an optional fetch implementation. */
export interface SDKOptions extends SDKConfig {
  /** A fetch implementation (default: `globalThis.fetch`, looked up at call time). */
  fetch?: typeof fetch;
}

/** One composite step in `X-Connector-Timing`. */
export interface CompositeStepTiming {
  name: string;
  index: number;
  duration_ms: number;
  status_code: number | null;
}

/** `X-Connector-Timing` of a composite connector. */
export interface CompositeTiming {
  request_id: string;
  total_ms: number;
  steps: CompositeStepTiming[];
}

/** `X-Connector-Timing` of a simple connector. */
export interface SimpleTiming {
  request_id: string;
  total_ms: number;
  internal_ms: number;
  external_ms: number;
  breakdown: { setup_ms: number; transform_ms: number; cache_ms: number; http_request_ms: number };
  cache_hit: boolean;
  external_host: string;
  timeout?: boolean;
  error?: string;
}

export type ConnectorTiming = CompositeTiming | SimpleTiming;

/** One `Server-Timing` entry. */
export interface ServerTimingEntry {
  name: string;
  /** Milliseconds, or null when absent. */
  dur: number | null;
  desc: string | null;
}

/** What `executeWithMeta` resolves with. */
export interface ExecuteResult<T = unknown> {
  /** The body: parsed JSON for a JSON Content-Type (null when empty), otherwise text. */
  data: T;
  status: number;
  requestId: string | null;
  /** Parsed `X-Connector-Timing`, or null when absent/unreadable. */
  timing: ConnectorTiming | null;
  /** Parsed `Server-Timing`. */
  serverTiming: ServerTimingEntry[];
  contentType: string | null;
  /** Response headers (lower-case names; only those the browser exposes). */
  headers: Record<string, string>;
}

/** Stable `ConnectorBoundaryError.reason` codes. */
export type BoundaryReason =
  | 'INVALID_OPTIONS'
  | 'MISSING_PERMALINK'
  | 'PATH_PARAMS_ON_COMPOSITE'
  | 'EMPTY_KEY'
  | 'INVALID_VALUE'
  | 'HEADER_TOO_LONG'
  | 'INVALID_HEADER_NAME'
  | 'RESERVED_HEADER'
  | 'MISSING_METHOD'
  | 'INVALID_METHOD'
  | 'INVALID_PAYLOAD'
  | 'INVALID_TIMEOUT'
  | 'INVALID_BASE_URL'
  | 'INVALID_CSRF_TOKEN'
  | 'INVALID_SESSION_TOKEN';

export declare const BOUNDARY_REASONS: Readonly<{ [K in BoundaryReason]: K }>;

/**
 * Thrown synchronously, before any request is sent. Exception: `INVALID_SESSION_TOKEN` while a
 * `sessionToken` function is resolved for a call rejects that call's promise (still before
 * anything is sent); `cause` is then what the function threw or its promise rejected with.
 */
export declare class ConnectorBoundaryError extends Error {
  readonly name: 'ConnectorBoundaryError';
  readonly reason: BoundaryReason;
  /** The option at fault: `permalink`, `method`, `payload`, `queryParams`, `pathParams`, `headers`, `timeout`, ... */
  readonly field: string | null;
  /** The offending key, when there is one (for HEADER_TOO_LONG on path params: `X-Path-Params`). */
  readonly key: string | null;
  /** For `INVALID_SESSION_TOKEN` from a throwing / rejecting `sessionToken` function: what it threw. */
  readonly cause?: unknown;
}

/** The runtime answered with a non-2xx status. */
export declare class ConnectorExecuteError extends Error {
  readonly name: 'ConnectorExecuteError';
  /** `errors.code` of the envelope, or `HTTP_<status>` when the answer is not an envelope. */
  readonly code: string;
  /** Same as `code`. */
  readonly reason: string;
  /** `errors.detail`, or `HTTP <status> <statusText>`. */
  readonly detail: string | null;
  /** `errors.scope`, e.g. `Composite step 'fetch-user' (index 1): Downstream (HTTP error)`. */
  readonly failureScope: string | null;
  /** `errors.params`, e.g. the missing path parameter keys. */
  readonly params: unknown[];
  /** `request_id` of the envelope, else `X-Request-ID`. */
  readonly requestId: string | null;
  /** HTTP status. */
  readonly status: number;
  /** Parsed `X-Connector-Timing`, if readable. */
  readonly timing: ConnectorTiming | null;
  readonly serverTiming: ServerTimingEntry[];
  readonly permalink: string | null;
  /** The response body (parsed JSON or text). */
  readonly body: unknown;
}

export interface CompositeConnectorsAPI {
  /** `POST {baseUrl}/connectors/composite/{permalink}/execute?{query}`; resolves with the body. */
  execute<T = any>(options: CompositeExecuteOptions): Promise<T>;
  /** Like `execute`, resolving with status, request id and timing too. */
  executeWithMeta<T = any>(options: CompositeExecuteOptions): Promise<ExecuteResult<T>>;
}

export interface ConnectorsAPI {
  /** `<METHOD> {baseUrl}/connectors/{permalink}/execute?{query}`; resolves with the body. */
  execute<T = any>(options: SimpleExecuteOptions): Promise<T>;
  /** Like `execute`, resolving with status, request id and timing too. */
  executeWithMeta<T = any>(options: SimpleExecuteOptions): Promise<ExecuteResult<T>>;
  composite: CompositeConnectorsAPI;
}

export declare class WidgetServiceSDK {
  constructor(options?: SDKOptions);
  readonly connectors: ConnectorsAPI;
  /** Parsed `X-Connector-Timing` of the last answered call (success or error), or null. */
  lastTiming: ConnectorTiming | null;
  /** Request id of the last answered call, or null. */
  lastRequestId: string | null;
  configure(config?: SDKConfig | null): this;
  /** Merges into the default headers; a null/undefined value removes that header. */
  updateHeaders(headers?: Record<string, ParamValue | null | undefined> | Map<string, ParamValue | null | undefined>): this;
  setDefaultTimeout(ms: number): this;
  /**
   * Headers sent on every call: the default headers plus `X-CSRF-Token` (the configured token,
   * else the page's `#csrftoken` as it is now); not the session token's `Authorization`, which
   * is resolved per call and never exposed.
   */
  getHeaders(): Record<string, string>;
  getDefaultTimeout(): number;
  getBaseUrl(): string;

  /** The shared default instance (what the static methods and module-level functions use). */
  static readonly defaultInstance: WidgetServiceSDK;
  static readonly connectors: ConnectorsAPI;
  static configure(config?: SDKConfig | null): WidgetServiceSDK;
  static updateHeaders(headers?: Record<string, ParamValue | null | undefined>): WidgetServiceSDK;
  static setDefaultTimeout(ms: number): WidgetServiceSDK;
  static getHeaders(): Record<string, string>;
  static getDefaultTimeout(): number;
  static getBaseUrl(): string;
  static readonly version: string;
  static readonly BOUNDARY_REASONS: typeof BOUNDARY_REASONS;
  static readonly ConnectorBoundaryError: typeof ConnectorBoundaryError;
  static readonly ConnectorExecuteError: typeof ConnectorExecuteError;
  static parseServerTiming(header: string | null | undefined): ServerTimingEntry[];
  static parseConnectorTiming(header: string | null | undefined): ConnectorTiming | null;
}

export declare const DEFAULT_TIMEOUT_MS: 30000;
export declare const MAX_HEADER_LENGTH: 4096;
/** Longest `sessionToken` sent, in bytes. */
export declare const MAX_SESSION_TOKEN_LENGTH: 8192;
/** Id of the page element the CSRF token is read from when none is configured: `csrftoken`. */
export declare const CSRF_ELEMENT_ID: 'csrftoken';
export declare const SDK_VERSION: string;
export declare function parseServerTiming(header: string | null | undefined): ServerTimingEntry[];
export declare function parseConnectorTiming(header: string | null | undefined): ConnectorTiming | null;

/** The default instance and its API. */
export declare const sdk: WidgetServiceSDK;
export declare const connectors: ConnectorsAPI;
export declare function configure(config?: SDKConfig | null): WidgetServiceSDK;
export declare function updateHeaders(headers?: Record<string, ParamValue | null | undefined>): WidgetServiceSDK;
export declare function setDefaultTimeout(ms: number): WidgetServiceSDK;
export declare function getHeaders(): Record<string, string>;
export declare function getDefaultTimeout(): number;
export declare function getBaseUrl(): string;
export default sdk;

declare global {
  interface Window {
    /** Set by the UMD build `/sdk/connectors-sdk.js` loaded as a classic script. */
    WidgetServiceSDK: typeof WidgetServiceSDK;
    ConnectorBoundaryError: typeof ConnectorBoundaryError;
    ConnectorExecuteError: typeof ConnectorExecuteError;
  }
}
