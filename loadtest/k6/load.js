// Average load: a constant arrival rate of job submissions (RATE per
// second, default 20) for DURATION (default 2m), each followed half the
// time by a status read, as clients that poll do.
import { check } from 'k6';
import { setupAuth, submit, status, text } from './lib.js';

const rate = Number(__ENV.RATE || 20);

export const options = {
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: __ENV.DURATION || '2m',
      preAllocatedVUs: Math.max(10, rate),
      maxVUs: Math.max(50, rate * 4),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{name:POST /v1/jobs/text-stats}': ['p(95)<250', 'p(99)<1000'],
    'http_req_duration{name:GET /v1/jobs/{id}}': ['p(95)<100', 'p(99)<500'],
    dropped_iterations: ['count<10'],
  },
};

export const setup = setupAuth;

export default function (data) {
  const res = submit(data, 'text-stats', text(__ITER));
  if (res.status === 202 && __ITER % 2 === 0) {
    const doc = status(data, res.json().id);
    check(doc, { 'status is a known one': (d) => d !== null && ['accepted', 'queued', 'processing', 'succeeded'].includes(d.status) });
  }
}
