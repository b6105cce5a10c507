// Soak: a moderate rate for a long time (DURATION, default 30m) to show
// leaks and drift: memory, connections, outbox age (watch the dashboard
// meanwhile). Tokens expire during the run and are fetched again.
import { setupAuth, submit, status, text } from './lib.js';

const rate = Number(__ENV.RATE || 15);

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30m',
      preAllocatedVUs: 20,
      maxVUs: 100,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    'http_req_duration{name:POST /v1/jobs/text-stats}': ['p(95)<250', 'p(99)<1000'],
  },
};

export const setup = setupAuth;

export default function (data) {
  const res = submit(data, 'text-stats', text(__ITER));
  if (res.status === 202 && __ITER % 4 === 0) {
    status(data, res.json().id);
  }
}
