"""Tunables of the Raft core, in ticks, entries and bytes (units in the names)."""

from __future__ import annotations

from dataclasses import dataclass

from hzp2p.raft.types import NodeId


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: NodeId
    election_ticks: int = 10
    """Minimum election timeout; each node draws its timeout from [election_ticks, 2*election_ticks)."""
    heartbeat_ticks: int = 1
    max_entries_per_msg: int = 256
    max_bytes_per_msg: int = 1 << 20
    max_inflight_msgs: int = 64
    max_uncommitted_bytes: int = 64 << 20
    max_snapshot_chunk_bytes: int = 256 << 10
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError("node_id must be a positive integer")
        if self.heartbeat_ticks <= 0 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("need 0 < heartbeat_ticks < election_ticks")
        if self.max_entries_per_msg <= 0 or self.max_bytes_per_msg <= 0:
            raise ValueError("message bounds must be positive")
        if self.max_inflight_msgs <= 0 or self.max_uncommitted_bytes <= 0:
            raise ValueError("in-flight and uncommitted bounds must be positive")
