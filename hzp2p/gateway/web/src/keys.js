// The citizen's Ed25519 key, kept in this browser (localStorage) and nowhere else: created
// here, imported from a key file (64 hex digits, the format of hzp2p.node.keys and the
// Python tools) or from the page's URL fragment (the demo's link, never sent to a server),
// exported as that file or as a QR code. Her pseudonym and encryption key derive from it
// exactly as hzp2p.crypto.records says.
import sodium from 'libsodium-wrappers';
import { blake2b } from '@noble/hashes/blake2.js';
import { hex, unhex, utf8 } from './util.js';

const STORE = 'hzp2p.citizen.seed';

/** Resolves once libsodium's WebAssembly is loaded (every function here needs it). */
export const cryptoReady = () => sodium.ready;

export function personal(text) {
  const p = new Uint8Array(16);
  p.set(utf8(text));
  return p;
}

export function pseudonym(pk) {
  return hex(blake2b(pk, { dkLen: 16, personalization: personal('hzp2p-subject') }));
}

export function fromSeed(seed) {
  const kp = sodium.crypto_sign_seed_keypair(seed);
  return { seed, pk: kp.publicKey, sk: kp.privateKey, pseudonym: pseudonym(kp.publicKey) };
}

/** Not a key: neither a key file's text nor 64 hex digits. */
export class KeyFormatError extends Error {}

/** The seed in a key file's text or a pasted string; throws KeyFormatError on anything else. */
export function parseSeed(text) {
  const s = String(text).trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(s)) throw new KeyFormatError('not a key');
  return unhex(s);
}

export async function loadKey() {
  await sodium.ready;
  const frag = new URLSearchParams(location.hash.slice(1)).get('key');
  if (frag) {
    try {
      saveKey(fromSeed(parseSeed(frag)));
    } finally {
      history.replaceState(null, '', location.pathname + location.search);  // out of the address bar
    }
  }
  const s = localStorage.getItem(STORE);
  return s ? fromSeed(parseSeed(s)) : null;
}

export function saveKey(key) {
  localStorage.setItem(STORE, hex(key.seed));
}

export function forgetKey() {
  localStorage.removeItem(STORE);
}

export async function createKey() {
  await sodium.ready;
  const key = fromSeed(sodium.randombytes_buf(32));
  saveKey(key);
  return key;
}

export function keyFileText(key) {
  return `${hex(key.seed)}\n`;
}
