// Async end to end: jobs arrive at RATE per second (default 10) for
// DURATION (default 2m); each client waits for its job to succeed,
// polling the status URL, and the time from submission to success is the
// custom trend accept_to_succeeded (on moto, the local SQS stand-in, SQS
// dominates it).
import { check } from 'k6';
import { Trend, Counter } from 'k6/metrics';
import { setupAuth, submit, awaitFinal, text } from './lib.js';

const acceptToSucceeded = new Trend('accept_to_succeeded', true);
const notFinished = new Counter('jobs_not_finished');
const rate = Number(__ENV.RATE || 10);

export const options = {
  scenarios: {
    async: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: __ENV.DURATION || '2m',
      preAllocatedVUs: rate * 4,
      maxVUs: rate * 20,
    },
  },
  thresholds: {
    checks: ['rate>0.99'],
    http_req_failed: ['rate<0.01'],
    accept_to_succeeded: ['p(50)<3000', 'p(95)<10000'],
    jobs_not_finished: ['count==0'],
  },
};

export const setup = setupAuth;

export default function (data) {
  const started = Date.now();
  const res = submit(data, 'text-stats', text(__ITER));
  if (res.status !== 202) {
    return;
  }
  const doc = awaitFinal(data, res.json().id, 60000, 250);
  if (check(doc, { 'job succeeded': (d) => d !== null && d.status === 'succeeded' })) {
    acceptToSucceeded.add(Date.now() - started);
  } else {
    notFinished.add(1);
  }
}
