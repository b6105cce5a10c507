// Stress: the arrival rate climbs in steps past what the machine can take
// (MAX_RATE, default 300/s), to find where latency and errors turn up;
// the thresholds only fail on errors, not on the slowdown it looks for.
import { setupAuth, submit, text } from './lib.js';

const max = Number(__ENV.MAX_RATE || 300);

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: Math.round(max / 10),
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: 400,
      stages: [
        { target: Math.round(max / 4), duration: '1m' },
        { target: Math.round(max / 2), duration: '1m' },
        { target: Math.round((3 * max) / 4), duration: '1m' },
        { target: max, duration: '1m' },
        { target: max, duration: '1m' },
        { target: 0, duration: '30s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.05'],
    'http_req_duration{name:POST /v1/jobs/text-stats}': ['p(99)<5000'],
  },
};

export const setup = setupAuth;

export default function (data) {
  submit(data, 'text-stats', text(__ITER));
}
