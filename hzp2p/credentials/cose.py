"""The credential format: COSE_Sign1 (RFC 9052) over a CBOR claims map, zlib, base45, "HZ1:".

    HZ1:<base45(zlib(COSE_Sign1))>
    COSE_Sign1 = tag 18 [protected: bstr {1 (alg): -8 (EdDSA), 4 (kid): 8 bytes},
                         unprotected: {}, payload: bstr, signature: 64 bytes]
    payload    = {1 (iss): issuing institution id, 6 (iat): issued at (s), 4 (exp): valid
                  until (s), -70001: {"sub": pseudonym, "col": colour, "since": ms,
                  "chain": chain id, "h": height}}
The signature is Ed25519 over Sig_structure ["Signature1", protected, b"", payload],
by a credential key registered on chain (hzp2p.contracts.credentials); kid is the
first 8 bytes of SHA-256 of its public key. Parsing is strict and bounded: anything
else raises CredentialError. Issuing writes the fixed COSE framing and a stored zlib
block directly (the gateway signs one credential per health-code request; tests check
the bytes against cbor2 and zlib).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import cbor2
import nacl.signing

from hzp2p.contracts.credentials import KID_BYTES, key_id
from hzp2p.credentials.b45 import b45decode, b45encode

PREFIX = "HZ1:"
ALG_EDDSA = -8
COSE_SIGN1_TAG = 18
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HC = 1, 4, 6, -70001
MAX_TEXT_CHARS = 4096
MAX_COSE_BYTES = 2048
COLOURS = ("green", "yellow", "red")


class CredentialError(Exception):
    """A credential text cannot be parsed (not a signature check: see hzp2p.credentials.verify)."""


@dataclass(frozen=True, slots=True)
class Claims:
    issuer: int
    issued_at_s: int
    valid_until_s: int
    subject: str
    colour: str
    since_ms: int
    chain_id: str
    height: int


@dataclass(frozen=True, slots=True)
class Parsed:
    kid: bytes
    claims: Claims
    signed: bytes  # the Sig_structure bytes the signature covers
    signature: bytes


def _bstr(data: bytes) -> bytes:
    """`data` as a CBOR byte string (the shortest head, as cbor2.dumps writes it)."""
    n = len(data)
    if n < 24:
        return bytes((0x40 + n,)) + data
    if n < 0x100:
        return bytes((0x58, n)) + data
    assert n < 0x10000, "credential parts are small"
    return b"\x59" + n.to_bytes(2, "big") + data


_SIG1_HEAD = b"\x84\x6aSignature1"  # array(4), text(10) "Signature1"


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    """cbor2.dumps(["Signature1", protected, b"", payload]), written directly."""
    return _SIG1_HEAD + _bstr(protected) + b"\x40" + _bstr(payload)


def _zlib_stored(data: bytes) -> bytes:
    """`data` as a zlib stream (RFC 1950) of one stored deflate block: what zlib.compress(data,
    0) writes, without setting up a compressor (~30 us). Claims are mostly random bytes and
    hex (pseudonym, signature), which deflate does not shrink: level 9 saved nothing."""
    n = len(data)
    assert n < 0x10000
    return (b"\x78\x01\x01" + n.to_bytes(2, "little") + (n ^ 0xFFFF).to_bytes(2, "little") + data
            + zlib.adler32(data).to_bytes(4, "big"))


_PROTECTED: dict[bytes, bytes] = {}  # public key -> its protected header (issuers have one or two)


def _protected(key: nacl.signing.SigningKey) -> bytes:
    pk = key.verify_key.encode()
    hdr = _PROTECTED.get(pk)
    if hdr is None:
        hdr = cbor2.dumps({1: ALG_EDDSA, 4: key_id(pk)})
        if len(_PROTECTED) < 16:
            _PROTECTED[pk] = hdr
    return hdr


def issue(key: nacl.signing.SigningKey, claims: Claims) -> str:
    """Sign `claims` with credential key `key`; the QR text."""
    assert claims.colour in COLOURS
    protected = _protected(key)
    payload = cbor2.dumps(
        {
            CLAIM_ISS: claims.issuer,
            CLAIM_IAT: claims.issued_at_s,
            CLAIM_EXP: claims.valid_until_s,
            CLAIM_HC: {
                "sub": claims.subject,
                "col": claims.colour,
                "since": claims.since_ms,
                "chain": claims.chain_id,
                "h": claims.height,
            },
        }
    )
    sig = key.sign(_sig_structure(protected, payload)).signature
    # tag 18, array(4) [protected, {} (a0), payload, bstr(64) signature]: as cbor2 writes it
    cose = b"\xd2\x84" + _bstr(protected) + b"\xa0" + _bstr(payload) + b"\x58\x40" + sig
    return PREFIX + b45encode(_zlib_stored(cose))


def _int(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v < 2**63:
        raise CredentialError(f"{what} must be a non-negative integer")
    return v


def _str(v: Any, what: str) -> str:
    if type(v) is not str or not 0 < len(v) <= 128:
        raise CredentialError(f"{what} must be a short string")
    return v


def parse(text: str) -> Parsed:
    """Decode a credential's text (raises CredentialError); checks no signature."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise CredentialError(f"not a health-code credential (no {PREFIX} prefix)")
    if len(text) > MAX_TEXT_CHARS:
        raise CredentialError("credential text too long")
    try:
        packed = b45decode(text[len(PREFIX) :])
        d = zlib.decompressobj()
        cose = d.decompress(packed, MAX_COSE_BYTES + 1)
    except (ValueError, zlib.error) as exc:
        raise CredentialError(f"credential text is not base45/zlib ({type(exc).__name__})") from None
    if len(cose) > MAX_COSE_BYTES or d.unconsumed_tail:
        raise CredentialError("credential too large")
    try:
        obj = cbor2.loads(cose)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError):
        raise CredentialError("credential is not CBOR") from None
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise CredentialError("not a COSE_Sign1 structure (tag 18)")
    arr = obj.value
    if not isinstance(arr, (list, tuple)) or len(arr) != 4:  # (a tuple: faster than list | tuple)
        raise CredentialError("COSE_Sign1 must have 4 parts")
    protected, _unprotected, payload, sig = arr
    if not (isinstance(protected, bytes) and isinstance(payload, bytes) and isinstance(sig, bytes)
            and len(sig) == 64):
        raise CredentialError("COSE_Sign1 parts have the wrong types")
    try:
        hdr = cbor2.loads(protected)
        claims = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError):
        raise CredentialError("COSE headers or payload are not CBOR") from None
    if not isinstance(hdr, dict) or hdr.get(1) != ALG_EDDSA:
        raise CredentialError("algorithm must be EdDSA (-8)")
    kid = hdr.get(4)
    if not isinstance(kid, bytes) or len(kid) != KID_BYTES:
        raise CredentialError("kid must be 8 bytes")
    if not isinstance(claims, dict) or not isinstance(claims.get(CLAIM_HC), dict):
        raise CredentialError("payload has no health-code claim")
    hc = claims[CLAIM_HC]
    colour = _str(hc.get("col"), "colour")
    if colour not in COLOURS:
        raise CredentialError(f"unknown colour {colour!r}")
    c = Claims(  # issuer, issued_at_s, valid_until_s, subject, colour, since_ms, chain_id, height
        _int(claims.get(CLAIM_ISS), "issuer"),
        _int(claims.get(CLAIM_IAT), "iat"),
        _int(claims.get(CLAIM_EXP), "exp"),
        _str(hc.get("sub"), "subject"),
        colour,
        _int(hc.get("since"), "since"),
        _str(hc.get("chain"), "chain id"),
        _int(hc.get("h"), "height"),
    )
    return Parsed(kid, c, _sig_structure(protected, payload), sig)
