"""The fast decode path (issue 9) accepts and refuses exactly what the full checks do.

`decode_tx` no longer runs `Transaction.__post_init__` (canonical copy of the
payload, re-pack, re-hash) nor re-packs the wire; `decode_block` no longer
re-packs every transaction, and a block computes its Merkle root once. The
reference below is the decoder as it was (every field through the dataclass
constructor, the wire re-packed and compared): on valid, mutated and crafted
non-canonical inputs both must agree — the same Transaction, or the same error.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hzp2p.ledger.block import Block, BlockError, decode_block
from hzp2p.ledger.codec import (
    INT64_MAX,
    INT64_MIN,
    MAX_KEY_CHARS,
    CodecError,
    canonical,
    is_canonical,
    pack,
    unpack,
)
from hzp2p.ledger.tx import TX_VERSION, Transaction, TxError, decode_tx
from hzp2p.tools.testkit import LocalChain


def reference_decode(data: bytes) -> Transaction:
    """decode_tx before issue 9: construct through __post_init__, re-pack the wire."""
    if type(data) is not bytes:
        raise TxError("wire", "must be bytes")
    if len(data) > 64 * 1024:
        raise TxError("size", "encoded transaction exceeds 65536 bytes")
    try:
        outer = unpack(data, "wire")
    except CodecError as e:
        raise TxError("wire", e.problem) from None
    if type(outer) is not list or len(outer) != 2:
        raise TxError("wire", "must be [body, signature]")
    body, sig = outer
    if type(body) is not bytes or type(sig) is not bytes:
        raise TxError("wire", "body and signature must be bin")
    if len(sig) != 64:
        raise TxError("signature", "must be 64 bytes")
    try:
        fields = unpack(body, "body")
    except CodecError as e:
        raise TxError("body", e.problem) from None
    if type(fields) is not list or len(fields) != 8:
        raise TxError("body", "must be an array of 8 fields")
    if fields[0] != TX_VERSION or type(fields[0]) is not int:
        raise TxError("version", f"unsupported version {fields[0]!r}")
    _v, chain_id, tx_type, signer, nonce, vfrom, vuntil, payload = fields
    tx = Transaction(chain_id, tx_type, signer, nonce, vfrom, vuntil, payload, sig, body)
    if msgpack.packb([tx.body, tx.signature], use_bin_type=True) != data:
        raise TxError("wire", "not the canonical encoding")
    return tx


def outcome(fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        tx = fn(data)
    except TxError as e:
        return ("error", str(e))
    return ("ok", (tx.hash, tx.body, tx.signature, tx.payload, tx.encode(), tx.nonce))


def same(data: bytes) -> None:
    new, old = outcome(decode_tx, data), outcome(reference_decode, data)
    assert new == old
    if new[0] == "ok":
        assert new[1][4] == data  # the wire bytes are kept as received


CHAIN = LocalChain(n_voters=1, n_learners=0, seed=5)
BASE = CHAIN.tx(1, "epi.report", {"report_id": "r", "region": "x", "metric": "m", "value": 1, "period": "p"})
WIRE = BASE.encode()


def wire_of(body_fields: list[Any], sig: bytes = BASE.signature) -> bytes:
    return msgpack.packb([msgpack.packb(body_fields, use_bin_type=True), sig], use_bin_type=True)


def fields_of(payload: Any) -> list[Any]:
    return [1, BASE.chain_id, "epi.report", BASE.signer, 7, 0, 1000, payload]


def test_valid_transactions_decode_identically() -> None:
    same(WIRE)
    tx = decode_tx(WIRE)
    assert tx == BASE and tx.hash == BASE.hash and tx.encode() is WIRE


@pytest.mark.parametrize(
    "payload",
    [
        {"b": 1, "a": 2},  # unsorted keys
        {"a": 1.5},  # float
        {"a": 2**63},  # beyond int64
        {"a": 2**64 - 1},
        {"": 1},  # empty key
        {"k" * (MAX_KEY_CHARS + 1): 1},
        {"a": {"c": 1, "b": 2}},  # unsorted nested
        {"a": [1, {"y": 1, "x": 2}]},
        {"a": "s" * (16 * 1024 + 1)},
        [1, 2],  # not a map
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},  # too deep
        {"a": list(range(4097))},
        {str(i): i for i in range(257)},
    ],
)
def test_non_canonical_payloads_fail_the_same_way(payload: Any) -> None:
    same(wire_of(fields_of(payload)))


def test_non_minimal_encodings_are_refused_the_same_way() -> None:
    body = BASE.body
    sig = BASE.signature
    variants = [
        b"\xdc\x00\x02" + pack(body) + pack(sig),  # array16 header
        b"\xdd\x00\x00\x00\x02" + pack(body) + pack(sig),  # array32 header
        b"\x92\xc5" + struct.pack(">H", len(body)) + body + pack(sig),  # bin16 for a short body
        b"\x92\xc6" + struct.pack(">I", len(body)) + body + pack(sig),  # bin32
        b"\x92" + pack(body) + b"\xc5\x00\x40" + sig,  # bin16 signature
        WIRE + b"\x00",  # trailing byte
        b"\x92" + msgpack.packb(body.decode("latin-1"), use_bin_type=True) + pack(sig),  # str
    ]
    for v in variants:
        same(v)
        with pytest.raises(TxError):
            decode_tx(v)
    # a non-minimal integer inside the body (nonce 7 as uint64)
    raw = msgpack.packb(fields_of(BASE.payload), use_bin_type=True)
    wide = raw.replace(b"\x07\x00\xcd\x03\xe8", b"\xcf" + (7).to_bytes(8, "big") + b"\x00\xcd\x03\xe8")
    assert wide != raw
    same(msgpack.packb([wide, sig], use_bin_type=True))
    # duplicate keys in the payload map (the last one wins in the decoded dict)
    tail = pack(BASE.payload)
    assert raw.endswith(tail)
    dup = raw[: -len(tail)] + b"\x82" + pack("a") + pack(1) + pack("a") + pack(2)
    assert unpack(dup)[7] == {"a": 2}
    same(msgpack.packb([dup, sig], use_bin_type=True))
    with pytest.raises(TxError, match="body: not the canonical encoding"):
        decode_tx(msgpack.packb([dup, sig], use_bin_type=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_wire_bytes_fail_or_pass_the_same_way(data: st.DataObject) -> None:
    b = bytearray(WIRE)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 3))
    same(bytes(b[: len(b) - cut] if cut else b))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN - 2, INT64_MAX + 2),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=3), inner, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_is_canonical_agrees_with_canonical_on_decoded_values(v: Any) -> None:
    try:
        x = unpack(msgpack.packb(v, use_bin_type=True))
    except (OverflowError, ValueError, CodecError):
        return  # not representable in msgpack at all
    try:
        c = canonical(x)
    except CodecError:
        assert not is_canonical(x)
        return
    assert is_canonical(x) == (pack(c) == pack(x))
    if is_canonical(x):
        assert c == x and pack(c) == pack(x)


def test_tx_payload_payload_path_still_named_in_errors() -> None:
    with pytest.raises(TxError, match=r"tx\.payload\.a\.b: floats are not allowed"):
        decode_tx(wire_of(fields_of({"a": {"b": 1.5}})))


def test_pack_is_msgpack_packb_in_every_thread() -> None:
    objs = [[i, "x" * i, {"k": bytes(i)}] for i in range(200)]
    expected = [msgpack.packb(o, use_bin_type=True) for o in objs]
    with pytest.raises(TypeError):
        pack(object())  # a failed pack leaves nothing behind in the thread's packer
    assert [pack(o) for o in objs] == expected
    results: list[list[bytes]] = []

    def work() -> None:
        results.append([pack(o) for o in objs for _ in range(5)][::5])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def block_of(n: int) -> tuple[LocalChain, Block]:
    chain = LocalChain(n_voters=1, n_learners=0, seed=6)
    txs = [
        chain.tx(1, "epi.report", {"report_id": f"r{i}", "region": "x", "metric": "m", "value": i, "period": "p"})
        for i in range(n)
    ]
    return chain, chain.make_block(txs)


def test_block_wire_is_kept_and_not_repacked_per_tx() -> None:
    _, blk = block_of(5)
    raw = blk.encode()
    again = decode_block(raw)
    assert again.encode() is raw and [t.encode() for t in again.txs] == [t.encode() for t in blk.txs]
    hdr, sig, txs = unpack(raw)
    # the same value with a non-minimal (array16) list header is refused
    long_list = b"\x93" + pack(hdr) + pack(sig) + b"\xdc" + struct.pack(">H", len(txs)) + b"".join(pack(t) for t in txs)
    assert unpack(long_list) == [hdr, sig, txs]
    with pytest.raises(BlockError, match="wire: not the canonical encoding"):
        decode_block(long_list)


def test_merkle_root_is_computed_once_and_still_checked() -> None:
    _, blk = block_of(4)
    assert blk.computed_root == blk.header.merkle_root  # create knows it
    blk.check_merkle()
    swapped = Block(blk.header, blk.signature, (blk.txs[1], blk.txs[0], *blk.txs[2:]))
    assert swapped.computed_root == b""
    with pytest.raises(BlockError, match="merkle_root"):
        swapped.check_merkle()
    with pytest.raises(BlockError, match="merkle_root"):
        swapped.check_merkle()  # the cached (wrong) root still fails
    decoded = decode_block(blk.encode())
    assert decoded.computed_root == blk.header.merkle_root


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), values, max_size=6))
def test_random_payloads_decode_the_same_way(payload: dict[str, Any]) -> None:
    try:
        wire = wire_of(fields_of(payload))  # keys in insertion order: sorted or not
    except (OverflowError, ValueError):
        return  # not representable in msgpack at all
    same(wire)
    try:
        tx = CHAIN.tx(1, "epi.report", payload)  # the canonical form, signed
    except TxError:
        return
    same(tx.encode())
    assert decode_tx(tx.encode()) == tx
