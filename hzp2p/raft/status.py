"""Read-only views of a core for the shell, metrics and tests: RaftStatus and RaftStats."""

from __future__ import annotations

from dataclasses import dataclass, field

from hzp2p.raft.progress import PeerStatus
from hzp2p.raft.types import ConfState, NodeId, Role


@dataclass(frozen=True, slots=True)
class RaftStats:
    """Counters of what the core did with its input; nothing here is an error of ours."""

    messages_received: int = 0
    messages_dropped: int = 0  # total of every reason below
    dropped_wrong_dst: int = 0
    dropped_unknown_sender: int = 0
    dropped_stale_term: int = 0
    dropped_invalid: int = 0
    dropped_in_lease: int = 0  # (pre-)vote requests ignored because a leader is live
    dropped_unexpected: int = 0  # valid but meaningless in our role (e.g. stale responses)
    dropped_conflicts_committed: int = 0  # an append that would rewrite committed entries
    outbound_dropped: int = 0  # our own messages dropped because the driver fell behind
    pre_campaigns: int = 0
    campaigns: int = 0
    leader_terms: int = 0  # times this node became leader
    proposals_dropped: int = 0
    check_quorum_step_downs: int = 0
    transfers_aborted: int = 0
    snapshot_unavailable: int = 0  # a follower needs a snapshot but compact() gave us none


@dataclass(frozen=True, slots=True)
class RaftStatus:
    node_id: NodeId
    term: int
    vote: NodeId
    role: Role
    leader_id: NodeId
    commit: int
    applied: int
    last_index: int
    persisted_index: int
    first_index: int
    conf: ConfState
    lead_transferee: NodeId = 0
    progress: tuple[PeerStatus, ...] = field(default=())  # leader only, sorted by node id
