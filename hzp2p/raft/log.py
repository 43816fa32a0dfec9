"""The in-memory Raft log: entries since the last snapshot, and how far each is durable.

`RaftLog` owns the log's indexes and the bookkeeping that makes the Ready
contract hold (see hzp2p.raft.ready):

- `persisted`   last index the driver has reported durable (via `advance`);
- `handed_out`  last index handed to the driver in a Ready (>= persisted);
  entries after it are *unstable* and go into the next Ready;
- `committed`   the commit index (never above the last index);
- `applying`    last committed index handed out for applying;
- `applied`     last committed index the driver reported applied.

A follower truncating a conflicting suffix pulls `persisted` and `handed_out`
back below the truncation point: those stale entries no longer count as ours.
Everything here is plain bookkeeping; the protocol decisions live in core.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from hzp2p.raft.types import Entry, Snapshot, SnapshotMeta

_INDEX = attrgetter("index")
_TERM = attrgetter("term")
_DATA = attrgetter("data")

MAX_TERM_SCAN_ENTRIES = 1 << 20
"""Upper bound on entries any single backwards term search walks."""


class RaftLog:
    def __init__(
        self, snapshot: SnapshotMeta | None, entries: Sequence[Entry], commit: int, applied: int
    ) -> None:
        self.snapshot_index = snapshot.index if snapshot else 0
        self.snapshot_term = snapshot.term if snapshot else 0
        self._entries: list[Entry] = []
        for e in entries:
            if e.index <= self.snapshot_index:
                continue  # already covered by the snapshot
            if e.index != self.last_index() + 1:
                raise ValueError(f"log entries are not contiguous at index {e.index}")
            if e.term < self.last_term():
                raise ValueError(f"log terms go backwards at index {e.index}")
            self._entries.append(e)
        if not self.snapshot_index <= commit <= self.last_index():
            # Tolerate a commit index behind the snapshot (it is implied by the snapshot).
            if commit < self.snapshot_index:
                commit = self.snapshot_index
            else:
                raise ValueError(f"commit {commit} beyond the durable log {self.last_index()}")
        applied = max(applied, self.snapshot_index)
        if applied > commit:
            raise ValueError(f"applied {applied} beyond commit {commit}")
        self.committed = commit
        self.applied = applied
        self.applying = applied
        self.persisted = self.last_index()
        self.handed_out = self.last_index()
        self.pending_snapshot: Snapshot | None = None  # received, not yet handed out

    # ---- indexes and terms -------------------------------------------------
    def first_index(self) -> int:
        return self.snapshot_index + 1

    def last_index(self) -> int:
        return self.snapshot_index + len(self._entries)

    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`, or None if compacted away or beyond the log."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index():
            return None
        return self._entries[index - self.snapshot_index - 1].term

    def match_term(self, index: int, term: int) -> bool:
        t = self.term(index)
        return t is not None and t == term

    def is_up_to_date(self, last_term: int, last_index: int) -> bool:
        """Raft §5.4.1: the other log is at least as up to date as ours."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def entry(self, index: int) -> Entry:
        assert self.snapshot_index < index <= self.last_index(), index
        return self._entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi (must be within the retained log)."""
        assert self.snapshot_index < lo <= hi <= self.last_index() + 1, (lo, hi)
        base = self.snapshot_index + 1
        return self._entries[lo - base : hi - base]

    def entries_from(self, lo: int, max_count: int, max_bytes: int) -> list[Entry] | None:
        """Up to `max_count` entries from `lo` within `max_bytes` (always at least one if any
        exist); None if `lo` is compacted away."""
        if lo <= self.snapshot_index:
            return None
        hi = min(self.last_index(), lo + max_count - 1)
        base = self.snapshot_index + 1
        chunk = self._entries[lo - base : hi - base + 1]
        # This runs for every entry sent to every follower: sum the sizes in C
        # (Entry.size_bytes = len(data) + 16) and walk entry by entry only when over.
        if sum(map(len, map(_DATA, chunk))) + 16 * len(chunk) <= max_bytes:
            return chunk
        out: list[Entry] = []
        size = 0
        for e in chunk:
            size += len(e.data) + 16
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def entries_size(self, lo: int, hi: int, term: int) -> int:
        """Total size_bytes of the entries lo <= index < hi whose term is `term`."""
        sl = self.slice(lo, hi)
        if not sl or not sl[0].term <= term <= sl[-1].term:
            return 0  # terms never decrease along the log: no entry of `term` here
        if sl[0].term != term or sl[-1].term != term:
            sl = [e for e in sl if e.term == term]
        return sum(map(len, map(_DATA, sl))) + 16 * len(sl)

    def first_index_of_term_at(self, index: int) -> int:
        """The first index of the run of entries having the same term as the entry at `index`
        (the follower's fast back-off hint); stops at the first retained index."""
        term = self.term(index)
        assert term is not None
        lo = index
        floor = max(self.first_index(), index - MAX_TERM_SCAN_ENTRIES)
        while lo > floor and self.term(lo - 1) == term:
            lo -= 1
        return lo

    def last_index_of_term_at_or_below(self, term: int, index: int) -> int:
        """The largest i <= index whose entry has `term`, or 0 if there is none retained."""
        i = min(index, self.last_index())
        floor = max(self.snapshot_index, i - MAX_TERM_SCAN_ENTRIES)
        while i > floor:
            t = self.term(i)
            assert t is not None
            if t == term:
                return i
            if t < term:
                return 0  # terms only grow along the log
            i -= 1
        return 0

    # ---- mutation ----------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        """Append at the end of the log: `entries` must continue it, contiguous, terms
        non-decreasing. Checked without a Python call per entry (this runs for every entry
        on every node): map/attrgetter and list comparisons run in C."""
        if not entries:
            return
        if __debug__:
            first = self.snapshot_index + len(self._entries) + 1
            assert list(map(_INDEX, entries)) == list(range(first, first + len(entries))), (
                "appended entries do not continue the log", first, entries[0].index
            )
            terms = list(map(_TERM, entries))
            assert terms[0] >= self.last_term() and terms == sorted(terms), "terms go backwards"
        self._entries.extend(entries)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first entry that is new or whose term conflicts with ours (0 if none).

        Entries that match are never touched (raftos#26): only from the first
        mismatch do we truncate.
        """
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """Replace everything from entries[0].index on with `entries`."""
        if not entries:
            return
        after = entries[0].index
        assert after > self.committed, ("truncating committed entries", after, self.committed)
        assert after > self.snapshot_index
        assert after <= self.last_index() + 1
        del self._entries[after - self.snapshot_index - 1 :]
        self.persisted = min(self.persisted, after - 1)
        self.handed_out = min(self.handed_out, after - 1)
        self.append(entries)

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        assert index <= self.last_index(), ("commit beyond last index", index, self.last_index())
        self.committed = index
        return True

    # ---- the Ready cycle ---------------------------------------------------
    def unstable_entries(self) -> list[Entry]:
        if self.handed_out >= self.last_index():
            return []
        return self.slice(self.handed_out + 1, self.last_index() + 1)

    def has_next_committed(self) -> bool:
        return self.applying < min(self.committed, self.last_index())

    def next_committed(self, max_count: int) -> list[Entry]:
        """Committed entries not yet handed out for applying, all durable once the current
        unstable entries are (the caller hands those out in the same Ready)."""
        hi = min(self.committed, self.last_index(), self.applying + max_count)
        if hi <= self.applying:
            return []
        lo = self.applying + 1
        if lo <= self.snapshot_index:  # pragma: no cover - guarded by restore()
            return []
        return self.slice(lo, hi + 1)

    def restore(self, snap: Snapshot) -> None:
        """Follower installs a snapshot: the whole log is replaced by the snapshot point."""
        meta = snap.meta
        self._entries = []
        self.snapshot_index = meta.index
        self.snapshot_term = meta.term
        self.committed = meta.index
        self.applied = max(self.applied, meta.index)
        self.applying = max(self.applying, meta.index)
        # The snapshot goes out in the next Ready; nothing before it is "unstable".
        self.persisted = meta.index
        self.handed_out = meta.index
        self.pending_snapshot = snap

    def compact(self, meta: SnapshotMeta) -> None:
        """Drop entries up to `meta.index` (the driver took a snapshot there)."""
        assert meta.index <= self.applied, "compact only applied entries"
        if meta.index <= self.snapshot_index:
            return
        assert self.term(meta.index) == meta.term
        del self._entries[: meta.index - self.snapshot_index]
        self.snapshot_index = meta.index
        self.snapshot_term = meta.term
