"""The credential issuer writes COSE framing, Sig_structure and the zlib stream by hand
(hzp2p.credentials.cose): the bytes must be exactly what cbor2 and zlib write."""

from __future__ import annotations

import zlib

import cbor2
import nacl.signing
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.credentials import cose
from hzp2p.credentials.b45 import b45decode

KEY = nacl.signing.SigningKey(b"\x07" * 32)
_text = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=128)
_uint = st.integers(min_value=0, max_value=2**63 - 1)


@settings(max_examples=60, deadline=None)
@given(_uint, _uint, _uint, _text, st.sampled_from(cose.COLOURS), _uint, _text, _uint)
def test_issued_bytes_are_what_cbor2_and_zlib_write(
    iss: int, iat: int, exp: int, sub: str, col: str, since: int, chain: str, h: int
) -> None:
    claims = cose.Claims(iss, iat, exp, sub, col, since, chain, h)
    text = cose.issue(KEY, claims)
    raw = zlib.decompress(b45decode(text.removeprefix(cose.PREFIX)))
    assert zlib.compress(raw, 0) == b45decode(text.removeprefix(cose.PREFIX))
    obj = cbor2.loads(raw)
    assert cbor2.dumps(obj) == raw  # the framing is the canonical encoding cbor2 writes
    protected, unprotected, payload, sig = obj.value
    assert obj.tag == cose.COSE_SIGN1_TAG and unprotected == {}
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    KEY.verify_key.verify(signed, sig)
    parsed = cose.parse(text)
    assert parsed.claims == claims and parsed.signed == signed and parsed.signature == sig


def test_long_parts_use_longer_heads() -> None:
    for n in (0, 23, 24, 255, 256, 1000):
        data = bytes(n)
        assert cose._bstr(data) == cbor2.dumps(data)
