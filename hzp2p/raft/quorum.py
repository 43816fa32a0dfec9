"""Majority arithmetic over the voters of one configuration.

Single-server membership changes (see membership.py) mean there is only ever
one voter set in force, so a quorum is a plain majority of it. Learners are
never passed in here: they neither vote nor count toward a commit.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from hzp2p.raft.types import NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_size(voters: Collection[NodeId]) -> int:
    return len(voters) // 2 + 1


def committed_index(voters: Collection[NodeId], match: Mapping[NodeId, int]) -> int:
    """The largest index that a majority of voters hold (0 for no voters)."""
    if not voters:
        return 0
    indexes = sorted((match.get(v, 0) for v in voters), reverse=True)
    return indexes[quorum_size(voters) - 1]


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Tally the votes of `voters` (others' votes are ignored)."""
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    q = quorum_size(voters)
    if granted >= q:
        return VoteResult.WON
    if len(voters) - rejected < q:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[NodeId], active: Collection[NodeId]) -> bool:
    return sum(1 for v in voters if v in active) >= quorum_size(voters)
