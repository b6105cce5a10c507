// Smoke: one user runs every kind of call once a second for 30 s: async
// submit and wait for success, status, a sync Go handler, a cached sync
// upstream read, a refused request. Everything must work.
import http from 'k6/http';
import { check } from 'k6';
import { Trend } from 'k6/metrics';
import { env, setupAuth, submit, awaitFinal, jsonHeaders, authHeaders, text } from './lib.js';

const acceptToSucceeded = new Trend('accept_to_succeeded', true);

export const options = {
  vus: 1,
  duration: __ENV.DURATION || '30s',
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    'http_req_duration{name:POST /v1/jobs/text-stats}': ['p(95)<500'],
    accept_to_succeeded: ['p(95)<15000'],
  },
};

export const setup = setupAuth;

export default function (data) {
  const started = Date.now();
  const res = submit(data, 'text-stats', text(__ITER));
  if (res.status === 202) {
    const doc = awaitFinal(data, res.json().id, 30000);
    check(doc, {
      'job succeeded': (d) => d !== null && d.status === 'succeeded',
      'timeline from accepted to attempt_succeeded': (d) => d !== null && d.events.length >= 4 &&
        d.events[0].type === 'accepted' && d.events[d.events.length - 1].type === 'attempt_succeeded',
    });
    acceptToSucceeded.add(Date.now() - started);
  }
  const now = http.post(`${env.gateway}/v1/text-stats`, JSON.stringify(text(__ITER)),
    { headers: jsonHeaders(data), tags: { name: 'POST /v1/text-stats' } });
  check(now, { 'sync handler answers 200': (r) => r.status === 200 && r.json().words > 0 });
  const echo = http.get(`${env.gateway}/v1/echo/smoke`, { headers: authHeaders(data), tags: { name: 'GET /v1/echo/{name}' } });
  check(echo, { 'sync upstream answers 200': (r) => r.status === 200 });
  const refused = http.post(`${env.gateway}/v1/jobs/text-stats`, '{"text":1}',
    { headers: jsonHeaders(data), tags: { name: 'POST /v1/jobs/text-stats (invalid)' }, responseCallback: http.expectedStatuses(422) });
  check(refused, { 'invalid payload is a 422 problem': (r) => r.status === 422 && r.headers['Content-Type'] === 'application/problem+json' });
}
