"""Shape checks on peer messages before the core acts on them.

The codec already checks types; this catches what is well-typed but
meaningless (negative indexes, non-contiguous batches, entries from the
future). A message that fails is dropped and counted, never raised on.
"""

from __future__ import annotations

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
    index, term = m.prev_log_index, m.prev_log_term
    for e in m.entries:
        if not isinstance(e, Entry) or e.index != index + 1 or not term <= e.term <= m.term:
            return False
        index, term = e.index, e.term
    return True
