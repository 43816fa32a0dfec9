"""Transactions: canonical encoding, signatures, envelope checks, size limits."""

from __future__ import annotations

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hzp2p.ledger.codec import CodecError, canonical, decode_canonical, pack
from hzp2p.ledger.tx import (
    MAX_TX_BYTES,
    Transaction,
    TxError,
    check_envelope,
    decode_tx,
)

KEY = nacl.signing.SigningKey(b"\x01" * 32)
OTHER = nacl.signing.SigningKey(b"\x02" * 32)
PAYLOAD = {"report_id": "r1", "region": "north", "metric": "cases", "value": 5, "period": "w1"}


def make(payload: object = PAYLOAD, **kw: object) -> Transaction:
    args: dict[str, object] = {"nonce": 1, "valid_from_ms": 1000, "valid_until_ms": 5000}
    args.update(kw)
    return Transaction.create(KEY, "hz-test", "epi.report", payload, **args)  # type: ignore[arg-type]


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=8), c, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6), st.integers(0, 2**64 - 1))
def test_roundtrip_any_payload(payload: dict[str, object], nonce: int) -> None:
    tx = make(payload, nonce=nonce)
    raw = tx.encode()
    back = decode_tx(raw)
    back.verify()
    assert back == tx and back.hash == tx.hash and back.encode() == raw
    assert back.payload == canonical(payload)


def test_key_order_is_canonical() -> None:
    a = make({"b": 1, "a": {"y": 2, "x": 3}})
    b = make({"a": {"x": 3, "y": 2}, "b": 1})
    assert a.encode() == b.encode() and a.hash == b.hash


@pytest.mark.parametrize(
    "payload",
    [{"x": 1.5}, {"x": [1, {"y": 0.0}]}, {"x": 2**63}, {"x": -(2**63) - 1}, {1: 2}, {"x": {1, 2}}],
)
def test_bad_payload_refused(payload: object) -> None:
    with pytest.raises(TxError):
        make(payload)


def test_float_refused_in_decoding() -> None:
    tx = make()
    body = pack([1, "hz-test", "epi.report", tx.signer, 1, 1000, 5000, {"v": 1.0}])
    with pytest.raises(TxError, match="float"):
        decode_tx(pack([body, tx.signature]))


def test_noncanonical_int_width_refused() -> None:
    tx = make()
    # nonce 1 as uint64 (0xcf) instead of a positive fixint
    body = tx.body.replace(b"\x01\xcd\x03\xe8", b"\xcf" + (1).to_bytes(8, "big") + b"\xcd\x03\xe8", 1)
    assert body != tx.body
    with pytest.raises(TxError, match="canonical"):
        decode_tx(pack([body, tx.signature]))


def test_depth_limit() -> None:
    deep: object = 1
    for _ in range(12):
        deep = {"d": deep}
    with pytest.raises(TxError, match="deeper"):
        make({"x": deep})


def test_tampered_signature_refused() -> None:
    tx = make()
    raw = bytearray(tx.encode())
    raw[-1] ^= 1
    back = decode_tx(bytes(raw))
    with pytest.raises(TxError, match="signature"):
        back.verify()


def test_tampered_body_changes_hash_and_fails() -> None:
    tx = make()
    raw = tx.encode()
    i = raw.index(b"north")
    bad = raw[:i] + b"south" + raw[i + 5 :]
    back = decode_tx(bad)
    assert back.hash != tx.hash
    with pytest.raises(TxError, match="signature"):
        back.verify()


def test_wrong_signer_refused() -> None:
    tx = make()
    forged = Transaction(
        tx.chain_id, tx.tx_type, bytes(OTHER.verify_key), 1, 1000, 5000, tx.payload, tx.signature
    )
    with pytest.raises(TxError, match="signature"):
        forged.verify()


def test_envelope_checks() -> None:
    tx = make()
    check_envelope(tx, "hz-test", 1000)
    check_envelope(tx, "hz-test", 5000)
    with pytest.raises(TxError, match="chain_id"):
        check_envelope(tx, "hz-other", 2000)
    with pytest.raises(TxError, match="expired"):
        check_envelope(tx, "hz-test", 5001)
    with pytest.raises(TxError, match="not yet valid"):
        check_envelope(tx, "hz-test", 999)


def test_window_and_fields() -> None:
    with pytest.raises(TxError, match="valid_until_ms"):
        make(valid_from_ms=10, valid_until_ms=5)
    with pytest.raises(TxError, match="window"):
        make(valid_from_ms=0, valid_until_ms=30 * 24 * 3600 * 1000)
    with pytest.raises(TxError, match="nonce"):
        make(nonce=-1)


def test_oversize_refused() -> None:
    with pytest.raises(TxError, match="exceeds"):
        make({"blob": b"x" * 60_000, "more": b"y" * 10_000})
    with pytest.raises(TxError, match="exceeds"):
        decode_tx(b"\x00" * (MAX_TX_BYTES + 1))


@given(st.binary(max_size=300))
def test_garbage_gives_typed_error(data: bytes) -> None:
    with pytest.raises(TxError):
        decode_tx(data)


def test_codec_errors_name_path() -> None:
    with pytest.raises(CodecError) as e:
        canonical({"a": [1, {"b": 1.0}]}, "payload")
    assert e.value.path == "payload.a[1].b"
    with pytest.raises(CodecError, match="canonical"):
        decode_canonical(b"\xcf" + (1).to_bytes(8, "big"))
