"""The model durable store of one simulated node: what survives a crash.

Owns the node's durable hard state, log and snapshot. `persist(ready)` applies
step 2 of the Ready contract atomically (snapshot, then entries with suffix
truncation, then hard state) and is called only when the simulated fsync
completes, so a crash before that loses the whole write, as on a real disk.
It returns the entries the write removed, for the checkers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hzp2p.raft.ready import Ready
from hzp2p.raft.types import ConfState, Entry, HardState, Snapshot


@dataclass(slots=True)
class DurableStore:
    base_conf: ConfState
    """The membership at index 0 (genesis) or at the snapshot: where a restart begins."""
    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    """entries[k].index == first_index + k (contiguous)."""
    persists: int = 0

    @property
    def first_index(self) -> int:
        return self.snapshot.meta.index + 1 if self.snapshot is not None else 1

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.entries) - 1

    @property
    def applied_base(self) -> int:
        """A restarted node's state machine starts from the snapshot (or empty at 0)."""
        return self.snapshot.meta.index if self.snapshot is not None else 0

    def entry(self, index: int) -> Entry | None:
        k = index - self.first_index
        if 0 <= k < len(self.entries):
            return self.entries[k]
        return None

    def term(self, index: int) -> int | None:
        if self.snapshot is not None and index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        e = self.entry(index)
        return e.term if e is not None else None

    def compact(self, snap: Snapshot) -> int:
        """The node snapshotted its state machine at `snap.meta.index` (an applied, hence
        durable, index): keep the snapshot, drop the log up to it; returns entries dropped."""
        meta = snap.meta
        assert meta.index >= self.applied_base, "compaction never moves backwards"
        assert self.term(meta.index) == meta.term, "snapshot point must be in the durable log"
        dropped = meta.index + 1 - self.first_index
        del self.entries[:dropped]
        self.snapshot = snap
        self.base_conf = meta.conf
        return dropped

    def persist(self, ready: Ready) -> list[Entry]:
        """Make step 2 of `ready` durable; return the entries it removed from the log."""
        removed: list[Entry] = []
        self.persists += 1
        snap = ready.snapshot
        if snap is not None:
            meta = snap.meta
            keep_suffix = self.term(meta.index) == meta.term
            cut = meta.index + 1 - self.first_index
            if keep_suffix:
                # Raft Fig. 13 rule 6: keep the log after a matching snapshot point.
                self.entries = self.entries[max(cut, 0) :]
            else:
                removed.extend(e for e in self.entries if e.index > meta.index)
                self.entries = []
            self.snapshot = snap
            self.base_conf = meta.conf
        if ready.entries:
            first = ready.entries[0].index
            assert first >= self.first_index, (
                f"write at {first} below first index {self.first_index}"
            )
            assert first <= self.last_index + 1, (
                f"gap: write at {first} after last index {self.last_index}"
            )
            k = first - self.first_index
            if k < len(self.entries):
                removed.extend(self.entries[k:])
                del self.entries[k:]
            prev = first - 1
            for e in ready.entries:
                assert e.index == prev + 1, "entries in a Ready must be contiguous"
                prev = e.index
            self.entries.extend(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state
        return removed
