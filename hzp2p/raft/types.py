"""Plain value types shared by the Raft core, storage and transport.

They are frozen dataclasses so a value handed out by the core can never be
mutated behind its back; storage and the codec copy them field by field. The
exception is `Entry`, created once per entry on the hot path: a slots class
that is immutable by convention (see its docstring).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

NodeId = int
"""Node ids are positive integers, assigned once and never reused."""


class EntryKind(enum.IntEnum):
    """What a log entry carries; the core interprets only NOOP and CONF_CHANGE."""

    NORMAL = 0
    NOOP = 1  # appended by every new leader (Raft §8) so it can commit in its own term
    CONF_CHANGE = 2  # data is an encoded ConfChange (see hzp2p.raft.membership)


class Entry:
    """One log entry: immutable by convention (nothing assigns to an Entry once built).

    Not a frozen dataclass on purpose: the leader builds one per proposal and
    every follower one per received entry, and a frozen dataclass's
    `object.__setattr__` per field made construction ~0.4 us (18 % of a
    leader's CPU in the replication benchmark); plain slot assignment is ~0.12 us.
    Equality, hashing and repr are by value, as the dataclass's were.
    """

    __slots__ = ("data", "index", "kind", "term")
    __match_args__ = ("term", "index", "kind", "data")
    FIELDS: ClassVar[tuple[str, ...]] = ("term", "index", "kind", "data")
    """Field order on the wire and in the constructor (the codec reads it)."""

    term: int
    index: int
    kind: EntryKind
    data: bytes

    def __init__(
        self, term: int, index: int, kind: EntryKind = EntryKind.NORMAL, data: bytes = b""
    ) -> None:
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data

    def size_bytes(self) -> int:
        """Bytes this entry costs against message and uncommitted-size bounds."""
        return len(self.data) + 16

    def replace(self, **changes: Any) -> Entry:
        """A copy with some fields changed (the frozen-dataclass `replace`)."""
        f = {n: getattr(self, n) for n in self.FIELDS}
        f.update(changes)
        return Entry(**f)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Entry:
            return NotImplemented
        return (
            self.index == other.index
            and self.term == other.term
            and self.kind == other.kind
            and self.data == other.data
        )

    def __hash__(self) -> int:
        return hash((self.term, self.index, self.kind, self.data))

    def __repr__(self) -> str:
        return (
            f"Entry(term={self.term!r}, index={self.index!r}, kind={self.kind!r}, "
            f"data={self.data!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Entry, (self.term, self.index, self.kind, self.data))


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
