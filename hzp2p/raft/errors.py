"""Errors the Raft core returns to its caller.

Operational conditions (not bugs, not bad input): the caller gets a typed error
with a hint and decides what to do (retry elsewhere, back off, report).
"""

from __future__ import annotations

from hzp2p.raft.types import NodeId


class RaftError(Exception):
    """Base of every error the core raises to its caller."""


class NotLeader(RaftError):
    """This node cannot take the request; `leader_id` is the leader it knows of (0 = none)."""

    def __init__(self, leader_id: NodeId, hint: str = "") -> None:
        self.leader_id = leader_id
        msg = f"not the leader; known leader: {leader_id or 'none'}"
        super().__init__(f"{msg} ({hint})" if hint else msg)


class ProposalDropped(RaftError):
    """The leader refused the proposal (e.g. uncommitted-bytes bound, transfer in progress)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"proposal dropped: {reason}")


class ConfChangeInProgress(ProposalDropped):
    """A membership change is still pending; only one may be in flight at a time."""

    def __init__(self) -> None:
        super().__init__("a membership change is already pending; wait until it is applied")
