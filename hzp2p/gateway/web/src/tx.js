// Transactions a citizen signs (consent.grant, consent.revoke), encoded exactly as
// hzp2p.ledger.tx: body = canonical msgpack [1, chain_id, type, signer, nonce, valid_from_ms,
// valid_until_ms, payload] (maps with sorted keys, minimal integer and length headers, bin
// for bytes, no floats), hash = blake2b-256(body), signature = Ed25519 over "hzp2p/tx/v1" +
// hash, wire = msgpack [body, signature]. The gateway decodes and re-checks the canonical
// form, so a byte out of place is refused, never signed into something else.
import sodium from 'libsodium-wrappers';
import { encode } from '@msgpack/msgpack';
import { blake2b } from '@noble/hashes/blake2.js';
import { concat, hex, utf8 } from './util.js';

const CANONICAL = { sortKeys: true, forceIntegerToFloat: false, useBigInt64: false, ignoreUndefined: false };
export const SIG_DOMAIN = 'hzp2p/tx/v1';
const CLOCK_SKEW_MS = 60_000;
const VALIDITY_MS = 10 * 60_000;

function checkCanonical(v, path) {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new Error(`${path}: integers only (no floats)`);
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => checkCanonical(x, `${path}[${i}]`));
  } else if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
    for (const [k, x] of Object.entries(v)) checkCanonical(x, `${path}.${k}`);
  }
}

export function packCanonical(value) {
  checkCanonical(value, 'value');
  return encode(value, CANONICAL).slice();
}

/** The unsigned body's bytes. */
export function txBody(chainId, type, signer, nonce, validFromMs, validUntilMs, payload) {
  return packCanonical([1, chainId, type, signer, nonce, validFromMs, validUntilMs, payload]);
}

export function signTx(key, body) {
  const hash = blake2b(body, { dkLen: 32 });
  const sig = sodium.crypto_sign_detached(concat(utf8(SIG_DOMAIN), hash), key.sk);
  return { hash: hex(hash), wire: hex(packCanonical([body, sig])) };
}

/** A signed transaction of `type` valid from about now; nonce: microseconds (< 2^53). */
export function buildTx(key, chainId, type, payload, nowMs = Date.now()) {
  const nonce = nowMs * 1000 + Math.floor(Math.random() * 1000);
  const body = txBody(chainId, type, key.pk, nonce, Math.max(0, nowMs - CLOCK_SKEW_MS), nowMs + VALIDITY_MS, payload);
  return signTx(key, body);
}
