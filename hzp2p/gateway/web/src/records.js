// Opening a record in the browser, as hzp2p.crypto.records / hzp2p.gateway.client do:
// the record key is sealed (libsodium sealed box) to her Curve25519 key derived from her
// Ed25519 key; it must match the record's key commitment (personalised blake2b); the
// ciphertext is a SecretBox (24-byte nonce first) of the msgpack map {record_id, subject,
// type, fields}, which must name this very record.
import sodium from 'libsodium-wrappers';
import { decode } from '@msgpack/msgpack';
import { blake2b } from '@noble/hashes/blake2.js';
import { personal } from './keys.js';
import { equalBytes, unhex } from './util.js';

/** A record that does not open; `code` says which check failed (the page words it). */
export class RecordCryptoError extends Error {
  constructor(code) { super(code); this.code = code; }
}

export function openRecord(view, key) {
  const curvePk = sodium.crypto_sign_ed25519_pk_to_curve25519(key.pk);
  const curveSk = sodium.crypto_sign_ed25519_sk_to_curve25519(key.sk);
  let recordKey;
  try {
    recordKey = sodium.crypto_box_seal_open(unhex(view.sealed_key), curvePk, curveSk);
  } catch {
    throw new RecordCryptoError('sealed-key');
  }
  const commitment = blake2b(recordKey, { dkLen: 32, personalization: personal('hzp2p-reckey') });
  if (!equalBytes(commitment, unhex(view.key_commitment))) throw new RecordCryptoError('commitment');
  const box = unhex(view.ciphertext);
  let plain;
  try {
    plain = sodium.crypto_secretbox_open_easy(box.subarray(24), box.subarray(0, 24), recordKey);
  } catch {
    throw new RecordCryptoError('ciphertext');
  }
  const body = decode(plain);
  if (!body || body.record_id !== view.record_id || body.subject !== view.subject || body.type !== view.type) {
    throw new RecordCryptoError('binding');
  }
  return body.fields;
}
