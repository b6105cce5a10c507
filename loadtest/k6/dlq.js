// Dead letters: while the demo upstream refuses webhooks (a permanent
// failure), JOBS webhook jobs (default 40) are submitted beside as many
// text-stats jobs; the webhooks are dead-lettered at once and the others
// succeed. Then the upstream is fixed and one bulk replay of the webhook
// dead letters runs through the admin API: every replayed job succeeds.
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Trend } from 'k6/metrics';
import { env, setupAuth, submit, awaitFinal, jsonHeaders, authHeaders, control, text } from './lib.js';

const replayToSucceeded = new Trend('replay_to_all_succeeded', true);
const jobs = Number(__ENV.JOBS || 40);

export const options = {
  scenarios: { dlq: { executor: 'shared-iterations', vus: 1, iterations: 1, maxDuration: '5m' } },
  thresholds: {
    checks: ['rate==1'],
    replay_to_all_succeeded: ['max<120000'],
  },
};

export function setup() {
  control({ reject: true, failure_rate: 0, latency: '0s', down: false });
  return setupAuth();
}

export function teardown() {
  control({ reject: false });
}

function deadLetters(data, since) {
  const res = http.get(`${env.admin}/admin/v1/dead-letters?type=webhook&status=stored&since=${since}&limit=500`,
    { headers: authHeaders(data), tags: { name: 'GET /admin/v1/dead-letters' } });
  if (res.status !== 200) {
    fail(`listing dead letters: ${res.status} ${res.body}`);
  }
  return res.json().items;
}

export default function (data) {
  const since = new Date(Date.now() - 1000).toISOString();
  const poison = [];
  const healthy = [];
  for (let i = 0; i < jobs; i++) {
    const w = submit(data, 'webhook', { order: `dlq-${i}`, amount: i });
    const t = submit(data, 'text-stats', text(i));
    if (w.status === 202) poison.push(w.json().id);
    if (t.status === 202) healthy.push(t.json().id);
  }
  // The healthy ones succeed beside the failures.
  for (const id of healthy) {
    const doc = awaitFinal(data, id, 60000, 250);
    check(doc, { 'healthy job succeeded': (d) => d !== null && d.status === 'succeeded' });
  }
  for (const id of poison) {
    const doc = awaitFinal(data, id, 60000, 250);
    check(doc, { 'poison job dead-lettered, permanent error on record': (d) => d !== null && d.status === 'dead_lettered' &&
      d.events.some((e) => e.type === 'dead_lettered' && e.reason === 'permanent_error') });
  }
  // The replay service drains the DLQ into its store.
  let stored = [];
  for (let i = 0; i < 120 && stored.length < poison.length; i++) {
    stored = deadLetters(data, since);
    sleep(0.5);
  }
  check(stored, { 'every poison job is a stored dead letter': (s) => s.length === poison.length });

  // The fix is deployed; replay them all in one bulk operation.
  control({ reject: false });
  const started = Date.now();
  const op = http.post(`${env.admin}/admin/v1/replays`,
    JSON.stringify({ filter: { type: 'webhook', since }, rate_per_s: 50 }),
    { headers: jsonHeaders(data), tags: { name: 'POST /admin/v1/replays' } });
  check(op, { 'bulk replay accepted': (r) => r.status === 202 });
  if (op.status !== 202) {
    fail(`bulk replay: ${op.status} ${op.body}`);
  }
  const opID = op.json().id;
  let state = null;
  for (let i = 0; i < 240; i++) {
    const r = http.get(`${env.admin}/admin/v1/replays/${opID}`, { headers: authHeaders(data), tags: { name: 'GET /admin/v1/replays/{id}' } });
    state = r.json();
    if (state.status !== 'running' && state.status !== 'pending') break;
    sleep(0.5);
  }
  check(state, { 'bulk replay completed': (s) => s !== null && s.status === 'completed' });
  for (const id of poison) {
    const doc = awaitFinal(data, id, 60000, 250);
    check(doc, { 'replayed job succeeded': (d) => d !== null && d.status === 'succeeded' &&
      d.events.some((e) => e.type === 'replayed') });
  }
  replayToSucceeded.add(Date.now() - started);
}
