// Shared by the k6 scripts: where the platform is (the variables dev up
// writes to .dev/stack.env, which the loadtest:* tasks load), an access
// token from the token service, and the calls the scenarios make.
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check, fail, sleep } from 'k6';

export const env = {
  gateway: __ENV.SWITCHYARD_GATEWAY_URL || 'http://127.0.0.1:8080',
  tokenURL: __ENV.SWITCHYARD_TOKEN_URL || 'http://127.0.0.1:8070/oauth2/token',
  admin: __ENV.SWITCHYARD_ADMIN_URL || 'http://127.0.0.1:8083',
  upstream: __ENV.SWITCHYARD_UPSTREAM_URL || 'http://127.0.0.1:8090',
  clientID: __ENV.SWITCHYARD_CLIENT_ID || 'dev',
  clientSecret: __ENV.SWITCHYARD_CLIENT_SECRET || '',
};

// fetchToken runs the client-credentials grant (client_secret_basic).
// The token service limits token requests per client: a 429 is waited
// out (Retry-After) and tried again.
export function fetchToken() {
  if (!env.clientSecret) {
    fail('SWITCHYARD_CLIENT_SECRET is not set: start `go tool task dev` and run the loadtest:* tasks, which read .dev/stack.env');
  }
  const auth = 'Basic ' + encoding.b64encode(`${env.clientID}:${env.clientSecret}`);
  for (let i = 0; i < 10; i++) {
    const res = http.post(env.tokenURL, { grant_type: 'client_credentials' },
      { headers: { Authorization: auth }, tags: { name: 'token' } });
    if (res.status === 200) {
      const body = res.json();
      return { token: body.access_token, expiresAt: Date.now() + body.expires_in * 1000 };
    }
    if (res.status !== 429) {
      fail(`token endpoint answered ${res.status}: ${res.body}`);
    }
    sleep(Number(res.headers['Retry-After'] || 1));
  }
  fail('token endpoint kept answering 429');
}

// Each VU starts with the token setup() fetched and fetches its own once
// that one has less than a minute left (soak runs outlive a token).
let vuToken = null;

export function authHeaders(data) {
  if (vuToken === null) {
    vuToken = data.auth;
  }
  if (vuToken.expiresAt - Date.now() < 60000) {
    vuToken = fetchToken();
  }
  return { Authorization: `Bearer ${vuToken.token}` };
}

export function jsonHeaders(data, extra = {}) {
  return Object.assign({ 'Content-Type': 'application/json' }, authHeaders(data), extra);
}

// submit POSTs a job of type with body and returns the response.
export function submit(data, type, body, headers = {}) {
  const res = http.post(`${env.gateway}/v1/jobs/${type}`, JSON.stringify(body),
    { headers: jsonHeaders(data, headers), tags: { name: `POST /v1/jobs/${type}` } });
  check(res, { 'job accepted (202)': (r) => r.status === 202 });
  return res;
}

// status GETs a job's status document (null unless 200).
export function status(data, id) {
  const res = http.get(`${env.gateway}/v1/jobs/${id}`, { headers: authHeaders(data), tags: { name: 'GET /v1/jobs/{id}' } });
  check(res, { 'status read (200)': (r) => r.status === 200 });
  return res.status === 200 ? res.json() : null;
}

// awaitFinal polls a job until it is succeeded or dead-lettered, or
// timeoutMs passes; it returns the last status document.
export function awaitFinal(data, id, timeoutMs, pollMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let doc = null;
  while (Date.now() < deadline) {
    doc = status(data, id);
    if (doc && (doc.status === 'succeeded' || doc.status === 'dead_lettered')) {
      return doc;
    }
    sleep(pollMs / 1000);
  }
  return doc;
}

// control sets the demo upstream's fault knobs.
export function control(knobs) {
  const res = http.put(`${env.upstream}/control`, JSON.stringify(knobs), { tags: { name: 'PUT /control' } });
  if (res.status !== 200) {
    fail(`demo upstream /control answered ${res.status}`);
  }
}

export function setupAuth() {
  return { auth: fetchToken() };
}

export function text(n) {
  return { text: `load test job ${n} at ${new Date().toISOString()}: the quick brown fox jumps over the lazy dog` };
}
