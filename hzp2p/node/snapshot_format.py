"""The state snapshot's bytes: what a node sends a follower that fell behind its compacted log.

It owns the encoding of a snapshot's data (the opaque `Snapshot.data` the Raft
core chunks and ships, `max_snapshot_chunk_bytes` at a time), its strict
decoding, and the checks a follower runs BEFORE installing one: a snapshot is
input from a peer (CometBFT ADR-104: a bad peer may serve a bad snapshot), so
everything is validated and a failure is a typed `BadSnapshot`, never a crash.

Format (msgpack, deterministic: the same state at the same index gives the
same bytes on every node)::

    [version=1, applied_index, [voters...], [learners...],
     tip_height, tip_hash, tip_state_digest, tip_block_raw,
     [key0, value0, key1, value1, ...]]          # every state pair, keys ascending

`tip_state_digest` is the contract-state digest after the tip block
(hzp2p.contracts.digest); the follower recomputes it from the pairs (a full
LtHash over the state) and compares, checks that the stored digest vector and
the chain head recorded in state (`x/head`) agree with the claimed tip, and
that the tip block's bytes hash to the claimed hash at the claimed height and
carry its proposer's signature (the proposer's node key from the snapshot's
own state). Height 0 is the genesis: no block bytes, the hash is the genesis
hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from hzp2p.contracts import members
from hzp2p.contracts.engine import read_head, state_digest
from hzp2p.contracts.state import DictState
from hzp2p.contracts.verify import BadStart, check_tip_state
from hzp2p.ledger.block import BlockError, decode_block
from hzp2p.raft.types import ConfState, Snapshot, SnapshotMeta
from hzp2p.storage import SyncStorage

SNAPSHOT_VERSION = 1
MAX_STATE_PAIRS = 50_000_000
"""Refuse a snapshot claiming more state pairs than this (decoder bound)."""


class BadSnapshot(Exception):
    """A snapshot that must not be installed (malformed, or not matching its chain tip)."""

    def __init__(self, index: int, reason: str) -> None:
        self.index = index
        self.reason = reason
        super().__init__(f"snapshot at index {index}: {reason}")


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """A decoded snapshot: the contract state at `index` and the chain tip it belongs to."""

    index: int
    conf: ConfState
    height: int
    block_hash: bytes
    state_digest: bytes
    tip_block: bytes  # the tip block's wire bytes (b"" at height 0, the genesis)
    pairs: tuple[tuple[bytes, bytes], ...]  # every state pair, keys strictly ascending

    @property
    def tip(self) -> tuple[int, bytes]:
        return (self.height, self.block_hash)


def encode_snapshot(s: StateSnapshot) -> bytes:
    flat: list[bytes] = []
    for k, v in s.pairs:
        flat.append(k)
        flat.append(v)
    obj = [
        SNAPSHOT_VERSION,
        s.index,
        sorted(s.conf.voters),
        sorted(s.conf.learners),
        s.height,
        s.block_hash,
        s.state_digest,
        s.tip_block,
        flat,
    ]
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _int(v: Any, what: str, index: int) -> int:
    if type(v) is not int or v < 0:
        raise BadSnapshot(index, f"{what} is not a non-negative integer")
    return v


def _bytes(v: Any, what: str, index: int, size: int | None = None) -> bytes:
    if type(v) is not bytes or (size is not None and len(v) != size):
        raise BadSnapshot(index, f"{what} is not {size or 'some'} bytes")
    return v


def _ids(v: Any, what: str, index: int) -> frozenset[int]:
    if type(v) is not list or any(type(x) is not int or x <= 0 for x in v):
        raise BadSnapshot(index, f"{what} is not a list of node ids")
    return frozenset(v)


def decode_snapshot(data: bytes, index: int) -> StateSnapshot:
    """Strictly decode `data` (the snapshot the core assembled for Raft index `index`)."""
    try:
        obj = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True,
            max_array_len=2 * MAX_STATE_PAIRS + 16, max_map_len=0, max_str_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise BadSnapshot(index, f"undecodable: {type(exc).__name__}") from None
    if type(obj) is not list or len(obj) != 9:
        raise BadSnapshot(index, "not a 9-element array")
    if obj[0] != SNAPSHOT_VERSION:
        raise BadSnapshot(index, f"unknown version {obj[0]!r}")
    applied = _int(obj[1], "applied index", index)
    voters, learners = _ids(obj[2], "voters", index), _ids(obj[3], "learners", index)
    if voters & learners:
        raise BadSnapshot(index, "a node is both voter and learner")
    height = _int(obj[4], "tip height", index)
    block_hash = _bytes(obj[5], "tip hash", index, 32)
    digest = _bytes(obj[6], "tip state digest", index, 32)
    tip_block = _bytes(obj[7], "tip block", index)
    flat = obj[8]
    if type(flat) is not list or len(flat) % 2:
        raise BadSnapshot(index, "state pairs are not a flat list of key, value")
    pairs: list[tuple[bytes, bytes]] = []
    prev = b""
    for i in range(0, len(flat), 2):
        k, v = flat[i], flat[i + 1]
        if type(k) is not bytes or type(v) is not bytes or not k:
            raise BadSnapshot(index, "a state key or value is not bytes")
        if k <= prev:
            raise BadSnapshot(index, "state keys are not strictly ascending")
        prev = k
        pairs.append((k, v))
    conf = ConfState(voters=voters, learners=learners)
    return StateSnapshot(applied, conf, height, block_hash, digest, tip_block, tuple(pairs))


def verify_snapshot(s: StateSnapshot, meta: SnapshotMeta, genesis_hash: bytes) -> None:
    """The checks before install (see the module docstring). Raises BadSnapshot."""
    i = meta.index
    if s.index != meta.index:
        raise BadSnapshot(i, f"data is for index {s.index}, not {meta.index}")
    if s.conf != meta.conf:
        raise BadSnapshot(i, "membership in the data differs from the snapshot's")
    state = DictState(dict(s.pairs))
    try:
        check_tip_state(state, s.height, s.block_hash, s.state_digest)
    except BadStart as exc:
        raise BadSnapshot(i, exc.reason) from None
    if s.height == 0:
        if s.block_hash != genesis_hash or s.tip_block:
            raise BadSnapshot(i, "tip at height 0 is not this chain's genesis")
        return
    try:
        block = decode_block(s.tip_block)
    except BlockError as exc:
        raise BadSnapshot(i, f"tip block undecodable: {exc}") from None
    if block.height != s.height or block.hash != s.block_hash:
        raise BadSnapshot(i, "tip block's height or hash differs from the claimed tip")
    proposer = members.get_institution(state, block.header.proposer)
    if proposer is None:
        raise BadSnapshot(i, "tip block's proposer is unknown to the snapshot's state")
    # the key in force when the tip was made: the one its own rotation (if it rotated its
    # proposer's keys, issue 19) replaced, else the current one
    key = next((c.old_node_key for c in members.membership_log(state)
                if c.kind == "rotate" and c.inst_id == proposer.inst_id
                and c.height == block.height), proposer.node_key)
    try:
        block.header.verify_signature(block.signature, key)
    except BlockError as exc:
        raise BadSnapshot(i, f"tip block: {exc}") from None


def check_snapshot(snap: Snapshot, genesis_hash: bytes) -> StateSnapshot:
    """Decode and verify a snapshot received from the leader (or read back from storage)."""
    s = decode_snapshot(snap.data, snap.meta.index)
    verify_snapshot(s, snap.meta, genesis_hash)
    return s


def read_state_snapshot(store: SyncStorage) -> StateSnapshot:
    """This node's own state at its applied index (run on the storage thread: one
    consistent view). The tip block's bytes come from the block store, or from a stored
    snapshot when this node installed one at that very tip."""
    index = store.applied_index()
    conf = store.conf_state()
    head = read_head(store)
    digest = state_digest(store)
    pairs = tuple(store.scan(b""))
    raw = b""
    if head.height > 0:
        rec = store.block_by_height(head.height)
        if rec is not None:
            raw = rec.raw
        else:
            stored = store.snapshot()
            assert stored is not None, "tip block missing and no snapshot to take it from"
            old = decode_snapshot(stored.data, stored.meta.index)
            assert old.height == head.height, "tip block missing from storage"
            raw = old.tip_block
    return StateSnapshot(index, conf, head.height, head.hash, digest, raw, pairs)
