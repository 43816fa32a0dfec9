"""Shape checks on peer messages before the core acts on them.

The codec already checks types; this catches what is well-typed but
meaningless (negative indexes, non-contiguous batches, entries from the
future). A message that fails is dropped and counted, never raised on.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from hzp2p.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
)
from hzp2p.raft.types import Entry


def is_valid(m: Message) -> bool:
    if not isinstance(m, MESSAGE_TYPES):
        return False
    if not (_nat(m.term) and m.term > 0 and _nat(m.src) and _nat(m.dst)):
        return False
    if isinstance(m, RequestVote):
        return _nat(m.last_log_index) and _nat(m.last_log_term) and m.last_log_term <= m.term
    if isinstance(m, AppendEntries):
        return _valid_append(m)
    if isinstance(m, AppendEntriesResponse):
        return all(
            _nat(x) for x in (m.match_index, m.reject_index, m.conflict_index, m.conflict_term)
        )
    if isinstance(m, Heartbeat):
        return _nat(m.commit) and isinstance(m.context, bytes)
    if isinstance(m, InstallSnapshot):
        meta = m.meta
        return (
            _nat(meta.index)
            and meta.index > 0
            and _nat(meta.term)
            and 0 < meta.term <= m.term
            and _nat(m.offset)
            and isinstance(m.data, bytes)
        )
    if isinstance(m, InstallSnapshotResponse):
        return _nat(m.snapshot_index) and _nat(m.next_offset) and _nat(m.match_index)
    return True


def _nat(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _valid_append(m: AppendEntries) -> bool:
    if not (_nat(m.prev_log_index) and _nat(m.prev_log_term) and _nat(m.leader_commit)):
        return False
    if m.prev_log_term > m.term or (m.prev_log_index == 0 and m.prev_log_term != 0):
        return False
    return entries_follow(m.entries, m.prev_log_index, m.prev_log_term, m.term)


_INDEX = attrgetter("index")
_TERM = attrgetter("term")
_SMALL = 8


def entries_follow(entries: Sequence[Entry], prev_index: int, prev_term: int, term: int) -> bool:
    """`entries` are Entry objects with indexes prev_index+1, prev_index+2, ... and terms
    non-decreasing from prev_term up to at most `term`.

    Every follower runs this for every entry it receives, so it has no Python-level
    loop: the type, index and term scans are map() and list comparisons in C.
    """
    n = len(entries)
    if n <= _SMALL:  # a plain loop is cheaper than the C path's fixed cost
        index, last = prev_index, prev_term
        for e in entries:
            if (
                type(e) is not Entry
                or e.index != index + 1
                or type(e.term) is not int
                or not last <= e.term <= term
            ):
                return False
            index, last = e.index, e.term
        return True
    if set(map(type, entries)) != {Entry}:
        return False
    if list(map(_INDEX, entries)) != list(range(prev_index + 1, prev_index + 1 + n)):
        return False
    terms = list(map(_TERM, entries))
    if set(map(type, terms)) != {int}:
        return False
    return prev_term <= terms[0] and terms[-1] <= term and terms == sorted(terms)
