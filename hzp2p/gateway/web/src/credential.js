// Health-code credentials checked in the browser, as hzp2p.credentials.cose / .verify do:
//   HZ1:<base45(zlib(COSE_Sign1))>, COSE_Sign1 = tag 18 [protected {1: -8, 4: kid},
//   {}, payload {1: iss, 6: iat, 4: exp, -70001: {sub, col, since, chain, h}}, signature]
// verified with Ed25519 over ["Signature1", protected, h'', payload] against a key of the
// trust list (GET /v1/trust-list). Problems come back as {code, ...params} for the page
// to word in its language.
import sodium from 'libsodium-wrappers';
import { decode, encode } from 'cborg';
import { sha256 } from '@noble/hashes/sha2.js';
import { equalBytes, hex } from './util.js';

export const PREFIX = 'HZ1:';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:';
const MAX_TEXT = 4096;
const MAX_COSE = 2048;
export const CLOCK_SKEW_S = 60;
export const MAX_TRUST_AGE_S = 86_400;
const COLOURS = ['green', 'yellow', 'red'];

export class CredentialError extends Error {
  constructor(code) { super(code); this.code = code; }
}

export function b45decode(text) {
  const out = [];
  for (let i = 0; i < text.length; i += 3) {
    const chunk = text.slice(i, i + 3);
    const d = [...chunk].map((c) => ALPHABET.indexOf(c));
    if (d.some((x) => x < 0) || chunk.length === 1) throw new CredentialError('not-base45');
    const n = d[0] + 45 * d[1] + (chunk.length === 3 ? 2025 * d[2] : 0);
    if (chunk.length === 3) {
      if (n > 0xffff) throw new CredentialError('not-base45');
      out.push(n >> 8, n & 0xff);
    } else {
      if (n > 0xff) throw new CredentialError('not-base45');
      out.push(n);
    }
  }
  return new Uint8Array(out);
}

async function inflate(bytes) {
  // 'deflate' is the zlib format (RFC 1950), as Python's zlib.compress writes it
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  const reader = stream.getReader();
  const parts = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > MAX_COSE) { await reader.cancel(); throw new CredentialError('too-large'); }
    parts.push(value);
  }
  const out = new Uint8Array(n);
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
}

// cborg hands a tag's decoder a function that decodes the tagged content
const TAGS = { 18: (decodeContent) => ({ coseSign1: decodeContent() }) };

function cbor(bytes) {
  try {
    return decode(bytes, { useMaps: true, tags: TAGS });
  } catch {
    throw new CredentialError('not-cbor');
  }
}

function int(v) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new CredentialError('bad-claims');
  return v;
}

function str(v) {
  if (typeof v !== 'string' || v.length === 0 || v.length > 128) throw new CredentialError('bad-claims');
  return v;
}

/** Parse a credential's text (throws CredentialError); checks no signature. */
export async function parseCredential(input) {
  const text = String(input).trim();
  if (!text.startsWith(PREFIX)) throw new CredentialError('no-prefix');
  if (text.length > MAX_TEXT) throw new CredentialError('too-large');
  let cose;
  try {
    cose = await inflate(b45decode(text.slice(PREFIX.length)));
  } catch (e) {
    if (e instanceof CredentialError) throw e;
    throw new CredentialError('not-zlib');
  }
  const obj = cbor(cose);
  if (!obj || !Array.isArray(obj.coseSign1) || obj.coseSign1.length !== 4) throw new CredentialError('not-cose');
  const [protectedBytes, , payload, signature] = obj.coseSign1;
  if (![protectedBytes, payload, signature].every((x) => x instanceof Uint8Array) || signature.length !== 64) {
    throw new CredentialError('not-cose');
  }
  const hdr = cbor(protectedBytes);
  const claims = cbor(payload);
  if (!(hdr instanceof Map) || hdr.get(1) !== -8) throw new CredentialError('not-eddsa');
  const kid = hdr.get(4);
  if (!(kid instanceof Uint8Array) || kid.length !== 8) throw new CredentialError('not-cose');
  const hc = claims instanceof Map ? claims.get(-70001) : null;
  if (!(hc instanceof Map)) throw new CredentialError('bad-claims');
  const colour = str(hc.get('col'));
  if (!COLOURS.includes(colour)) throw new CredentialError('bad-claims');
  return {
    kid: hex(kid),
    issuer: int(claims.get(1)),
    issuedAtS: int(claims.get(6)),
    validUntilS: int(claims.get(4)),
    subject: str(hc.get('sub')),
    colour,
    sinceMs: int(hc.get('since')),
    chainId: str(hc.get('chain')),
    height: int(hc.get('h')),
    signed: encode(['Signature1', protectedBytes, new Uint8Array(0), payload]),
    signature,
  };
}

/** Check a trust list document's keys once (kid = first 8 bytes of SHA-256 of the key). */
export function loadTrustList(doc) {
  const keys = new Map();
  for (const k of doc.credential_keys) {
    const pk = Uint8Array.from(k.public_key.match(/../g).map((b) => parseInt(b, 16)));
    if (!equalBytes(sha256(pk).subarray(0, 8), Uint8Array.from(k.kid.match(/../g).map((b) => parseInt(b, 16))))) continue;
    keys.set(k.kid, { instId: k.inst_id, pk, revoked: k.revoked_ms !== null && k.revoked_ms !== undefined });
  }
  const members = new Map(doc.members.map((m) => [m.inst_id, m]));
  return { chainId: doc.chain_id, height: doc.height, generatedMs: doc.generated_ms, keys, members };
}

/** {ok, colour, subject, issuer, issuerName, validUntilS, ..., problems: [{code, ...}]}. */
export async function verifyCredential(text, trust, nowS) {
  await sodium.ready;
  const ageS = nowS - trust.generatedMs / 1000;
  if (ageS > MAX_TRUST_AGE_S) return { ok: false, problems: [{ code: 'trust-old', hours: (ageS / 3600).toFixed(1) }] };
  let c;
  try {
    c = await parseCredential(text);
  } catch (e) {
    if (!(e instanceof CredentialError)) throw e;
    return { ok: false, problems: [{ code: e.code }] };
  }
  const member = trust.members.get(c.issuer);
  const problems = [];
  const key = trust.keys.get(c.kid);
  if (!key) {
    problems.push({ code: 'unknown-key', kid: c.kid });
  } else {
    if (!sodium.crypto_sign_verify_detached(c.signature, c.signed, key.pk)) problems.push({ code: 'bad-signature' });
    if (key.revoked) problems.push({ code: 'revoked-key', kid: c.kid });
    if (key.instId !== c.issuer) problems.push({ code: 'wrong-issuer', owner: key.instId, issuer: c.issuer });
  }
  if (!member || !member.active) problems.push({ code: 'inactive-issuer', issuer: c.issuer });
  if (c.chainId !== trust.chainId) problems.push({ code: 'other-chain', chain: c.chainId });
  if (nowS > c.validUntilS) problems.push({ code: 'expired', s: Math.round(nowS - c.validUntilS) });
  if (nowS < c.issuedAtS - CLOCK_SKEW_S) problems.push({ code: 'future' });
  return {
    ok: problems.length === 0,
    colour: c.colour,
    subject: c.subject,
    issuer: c.issuer,
    issuerName: member ? member.name : null,
    issuedAtS: c.issuedAtS,
    validUntilS: c.validUntilS,
    sinceMs: c.sinceMs,
    height: c.height,
    problems,
  };
}
