"""The snapshot bytes (hzp2p.node.snapshot_format): deterministic encoding, strict decoding,
and every way a bad snapshot is refused before install (BadSnapshot, never a crash)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from hzp2p.contracts.digest import DIGEST_KEY
from hzp2p.contracts.storage_bridge import genesis_record, genesis_writes
from hzp2p.ledger.genesis import make_local_genesis
from hzp2p.node.snapshot_format import (
    BadSnapshot,
    StateSnapshot,
    check_snapshot,
    decode_snapshot,
    encode_snapshot,
    read_state_snapshot,
)
from hzp2p.raft.types import ConfState, Snapshot, SnapshotMeta
from hzp2p.storage import MemoryStorage

GENESIS, _ = make_local_genesis(3, seed=4)
CONF = ConfState(voters=frozenset({1, 2, 3}))


def state() -> StateSnapshot:
    store = MemoryStorage(GENESIS.chain_id.encode(), GENESIS.hash)
    store.set_applied(0, CONF)
    store.apply_block(genesis_record(GENESIS), [], genesis_writes(GENESIS), 0)
    return read_state_snapshot(store)


def snap(s: StateSnapshot, data: bytes | None = None, index: int = 0) -> Snapshot:
    return Snapshot(SnapshotMeta(index, 1, CONF), encode_snapshot(s) if data is None else data)


def test_round_trip_is_deterministic_and_verifies() -> None:
    s = state()
    assert s.height == 0 and s.block_hash == GENESIS.hash and s.tip_block == b""
    assert encode_snapshot(s) == encode_snapshot(state())
    assert decode_snapshot(encode_snapshot(s), 0) == s
    assert check_snapshot(snap(s), GENESIS.hash) == s
    keys = [k for k, _ in s.pairs]
    assert keys == sorted(keys) and DIGEST_KEY in keys


def tampered_value(s: StateSnapshot) -> StateSnapshot:
    k, v = s.pairs[-1]
    return dataclasses.replace(s, pairs=(*s.pairs[:-1], (k, v + b"!")))


def dropped_pair(s: StateSnapshot) -> StateSnapshot:
    assert s.pairs[0][0] == DIGEST_KEY
    return dataclasses.replace(s, pairs=s.pairs[:-1])


def forged_vector(s: StateSnapshot) -> StateSnapshot:
    pairs = tuple((k, bytes(len(v)) if k == DIGEST_KEY else v) for k, v in s.pairs)
    return dataclasses.replace(s, pairs=pairs)


BAD_STATES = {
    "a changed value": (tampered_value, "digest"),
    "a missing pair": (dropped_pair, "digest"),
    "a forged digest vector": (forged_vector, "stored digest vector"),
    "a claimed digest of another state": (
        lambda s: dataclasses.replace(s, state_digest=bytes(32)), "digest"),
    "a tip height other than the head's": (
        lambda s: dataclasses.replace(s, height=1), "head"),
    "a tip hash other than the head's": (
        lambda s: dataclasses.replace(s, block_hash=bytes(32)), "head"),
    "another index than the meta's": (
        lambda s: dataclasses.replace(s, index=5), "index"),
    "another membership than the meta's": (
        lambda s: dataclasses.replace(s, conf=ConfState(voters=frozenset({1}))), "membership"),
    "block bytes at the genesis": (
        lambda s: dataclasses.replace(s, tip_block=b"x"), "genesis"),
    "no chain head": (
        lambda s: dataclasses.replace(s, pairs=tuple(p for p in s.pairs if p[0] != b"x/head")),
        "head"),
}


@pytest.mark.parametrize("name", sorted(BAD_STATES))
def test_a_bad_state_is_refused(name: str) -> None:
    make, reason = BAD_STATES[name]
    with pytest.raises(BadSnapshot) as ei:
        check_snapshot(snap(make(state())), GENESIS.hash)
    assert reason in ei.value.reason


def test_another_chains_genesis_is_refused() -> None:
    with pytest.raises(BadSnapshot, match="genesis"):
        check_snapshot(snap(state()), bytes(32))


BAD_BYTES = {
    "garbage": b"\xc1\xc1\xc1",
    "empty": b"",
    "not an array": msgpack.packb({"a": 1}),
    "wrong version": msgpack.packb([2, 0, [], [], 0, bytes(32), bytes(32), b"", []]),
    "odd pair list": msgpack.packb([1, 0, [1], [], 0, bytes(32), bytes(32), b"", [b"k"]]),
    "unsorted keys": msgpack.packb(
        [1, 0, [1], [], 0, bytes(32), bytes(32), b"", [b"b", b"1", b"a", b"2"]]),
    "duplicate keys": msgpack.packb(
        [1, 0, [1], [], 0, bytes(32), bytes(32), b"", [b"a", b"1", b"a", b"2"]]),
    "string key": msgpack.packb([1, 0, [1], [], 0, bytes(32), bytes(32), b"", ["a", b"1"]]),
    "negative index": msgpack.packb([1, -1, [1], [], 0, bytes(32), bytes(32), b"", []]),
    "short hash": msgpack.packb([1, 0, [1], [], 0, bytes(31), bytes(32), b"", []]),
    "voter and learner": msgpack.packb([1, 0, [1], [1], 0, bytes(32), bytes(32), b"", []]),
    "truncated": encode_snapshot(state())[:-5],
}


@pytest.mark.parametrize("name", sorted(BAD_BYTES))
def test_malformed_bytes_are_refused(name: str) -> None:
    with pytest.raises(BadSnapshot):
        check_snapshot(snap(state(), BAD_BYTES[name]), GENESIS.hash)
