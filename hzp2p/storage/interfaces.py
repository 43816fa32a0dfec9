"""Narrow storage interfaces, one per concern (hashicorp/raft style).

Each has an SQLite and an in-memory implementation passing one contract suite
(tests/storage/). This module owns the shapes only: the read side of contract
state shared with the contracts (`StateReader`), the records storage keeps for
the ledger (`BlockRecord`, `TxRecord`), and one synchronous Protocol per
concern. `SyncStorage` is their union, implemented by
`hzp2p.storage.memory.MemoryStorage` and `hzp2p.storage.sqlite.SqliteStorage`;
`hzp2p.storage.facade.AsyncStorage` is the async facade the Trio daemon calls.

Durability model (both implementations): every mutating call is one atomic
transaction; when it returns, its effect is durable (SQLite: WAL, fsynced with
synchronous=FULL). A call that raises changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from hzp2p.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta


class StateReader(Protocol):
    """Synchronous, read-only view of contract state (keys and values are bytes).

    The contracts execute a block against a StateReader and return the writes
    ({key: value, or None to delete}); storage commits the block, its verdicts,
    those writes and the new applied index in one transaction. The SQLite
    implementation runs the contracts on its own thread so these reads are sync.
    """

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with `prefix`, in ascending key order."""
        ...


TX_APPLIED = "applied"
TX_REJECTED = "rejected"
TX_STATUSES = frozenset({TX_APPLIED, TX_REJECTED})

Writes = Mapping[bytes, bytes | None]
"""State changes of one block: key -> new value, or None to delete the key."""


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A committed block as storage sees it; `raw` is the ledger's encoding, opaque here."""

    height: int
    block_hash: bytes
    prev_hash: bytes
    raft_index: int  # the Raft log index of the entry that carried this block
    raw: bytes

    def __post_init__(self) -> None:
        assert self.height >= 0 and self.raft_index >= 0, self


@dataclass(frozen=True, slots=True)
class TxRecord:
    """The verdict on one transaction of a block, indexed by `tx_hash`."""

    tx_hash: bytes
    height: int
    position: int  # 0-based position in the block
    tx_type: str
    status: str  # TX_APPLIED | TX_REJECTED
    reason: str = ""

    def __post_init__(self) -> None:
        assert self.status in TX_STATUSES, self.status
        assert self.position >= 0, self.position


REFUSALS_KEPT = 100_000
"""Admission refusals a node keeps answerable (`admin tx HASH`), newest first."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A transaction refused before it reached a mempool: local to this node, never
    replicated, bounded (REFUSALS_KEPT). Holds its hash, type and why — never its payload."""

    tx_hash: bytes
    tx_type: str
    reason: str
    problems: tuple[tuple[str, str], ...]  # (field, reason) of each payload problem
    at_ms: int


@dataclass(frozen=True, slots=True)
class ReadyBatch:
    """Step 2 of one Ready (see hzp2p.raft.ready): snapshot, then entries, then hard state."""

    entries: Sequence[Entry] = ()
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class InitialState:
    """Everything the Raft core and the ledger need to restart.

    If `applied_index < snapshot_meta.index`, the node crashed between storing a
    leader's snapshot and installing its state: reinstall it from `snapshot()`.
    """

    hard_state: HardState
    conf_state: ConfState
    snapshot_meta: SnapshotMeta | None  # the latest stored snapshot, if any
    first_index: int  # first index still in the log (compaction point + 1)
    entries: tuple[Entry, ...]  # every entry from first_index to the last index
    applied_index: int
    tip: tuple[int, bytes] | None  # (height, hash) of the last applied block

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.first_index - 1


ExecResult = tuple[Sequence[TxRecord], Writes]
BlockExecutor = Callable[[StateReader], ExecResult]
"""The contract engine's pure function: reads state, returns (verdicts, writes)."""
BlockJob = tuple[BlockRecord, BlockExecutor, int]
"""(block, execute, applied_index): one block of `apply_blocks_with`."""

T = TypeVar("T")


class HardStateStore(Protocol):
    """Term, vote and commit index; the conf state and applied index beside them."""

    def hard_state(self) -> HardState: ...

    def conf_state(self) -> ConfState: ...

    def applied_index(self) -> int: ...

    def set_applied(self, index: int, conf_state: ConfState | None = None) -> None:
        """Record entries up to `index` as applied (e.g. NOOP or CONF_CHANGE entries)."""
        ...


class LogStore(Protocol):
    """The Raft log: indexes are contiguous from first_index to last_index."""

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int:
        """Term of entry `index`; valid for first_index - 1 (the compaction point) .. last_index."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi): at most hi - lo of them and, beyond the first, at most
        `max_bytes` in total (Entry.size_bytes); at least one entry when lo < hi."""
        ...

    def append(self, entries: Sequence[Entry]) -> None:
        """Append; entries[0].index <= last_index first truncates the stored suffix from there."""
        ...

    def truncate_suffix(self, index: int) -> None:
        """Delete entries with index >= `index`."""
        ...

    def compact(self, index: int) -> None:
        """Drop entries <= `index`; requires a stored snapshot at or beyond `index`."""
        ...


class SnapshotStore(Protocol):
    def snapshot(self) -> Snapshot | None:
        """The latest stored snapshot."""
        ...

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot this node took of its own state; the log is left alone."""
        ...


class RaftStore(HardStateStore, LogStore, SnapshotStore, Protocol):
    def save_ready(
        self,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist step 2 of a Ready in one transaction: snapshot (its log handling
        follows Raft Fig. 13 rule 7: a log entry matching the snapshot's index and
        term keeps the suffix after it, otherwise the whole log is discarded), then
        entries, then hard state."""
        ...

    def save_batches(self, batches: Sequence[ReadyBatch]) -> None:
        """Group commit: several Ready batches, in order, in one transaction."""
        ...

    def load(self) -> InitialState: ...


class BlockStore(Protocol):
    def apply_block(
        self, block: BlockRecord, txs: Sequence[TxRecord], writes: Writes, applied_index: int
    ) -> None:
        """Atomically: the block, its verdicts, its state writes and the new applied index."""
        ...

    def apply_block_with(
        self, block: BlockRecord, execute: BlockExecutor, applied_index: int
    ) -> ExecResult:
        """Run `execute` against the current state, then `apply_block` its result in the
        same transaction; returns what `execute` returned. If it raises, nothing changes."""
        ...

    def apply_blocks_with(
        self, jobs: Sequence[BlockJob], applied_index: int | None = None
    ) -> list[ExecResult]:
        """Several committed blocks in ONE transaction (one fsync): for each
        (block, execute, applied_index) in order, `execute` runs against the state as the
        blocks before it in `jobs` left it, and its result is stored as by `apply_block`.
        Then `applied_index`, if given, is stored too (entries after the last block that
        change no state: NOOPs, opaque entries). Returns the results in order. All or
        nothing: if an `execute` raises or a block or index is refused, nothing changes."""
        ...

    def block_by_height(self, height: int) -> BlockRecord | None: ...

    def block_by_hash(self, block_hash: bytes) -> BlockRecord | None: ...

    def blocks(self, lo: int, hi: int) -> list[BlockRecord]:
        """Blocks with lo <= height < hi, ascending."""
        ...

    def tip(self) -> tuple[int, bytes] | None: ...

    def tx(self, tx_hash: bytes) -> TxRecord | None:
        """The verdict for `tx_hash`: the applied one if any, else the latest rejection."""
        ...

    def block_txs(self, height: int) -> list[TxRecord]: ...


class RefusalStore(Protocol):
    """Admission refusals (not part of the chain; nothing else depends on them)."""

    def record_refusals(self, refusals: Sequence[Refusal]) -> None:
        """Keep `refusals` (a later one for the same hash replaces it); drops the oldest
        beyond REFUSALS_KEPT."""
        ...

    def refusal(self, tx_hash: bytes) -> Refusal | None: ...

    def refusals_page(
        self, lo_ms: int, hi_ms: int, before: tuple[int, bytes] | None, limit: int
    ) -> list[Refusal]:
        """Refusals with lo_ms <= at_ms <= hi_ms, newest first by (at_ms, tx_hash), only those
        strictly before `before` (a cursor), at most `limit` (`admin refused`)."""
        ...

    def rejected_page(
        self, lo_h: int, hi_h: int, before: tuple[int, int] | None, limit: int
    ) -> list[TxRecord]:
        """In-block rejected verdicts with lo_h <= height <= hi_h, newest first by (height,
        position), only those strictly before `before`, at most `limit` (`admin refused`)."""
        ...


class StateStore(StateReader, Protocol):
    def install_state(
        self,
        pairs: Iterable[tuple[bytes, bytes]],
        applied_index: int,
        conf_state: ConfState,
        tip: tuple[int, bytes] | None,
    ) -> None:
        """Replace all contract state after installing a snapshot: the state, the applied
        index, the conf state and the chain tip the next block must follow (blocks below
        it may be missing locally)."""
        ...


class SyncStorage(RaftStore, BlockStore, StateStore, RefusalStore, Protocol):
    """Everything one node stores, synchronous. One writer at a time."""

    @property
    def chain_id(self) -> bytes: ...

    @property
    def genesis_hash(self) -> bytes: ...

    def integrity_check(self) -> list[str]:
        """Problems found (empty list = healthy)."""
        ...

    def close(self) -> None: ...
