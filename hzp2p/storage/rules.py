"""Validation rules shared by the SQLite and in-memory stores.

Both implementations call these with the facts they hold, so they refuse
exactly the same writes with exactly the same `InvalidOperation` messages. The
rules encode invariants that shipped bugs elsewhere broke (see LESSONS.md):
the vote changes only with the term or from 0 (raftos), the durable commit
index is never ahead of the durable log (PySyncObj #197), committed entries
are never truncated (raftos#26), and blocks form one chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from hzp2p.raft.types import Entry, HardState
from hzp2p.storage.errors import InvalidOperation
from hzp2p.storage.interfaces import TX_APPLIED, BlockRecord, TxRecord


def check_entries(
    entries: Sequence[Entry], first: int, last: int, prev_term: int | None
) -> list[int]:
    """`entries` (already trimmed of compacted indexes) may be appended at `entries[0].index`.

    `prev_term` is the stored term of entries[0].index - 1 (None when unknown). Returns the
    entries' terms (the SQLite store encodes them). The common case is checked with list
    operations that run in C (a Ready carries thousands of entries); the loop below only
    finds the first offence for the message.
    """
    e0 = entries[0].index
    if e0 > last + 1:
        raise InvalidOperation(f"append at {e0} leaves a gap after last index {last}")
    assert e0 >= first, (e0, first)
    prev = entries[0]
    if prev_term is not None and prev.term < prev_term:
        raise InvalidOperation(f"entry {e0} has term {prev.term} < term {prev_term} before it")
    terms = [e.term for e in entries]
    n = len(entries)
    if [e.index for e in entries] == list(range(e0, e0 + n)) and (
        terms.count(terms[0]) == n or terms == sorted(terms)
    ):
        return terms
    for e in entries[1:]:
        if e.index != prev.index + 1:
            raise InvalidOperation(f"entries not contiguous: {prev.index} then {e.index}")
        if e.term < prev.term:
            raise InvalidOperation(f"entry terms decrease at {e.index}: {prev.term} -> {e.term}")
        prev = e
    raise AssertionError("unreachable: the fast check failed, so the loop must find why")


def check_truncate(index: int, first: int, last: int, commit: int) -> None:
    if index <= commit:
        raise InvalidOperation(f"truncating from {index} would drop committed entries (commit {commit})")
    if index < first:
        raise InvalidOperation(f"truncating from {index}: entries before {first} are compacted")


def check_hard_state(old: HardState, new: HardState, last: int) -> None:
    if new.term < old.term:
        raise InvalidOperation(f"term goes back from {old.term} to {new.term}")
    if new.term == old.term and old.vote != 0 and new.vote != old.vote:
        raise InvalidOperation(
            f"vote changes from {old.vote} to {new.vote} within term {new.term}"
        )
    if new.commit < old.commit:
        raise InvalidOperation(f"commit goes back from {old.commit} to {new.commit}")
    if new.commit > last:
        raise InvalidOperation(f"commit {new.commit} is ahead of the durable log (last {last})")


def check_applied(index: int, applied: int, commit: int) -> None:
    if index < applied:
        raise InvalidOperation(f"applied index goes back from {applied} to {index}")
    if index > commit:
        raise InvalidOperation(f"applied index {index} is ahead of commit {commit}")


def check_block(
    block: BlockRecord, txs: Sequence[TxRecord], tip: tuple[int, bytes] | None
) -> None:
    if tip is not None:
        height, block_hash = tip
        if block.height != height + 1:
            raise InvalidOperation(f"block height {block.height} does not follow tip {height}")
        if block.prev_hash != block_hash:
            raise InvalidOperation(f"block {block.height}: prev_hash does not match the tip's hash")
    positions: set[int] = set()
    for tx in txs:
        if tx.height != block.height:
            raise InvalidOperation(f"tx row of height {tx.height} given with block {block.height}")
        if tx.position in positions:
            raise InvalidOperation(f"block {block.height}: duplicate tx position {tx.position}")
        positions.add(tx.position)


def trim_compacted(entries: Sequence[Entry], first: int) -> Sequence[Entry]:
    """Drop entries already covered by the compaction point (etcd MemoryStorage does the same)."""
    if entries and entries[0].index < first:
        return entries[first - entries[0].index :]
    return entries


def pick_verdict(rows: Sequence[TxRecord]) -> TxRecord | None:
    """The verdict `tx(hash)` reports: the first applied row, else the latest rejection."""
    applied = [t for t in rows if t.status == TX_APPLIED]
    if applied:
        return min(applied, key=lambda t: (t.height, t.position))
    return max(rows, key=lambda t: (t.height, t.position), default=None)


def encode_problems(problems: Sequence[tuple[str, str]]) -> bytes:
    """A refusal's (field, reason) pairs as stored (msgpack)."""
    return bytes(msgpack.packb([list(p) for p in problems], use_bin_type=True))


def decode_problems(raw: bytes) -> tuple[tuple[str, str], ...]:
    return tuple((str(f), str(r)) for f, r in msgpack.unpackb(raw, raw=False))
