"""The SQLite Raft log as runs: one row per appended batch of entries, not one per entry.

Owns the `log_runs` table (schema v3) and its encoding. One row per entry cost
~1.5 us of CPU per entry in SQLite's b-tree and in building a tuple per entry;
a Ready's run of entries stored as one row costs ~0.3 us per entry (measured on
this machine, 1,000-entry batches of 200 bytes). A row holds the contiguous
entries `first..last`:

* `term`: the term of the last entry; `terms`: NULL when every entry of the run
  has that term (the usual case: a batch is appended within one term), else the
  terms as 8-byte little-endian signed integers, one per entry;
* `kinds`: one byte per entry (EntryKind); `lens`: the data lengths as 4-byte
  little-endian unsigned integers; `data`: the entries' data, concatenated.

Reads clip to what they ask for, so the log's bounds live in node_state and the
cache (sqlite.py), not here: a run straddling the compaction point stays whole
(compaction deletes only runs entirely at or below it), and a conflicting
suffix starting inside a run rewrites that run cut short.
"""

from __future__ import annotations

import sqlite3
import sys
from array import array
from collections.abc import Sequence
from itertools import accumulate

from hzp2p.raft.types import Entry, EntryKind

_KINDS = tuple(EntryKind)
_SWAP = sys.byteorder != "little"
assert array("I").itemsize == 4 and array("q").itemsize == 8

Row = tuple[int, int, int, bytes | None, bytes, bytes, bytes]
"""(first, last, term, terms, kinds, lens, data)"""

CREATE = """
CREATE TABLE log_runs (
    first INTEGER PRIMARY KEY,
    last INTEGER NOT NULL,
    term INTEGER NOT NULL,
    terms BLOB,
    kinds BLOB NOT NULL,
    lens BLOB NOT NULL,
    data BLOB NOT NULL,
    CHECK (last >= first AND length(kinds) = last - first + 1)
)
"""

_COLS = "first, last, term, terms, kinds, lens, data"
_INSERT = f"INSERT INTO log_runs ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


def _pack(code: str, values: Sequence[int]) -> bytes:
    a = array(code, values)
    if _SWAP:
        a.byteswap()
    return a.tobytes()


def _unpack(code: str, raw: bytes) -> array[int]:
    a = array(code)
    a.frombytes(raw)
    if _SWAP:
        a.byteswap()
    return a


def encode(entries: Sequence[Entry], terms: Sequence[int] | None = None) -> Row:
    """The row for `entries` (contiguous, terms not decreasing: checked by the caller).

    `terms` is [e.term for e in entries] when the caller has it already."""
    if terms is None:
        terms = [e.term for e in entries]
    datas = [e.data for e in entries]
    same = terms[0] == terms[-1]  # terms do not decrease, so equal ends = one term
    return (
        entries[0].index,
        entries[-1].index,
        terms[-1],
        None if same else _pack("q", terms),
        bytes([e.kind for e in entries]),
        _pack("I", [len(d) for d in datas]),
        b"".join(datas),
    )


def decode(row: Row, lo: int, hi: int) -> list[Entry]:
    """The entries of `row` with lo <= index < hi."""
    first, last, term, terms, kinds, lens, data = row
    a, b = max(lo, first) - first, min(hi, last + 1) - first
    if a >= b:
        return []
    offs = [0, *accumulate(_unpack("I", bytes(lens)))]
    data = bytes(data)
    ts = _unpack("q", bytes(terms)) if terms is not None else None
    k = _KINDS
    return [
        Entry(term if ts is None else ts[i], first + i, k[kinds[i]], data[offs[i] : offs[i + 1]])
        for i in range(a, b)
    ]


class SqlLog:
    """The `log_runs` operations, inside the caller's transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def insert(self, entries: Sequence[Entry], terms: Sequence[int] | None = None) -> None:
        self._conn.execute(_INSERT, encode(entries, terms))

    def _run_at(self, index: int) -> Row | None:
        row = self._conn.execute(
            f"SELECT {_COLS} FROM log_runs WHERE first <= ? ORDER BY first DESC LIMIT 1", (index,)
        ).fetchone()
        return row if row is not None and row[1] >= index else None

    def term(self, index: int) -> int | None:
        # Not the data: a run's data spans overflow pages that SQLite would read in full.
        row = self._conn.execute(
            "SELECT first, last, term, terms FROM log_runs WHERE first <= ?"
            " ORDER BY first DESC LIMIT 1",
            (index,),
        ).fetchone()
        if row is None or row[1] < index:
            return None
        first, _, term, terms = row
        return int(term) if terms is None else _unpack("q", bytes(terms))[index - first]

    def last(self) -> tuple[int, int] | None:
        """(index, term) of the last stored entry."""
        row = self._conn.execute(
            "SELECT last, term FROM log_runs ORDER BY first DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def truncate_from(self, index: int) -> None:
        """Drop every entry at or after `index`; a run that starts before it is cut short."""
        self._conn.execute("DELETE FROM log_runs WHERE first >= ?", (index,))
        row = self._run_at(index - 1)
        if row is not None and row[1] >= index:
            kept = decode(row, row[0], index)
            self._conn.execute("DELETE FROM log_runs WHERE first = ?", (row[0],))
            self.insert(kept)

    def delete_through(self, index: int) -> None:
        """Drop the runs that end at or before `index` (compaction); a straddling run stays."""
        # `first <= index` too (implied) so SQLite walks the primary key, not the table.
        self._conn.execute(
            "DELETE FROM log_runs WHERE first <= ? AND last <= ?", (index, index)
        )

    def delete_all(self) -> None:
        self._conn.execute("DELETE FROM log_runs")

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        out: list[Entry] = []
        cur = self._conn.execute(
            f"SELECT {_COLS} FROM log_runs WHERE last >= ? AND first < ? ORDER BY first",
            (lo, hi),
        )
        if max_bytes is None:
            for row in cur:
                out += decode(row, lo, hi)
            return out
        size = 0
        for row in cur:
            for e in decode(row, lo, hi):
                size += len(e.data) + 16  # Entry.size_bytes
                if out and size > max_bytes:
                    cur.close()
                    return out
                out.append(e)
        return out

    def check(self, start: int, last: int) -> list[str]:
        """Problems with the stored runs for a log holding start+1..last."""
        problems: list[str] = []
        prev: int | None = None
        first_seen: int | None = None
        for row in self._conn.execute(f"SELECT {_COLS} FROM log_runs ORDER BY first"):
            first, end, _term, terms, kinds, lens, data = row
            n = end - first + 1
            blobs = (kinds, lens, data) if terms is None else (terms, kinds, lens, data)
            well_formed = (
                all(isinstance(b, bytes) for b in blobs)
                and len(lens) == 4 * n
                and len(kinds) == n
                and sum(_unpack("I", lens)) == len(data)
            )
            if not well_formed:
                problems.append(f"log run {first}..{end} is malformed")
            elif terms is not None and len(terms) != 8 * n:
                problems.append(f"log run {first}..{end} has bad terms")
            if prev is not None and first != prev + 1:
                problems.append(f"log not contiguous: run {first}..{end} after {prev}")
            first_seen = first if first_seen is None else first_seen
            prev = end
        if prev is None:
            if last != start:
                problems.append(f"log empty but last index {last} after {start}")
        else:
            assert first_seen is not None
            if first_seen > start + 1 or prev != last:
                problems.append(f"log runs {first_seen}..{prev} do not cover {start + 1}..{last}")
        return problems


def migrate_v3(conn: sqlite3.Connection) -> None:
    """Schema v2 -> v3: the one-row-per-entry `log` table becomes `log_runs`."""
    conn.execute(CREATE)
    log = SqlLog(conn)
    run: list[Entry] = []
    for idx, term, kind, data in conn.execute("SELECT idx, term, kind, data FROM log ORDER BY idx"):
        e = Entry(term, idx, _KINDS[kind], bytes(data))
        if run and (idx != run[-1].index + 1 or len(run) >= 1000 or term < run[-1].term):
            log.insert(run)
            run = []
        run.append(e)
    if run:
        log.insert(run)
    conn.execute("DROP TABLE log")
