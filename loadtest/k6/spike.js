// Spike: a quiet rate jumps thirty-fold for 30 s and drops back; no
// request may fail, and latency must come back down once it passes.
import { setupAuth, submit, text } from './lib.js';

const base = Number(__ENV.RATE || 5);

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: base,
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: 400,
      stages: [
        { target: base, duration: '30s' },
        { target: base * 30, duration: '5s' },
        { target: base * 30, duration: '30s' },
        { target: base, duration: '5s' },
        { target: base, duration: '40s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:POST /v1/jobs/text-stats}': ['p(99)<3000'],
  },
};

export const setup = setupAuth;

export default function (data) {
  submit(data, 'text-stats', text(__ITER));
}
