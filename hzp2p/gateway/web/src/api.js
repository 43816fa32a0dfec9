// The gateway's API from the browser: public GETs, and requests signed exactly as
// hzp2p.gateway.signing says (Ed25519 over domain, method, path, raw query, subject,
// SHA-256 of the body, timestamp and nonce, joined by newlines).
import sodium from 'libsodium-wrappers';
import { sha256 } from '@noble/hashes/sha2.js';
import { check } from './http.js';
import { hex, utf8 } from './util.js';

export { ApiError, getJSON } from './http.js';

export const DOMAIN = 'hzp2p-request-v1';

// Milliseconds to add to this device's clock to get the gateway's (from its Date header):
// a phone whose clock is off by more than the ±60 s window could not sign otherwise.
let skewMs = 0;

export function requestMessage(method, path, query, subject, body, ts, nonce) {
  return utf8([DOMAIN, method.toUpperCase(), path, query, subject, hex(sha256(body)), String(ts), nonce].join('\n'));
}

export function signHeaders(key, method, path, { query = '', subject = '', body = new Uint8Array(0), ts, nonce } = {}) {
  const when = ts ?? Date.now() + skewMs;
  const n = nonce ?? hex(sodium.randombytes_buf(16));
  const sig = sodium.crypto_sign_detached(requestMessage(method, path, query, subject, body, when, n), key.sk);
  const out = {
    'x-hz-key': hex(key.pk),
    'x-hz-timestamp': String(when),
    'x-hz-nonce': n,
    'x-hz-signature': hex(sig),
  };
  if (subject) out['x-hz-subject'] = subject;
  return out;
}

/** A signed request; `me` adds X-HZ-Subject (her pseudonym). Retries once after a clock-skew refusal. */
export async function signed(key, method, url, { json, me = false } = {}) {
  await sodium.ready;
  for (let attempt = 0; ; attempt++) {
    const [path, query = ''] = url.split('?');
    const body = json === undefined ? new Uint8Array(0) : utf8(JSON.stringify(json));
    const headers = signHeaders(key, method, path, { query, subject: me ? key.pseudonym : '', body });
    headers.accept = 'application/json';
    if (json !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(url, { method, headers, body: json === undefined ? undefined : body });
    if (r.status === 401 && attempt === 0 && r.headers.get('date')) {
      const p = await r.clone().json().catch(() => ({}));
      if (String(p.type || '').endsWith('auth-expired')) {
        skewMs = Date.parse(r.headers.get('date')) - Date.now();
        continue;
      }
    }
    return check(r);
  }
}
