"""Plain value types shared by the Raft core, storage and transport.

They are frozen dataclasses so a value handed out by the core can never be
mutated behind its back; storage and the codec copy them field by field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = int
"""Node ids are positive integers, assigned once and never reused."""


class EntryKind(enum.IntEnum):
    """What a log entry carries; the core interprets only NOOP and CONF_CHANGE."""

    NORMAL = 0
    NOOP = 1  # appended by every new leader (Raft §8) so it can commit in its own term
    CONF_CHANGE = 2  # data is an encoded ConfChange (see hzp2p.raft.membership)


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def size_bytes(self) -> int:
        """Bytes this entry costs against message and uncommitted-size bounds."""
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash: the current term, the vote in it, the commit index.

    Invariant kept by the core: `commit` never exceeds the last durable log index,
    and `vote` changes only together with an increase of `term` or from 0.
    """

    term: int = 0
    vote: NodeId = 0  # 0 = voted for nobody in `term`
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership in force: voters count toward quorums, learners only replicate."""

    voters: frozenset[NodeId] = field(default_factory=frozenset)
    learners: frozenset[NodeId] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        assert not (self.voters & self.learners), "a node is either voter or learner"

    @property
    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot sits in the log, and the membership at that point."""

    index: int
    term: int
    conf: ConfState


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes  # opaque to the core: the application's state at meta.index


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the shell may want to show (status, logs, metrics)."""

    leader_id: NodeId  # 0 = unknown
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches `index`."""

    index: int
    context: bytes
