"""The messages Raft nodes exchange, as frozen dataclasses (one class per kind).

The core consumes and produces exactly these; the transport's codec
(hzp2p.net.codec) encodes and validates them field by field. Every message
carries `term`, `src` and `dst`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hzp2p.raft.types import Entry, NodeId, SnapshotMeta


@dataclass(frozen=True, slots=True)
class RequestVote:
    """Raft §5.2 RequestVote, also used for pre-vote (thesis §9.6).

    For a pre-vote, `term` is the term the sender *would* campaign in; its own
    term is not incremented. `transfer` marks a campaign started by TimeoutNow
    (leader transfer), which voters grant even within a leader's lease.
    """

    term: int
    src: NodeId
    dst: NodeId
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    term: int
    src: NodeId
    dst: NodeId
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Raft §5.3 AppendEntries; a batch of entries following (prev_log_index, prev_log_term)."""

    term: int
    src: NodeId
    dst: NodeId
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """Reply to AppendEntries.

    On success `match_index` is the last index the follower now durably holds
    that matches the leader. On rejection `reject_index` is the prev_log_index
    that failed and (`conflict_index`, `conflict_term`) is the fast back-off hint:
    the first index of the follower's conflicting term (or its last index + 1
    when its log is too short, with conflict_term 0).
    """

    term: int
    src: NodeId
    dst: NodeId
    success: bool
    match_index: int = 0
    reject_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness and commit propagation; `context` carries a ReadIndex round."""

    term: int
    src: NodeId
    dst: NodeId
    commit: int
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    term: int
    src: NodeId
    dst: NodeId
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leader transfer (thesis §3.10): the recipient campaigns at once."""

    term: int
    src: NodeId
    dst: NodeId


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of a snapshot; chunks are sent in order from `offset`."""

    term: int
    src: NodeId
    dst: NodeId
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    """`next_offset` lets the leader resume a transfer; `match_index` > 0 once installed."""

    term: int
    src: NodeId
    dst: NodeId
    snapshot_index: int
    next_offset: int
    match_index: int = 0
    rejected: bool = False


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | TimeoutNow
    | InstallSnapshot
    | InstallSnapshotResponse
)

MESSAGE_TYPES: tuple[type[Message], ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    TimeoutNow,
    InstallSnapshot,
    InstallSnapshotResponse,
)
