// Sync routes with failures injected. Callers read GET /v1/echo/{name}
// (through the demo upstream, one retry, a circuit breaker that opens
// after five failed attempts in a row, for 10 s) at RATE per second for
// 75 s while the upstream first fails a share of requests (FAILURE_RATE,
// default 0.1; the retry hides most), then is down for 15 s, then
// recovers. Every failure must come back as a 502/503 problem (503s with
// Retry-After), never as a timeout or another status; the breaker must
// engage and refuse at once while open; calls must be served again once
// the upstream is back (the breaker half-opens and closes by itself).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import { env, setupAuth, authHeaders, control } from './lib.js';

const ok = new Rate('sync_ok');
const okAfterRecovery = new Rate('sync_ok_after_recovery');
const breakerOpen = new Counter('breaker_refusals');
const rate = Number(__ENV.RATE || 30);
const failureRate = Number(__ENV.FAILURE_RATE || 0.1);
// Seconds into the run: the upstream goes down, comes back, and by when
// the breaker must have closed again (open_for 10 s, then probes).
const downAt = 20;
const upAt = 35;
const recoveredBy = 55;

export const options = {
  scenarios: {
    callers: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: '75s',
      preAllocatedVUs: 20,
      maxVUs: 100,
    },
    chaos: { executor: 'shared-iterations', vus: 1, iterations: 1, exec: 'chaos', maxDuration: '80s' },
  },
  thresholds: {
    checks: ['rate==1'],
    sync_ok: ['rate>0.5'],
    sync_ok_after_recovery: ['rate>0.95'],
    breaker_refusals: ['count>0'],
    'http_req_duration{name:GET /v1/echo/{name}}': ['p(95)<1000', 'p(99)<2500'],
  },
};

let started = 0;

export function setup() {
  control({ failure_rate: failureRate, latency: __ENV.LATENCY || '20ms', down: false, reject: false });
  return Object.assign(setupAuth(), { started: Date.now() });
}

export function teardown() {
  control({ failure_rate: 0, latency: '0s', down: false, reject: false });
}

export function chaos() {
  sleep(downAt);
  control({ down: true });
  sleep(upAt - downAt);
  control({ down: false });
}

export default function (data) {
  started = data.started;
  // A fresh name each time: nothing is served from the cache.
  const res = http.get(`${env.gateway}/v1/echo/k6-${__VU}-${__ITER}`, {
    headers: authHeaders(data), tags: { name: 'GET /v1/echo/{name}' },
    responseCallback: http.expectedStatuses(200, 502, 503),
  });
  ok.add(res.status === 200);
  if ((Date.now() - started) / 1000 > recoveredBy) {
    okAfterRecovery.add(res.status === 200);
  }
  if (res.status === 503 && String(res.body).includes('circuit-open')) {
    breakerOpen.add(1);
  }
  check(res, {
    'answered 200, or a 502/503 problem': (r) => r.status === 200 ||
      ((r.status === 502 || r.status === 503) && r.headers['Content-Type'] === 'application/problem+json'),
    'a 503 says when to retry': (r) => r.status !== 503 || r.headers['Retry-After'] !== undefined,
  });
}
