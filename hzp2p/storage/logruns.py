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
from operator import le

from hzp2p.raft.types import Entry, EntryKind
from hzp2p.storage.errors import CorruptDatabase, StorageError

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


def row_problems(row: Row) -> list[str]:
    """What is wrong with one stored run, each naming the run; [] for a sound row."""
    first, last, term, terms, kinds, lens, data = row
    name = f"log run {first}..{last}"
    if not all(type(v) is int for v in (first, last, term)) or last < first:
        return [f"{name} is malformed: bounds or term are not integers in order"]
    n = last - first + 1
    blobs = (kinds, lens, data) if terms is None else (terms, kinds, lens, data)
    if not (
        all(isinstance(b, bytes) for b in blobs)
        and len(lens) == 4 * n
        and len(kinds) == n
        and sum(_unpack("I", lens)) == len(data)
    ):
        return [f"{name} is malformed: kinds, lens and data do not agree with {n} entries"]
    problems: list[str] = []
    bad = next((i for i, k in enumerate(kinds) if k >= len(_KINDS)), None)
    if bad is not None:
        problems.append(f"{name} has invalid kind byte {kinds[bad]} at index {first + bad}")
    if terms is not None:
        if len(terms) != 8 * n:
            problems.append(f"{name} has bad terms: {len(terms)} bytes for {n} entries")
            return problems
        ts = _unpack("q", terms)
        down = next((i for i in range(1, n) if ts[i] < ts[i - 1]), None)
        if down is not None:
            problems.append(
                f"{name} has terms decreasing within the run: term {ts[down]} at index"
                f" {first + down} after term {ts[down - 1]}"
            )
        if ts[-1] != term:
            problems.append(f"{name} has term column {term} but its last entry has term {ts[-1]}")
    return problems


def run_terms(row: Row) -> tuple[int, int]:
    """(first, last) term of a sound row."""
    term, terms = row[2], row[3]
    return (term, term) if terms is None else (_unpack("q", terms)[0], term)


def decode(row: Row, lo: int, hi: int, path: str = "") -> list[Entry]:
    """The entries of `row` with lo <= index < hi; CorruptDatabase if the row is damaged."""
    try:
        first, last, term, terms, kinds, lens, data = row
        a, b = max(lo, first) - first, min(hi, last + 1) - first
        if a >= b:
            return []
        n = last - first + 1
        ls = _unpack("I", lens)
        offs = [0, *accumulate(ls)]
        ts = _unpack("q", terms) if terms is not None else None
        # Every check is C-speed (or only for the rare run whose terms vary).
        if not (
            type(data) is bytes
            and type(kinds) is bytes
            and len(kinds) == n
            and len(ls) == n
            and offs[-1] == len(data)
            and max(kinds) < len(_KINDS)
            and (ts is None or (len(ts) == n and ts[-1] == term and all(map(le, ts, ts[1:]))))
        ):
            raise ValueError("row does not agree with itself")
        k = _KINDS
        return [
            Entry(term if ts is None else ts[i], first + i, k[kinds[i]], data[offs[i] : offs[i + 1]])
            for i in range(a, b)
        ]
    except StorageError:
        raise
    except Exception as err:  # any failure on damaged bytes is corruption, never a bare error
        try:
            problems = row_problems(row)
        except Exception:
            problems = []
        detail = "; ".join(problems) or f"log run {row[0]}..{row[1]} cannot be decoded ({err!r})"
        raise CorruptDatabase(path, detail) from err


class SqlLog:
    """The `log_runs` operations, inside the caller's transaction."""

    def __init__(self, conn: sqlite3.Connection, path: str = "") -> None:
        self._conn = conn
        self._path = path  # for CorruptDatabase

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
        first, last, term, terms = row
        if terms is None:
            return int(term)
        if not isinstance(terms, bytes) or len(terms) != 8 * (last - first + 1):
            raise CorruptDatabase(self._path, f"log run {first}..{last} has bad terms")
        return int(_unpack("q", terms)[index - first])

    def last(self) -> tuple[int, int] | None:
        """(index, term) of the last stored entry.

        The last of the run's `terms` when it has them (what `term()` and `decode` read), so a
        damaged `term` column is reported by the integrity check rather than trusted."""
        row = self._conn.execute(
            "SELECT first, last, term, terms FROM log_runs ORDER BY first DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        first, last, term, terms = row
        if isinstance(terms, bytes) and len(terms) == 8 * (last - first + 1):
            term = _unpack("q", terms)[-1]
        return (last, term)

    def truncate_from(self, index: int) -> None:
        """Drop every entry at or after `index`; a run that starts before it is cut short."""
        self._conn.execute("DELETE FROM log_runs WHERE first >= ?", (index,))
        row = self._run_at(index - 1)
        if row is not None and row[1] >= index:
            kept = decode(row, row[0], index, self._path)
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
                got = decode(row, lo, hi, self._path)
                if out and got and got[0].term < out[-1].term:
                    self._terms_decrease(out[-1], got[0])
                out += got
            return out
        size = 0
        for row in cur:
            got = decode(row, lo, hi, self._path)
            if out and got and got[0].term < out[-1].term:
                self._terms_decrease(out[-1], got[0])
            for e in got:
                size += len(e.data) + 16  # Entry.size_bytes
                if out and size > max_bytes:
                    cur.close()
                    return out
                out.append(e)
        return out

    def _terms_decrease(self, before: Entry, after: Entry) -> None:
        raise CorruptDatabase(
            self._path,
            f"log terms decrease between runs: entry {after.index} has term {after.term}"
            f" after term {before.term} at {before.index}",
        )

    def check(self, start: int, last: int) -> list[str]:
        """Problems with the stored runs for a log holding start+1..last."""
        problems: list[str] = []
        prev: int | None = None
        prev_term: int | None = None  # the last term of the previous sound run
        first_seen: int | None = None
        for row in self._conn.execute(f"SELECT {_COLS} FROM log_runs ORDER BY first"):
            first, end = row[0], row[1]
            found = row_problems(row)
            problems += found
            if found:
                prev_term = None
            else:
                t0, t1 = run_terms(row)
                if prev_term is not None and t0 < prev_term:
                    problems.append(
                        f"log terms decrease between runs: run {first}..{end} starts at term"
                        f" {t0} after term {prev_term} at {prev}"
                    )
                prev_term = t1
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
