// k6 load generator for the docker-compose stack: `docker compose --profile load up`.
//
// Drives every connector of deploy/connectors_registry.json against the mock upstream,
// through the load balancer (nginx, round-robin over both runtime replicas, which share
// OAuth tokens, cache entries and quota counters in Redis), so that every panel of the
// Grafana dashboard has data:
//   * "steady": a constant arrival rate (K6_RATE runs/s, default 40) of a realistic mix:
//     mostly successful runs, a few upstream 4xx/5xx, a failing OAuth token endpoint,
//     callers that forget a path parameter, and rate-limited-item at about 3 runs/s against
//     its quota of 20 per 10 s over all replicas (a third or so answered 429 RATE_LIMITED;
//     counted per replica, as when Redis is away, nearly none would be);
//   * "upstream_outage": from 2 min to 3 min, an extra 15 runs/s against an upstream that
//     answers 503 — the error ratio and failed-runs panels show an incident, then recovery.
//
// Environment: BASE_URL (default http://lb:8080), K6_RATE (runs/s, default 40),
// K6_DURATION (default 10m). Run outside compose with e.g.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e K6_DURATION=2m load/k6.js
// Every request targets BASE_URL only.

import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://lb:8080').replace(/\/+$/, '');
const RATE = parseInt(__ENV.K6_RATE || '40', 10);
const DURATION = __ENV.K6_DURATION || '10m';

export const options = {
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate',
      exec: 'steady',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 200,
    },
    upstream_outage: {
      executor: 'constant-arrival-rate',
      exec: 'outage',
      rate: 15,
      timeUnit: '1s',
      startTime: '2m',
      duration: '1m',
      preAllocatedVUs: 5,
      maxVUs: 50,
    },
  },
  thresholds: {
    // "Unexpected" means a status other than the one the request is meant to get.
    checks: ['rate>0.99'],
    'http_req_duration{expected_response:true}': ['p(95)<1000'],
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

const JSON_HEADERS = { 'Content-Type': 'application/json' };

// [weight, name, method, path, body, headers, expected status (or statuses)]
const MIX = [
  [20, 'auth-and-fetch-user', 'POST', '/connectors/composite/auth-and-fetch-user/execute',
    JSON.stringify({ clientId: 'widget-42' }), JSON_HEADERS, 200],
  [15, 'user-with-items', 'POST', '/connectors/composite/user-with-items/execute?limit=3',
    '', {}, 200],
  [20, 'get-item', 'GET', '/connectors/get-item/execute', null,
    { 'X-Path-Params': 'item_id=itm_1' }, 200],
  [15, 'search-items', 'GET', '/connectors/search-items/execute?limit=2&q=item', null, {}, 200],
  [10, 'echo-payload', 'POST', '/connectors/echo-payload/execute',
    JSON.stringify({ hello: 'world' }), JSON_HEADERS, 200],
  [12, 'account-profile', 'GET', '/connectors/account-profile/execute', null, {}, 200],
  [4, 'upstream-status', 'GET', '/connectors/upstream-status/execute', null, {}, 200],
  [1.5, 'upstream-status', 'GET', '/connectors/upstream-status/execute', null,
    { 'X-Path-Params': 'code=503' }, 502],
  [1, 'upstream-status', 'GET', '/connectors/upstream-status/execute', null,
    { 'X-Path-Params': 'code=404' }, 502],
  [1, 'legacy-partner-profile', 'GET', '/connectors/legacy-partner-profile/execute', null, {}, 502],
  [0.5, 'get-item', 'GET', '/connectors/get-item/execute', null, {}, 400],
  // A quota (rate_limit) counted across replicas: over it, 429 before any upstream call.
  [8, 'rate-limited-item', 'GET', '/connectors/rate-limited-item/execute', null, {}, [200, 429]],
];
const TOTAL_WEIGHT = MIX.reduce((sum, entry) => sum + entry[0], 0);

function pick() {
  let r = Math.random() * TOTAL_WEIGHT;
  for (const entry of MIX) {
    r -= entry[0];
    if (r <= 0) {
      return entry;
    }
  }
  return MIX[0];
}

function send(entry) {
  const [, name, method, path, body, headers, expected] = entry;
  const statuses = [].concat(expected);
  const res = http.request(method, BASE_URL + path, body, {
    headers,
    tags: { connector: name, expected: statuses.join('|') },
    responseCallback: http.expectedStatuses(...statuses),
    timeout: '30s',
  });
  check(res, { [`${name} answers ${statuses.join(' or ')}`]: (r) => statuses.includes(r.status) });
}

// Waits (up to 2 minutes) for the runtime to be ready: compose starts k6 alongside it.
export function setup() {
  for (let i = 0; i < 120; i += 1) {
    const res = http.get(`${BASE_URL}/readyz`, { responseCallback: http.expectedStatuses(200, 503) });
    if (res.status === 200) {
      return;
    }
    sleep(1);
  }
  throw new Error(`${BASE_URL}/readyz never answered 200`);
}

export function steady() {
  send(pick());
}

export function outage() {
  send([1, 'upstream-status', 'GET', '/connectors/upstream-status/execute', null,
    { 'X-Path-Params': 'code=503' }, 502]);
}
