"""Membership changes the core understands: one change at a time (single-server changes).

We use single-server changes (Raft thesis §4.1) rather than joint consensus:
adding or removing one voter at a time keeps every old and new majority
overlapping, needs no intermediate configuration, and is what the ledger's
governance produces anyway (one admission or removal per vote). Learners never
count toward a quorum, so adding or removing one is always safe. The core
refuses a second change while one is pending (proposed, not yet applied).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hzp2p.raft.types import NodeId


class ConfChangeKind(enum.IntEnum):
    ADD_LEARNER = 0
    PROMOTE = 1  # learner -> voter
    REMOVE = 2  # voter or learner -> gone (ids are never reused)
    DEMOTE = 3  # voter -> learner


@dataclass(frozen=True, slots=True)
class ConfChange:
    kind: ConfChangeKind
    node_id: NodeId

    def encode(self) -> bytes:
        return bytes([int(self.kind)]) + self.node_id.to_bytes(8, "big")

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        if len(data) != 9 or data[0] > max(ConfChangeKind):
            raise ValueError("malformed ConfChange")
        return cls(ConfChangeKind(data[0]), int.from_bytes(data[1:], "big"))
