"""SQLite storage, synchronous core: one connection, used by one thread.

This class is what runs on the database thread behind
`hzp2p.storage.facade.AsyncStorage`; tools that have no event loop (admin
verify, the crash-test checker) may use it directly. Every mutating method is
one `BEGIN IMMEDIATE ... COMMIT` and so one WAL fsync (synchronous=FULL);
hot paths use executemany and cached scalars (first/last index, hard state)
so a Ready batch costs one statement per table touched. Cached scalars change
only after COMMIT succeeds; a failed COMMIT poisons the store (after a failed
fsync the on-disk state is unknown, so no further writes are attempted).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from hzp2p.raft.types import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from hzp2p.storage import rules
from hzp2p.storage.errors import (
    InvalidOperation,
    LogCompacted,
    LogUnavailable,
    StoreClosed,
)
from hzp2p.storage.interfaces import (
    REFUSALS_KEPT,
    BlockExecutor,
    BlockJob,
    BlockRecord,
    ExecResult,
    InitialState,
    ReadyBatch,
    Refusal,
    TxRecord,
    Writes,
)
from hzp2p.storage.logruns import SqlLog
from hzp2p.storage.schema import OpenOptions, decode_conf, encode_conf, open_database, translate
from hzp2p.storage.sqlite_reader import SqlStateReader, scan_state

assert all(k.value == i for i, k in enumerate(EntryKind))

_SQL_UPSERT_STATE = (
    "INSERT INTO state (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_SQL_INSERT_TX = (
    "INSERT INTO txs (height, position, tx_hash, tx_type, status, reason) VALUES (?, ?, ?, ?, ?, ?)"
)


@dataclass(slots=True)
class _Cache:
    hs: HardState
    conf: ConfState
    applied: int
    start: int  # compaction point = first_index - 1
    start_term: int
    last: int
    last_term: int
    snap_index: int  # 0 = no snapshot
    tip: tuple[int, bytes] | None

    def copy(self) -> _Cache:  # dataclasses.replace costs several microseconds per commit
        return _Cache(
            self.hs,
            self.conf,
            self.applied,
            self.start,
            self.start_term,
            self.last,
            self.last_term,
            self.snap_index,
            self.tip,
        )


class SqliteStorage:
    """`SyncStorage` in one SQLite database file (WAL, synchronous=FULL)."""

    def __init__(
        self,
        path: str,
        chain_id: bytes | None,
        genesis_hash: bytes | None,
        options: OpenOptions | None = None,
    ) -> None:
        """Open (creating if needed). chain_id/genesis None: open an existing DB of any chain."""
        self.path = path
        self._conn, self._lock, self._chain_id, self._genesis_hash = open_database(
            path, chain_id, genesis_hash, options or OpenOptions()
        )
        self._log = SqlLog(self._conn, path)
        self._poisoned: str | None = None
        self._closed = False
        self._w: _Cache | None = None
        try:
            self._c = self._read_cache()
        except BaseException:
            self.close()
            raise

    def _read_cache(self) -> _Cache:
        with self._guard():
            q = self._conn.execute
            term, vote, commit, applied, conf, start, start_term, tip_h, tip_hash = q(
                "SELECT term, vote, commit_index, applied_index, conf, log_start, log_start_term,"
                " tip_height, tip_hash FROM node_state WHERE id = 1"
            ).fetchone()
            last, last_term = self._log.last() or (start, start_term)
            snap = q("SELECT idx FROM snapshot WHERE id = 1").fetchone()
            return _Cache(
                hs=HardState(term, vote, commit),
                conf=decode_conf(conf),
                applied=applied,
                start=start,
                start_term=start_term,
                last=last,
                last_term=last_term,
                snap_index=0 if snap is None else snap[0],
                tip=None if tip_h is None else (tip_h, bytes(tip_hash)),
            )

    # -- plumbing ------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if self._poisoned is not None:
            raise StoreClosed(f"database {self.path}: {self._poisoned}")
        try:
            yield
        except sqlite3.Error as err:
            raise translate(err, self.path) from err

    @contextmanager
    def _txn(self) -> Iterator[_Cache]:
        """One transaction; yields the working copy of the cache, installed on COMMIT."""
        assert self._w is None, "transactions do not nest"
        if self._poisoned is not None:
            raise StoreClosed(f"database {self.path}: {self._poisoned}")
        execute = self._conn.execute
        self._w = w = self._c.copy()
        try:
            execute("BEGIN IMMEDIATE")
            try:
                yield w
            except BaseException:
                execute("ROLLBACK")
                raise
            try:
                execute("COMMIT")
            except BaseException as err:
                self._poisoned = f"commit failed ({err}); reopen the database"
                raise
            self._c = w
        except sqlite3.Error as err:
            raise translate(err, self.path) from err
        finally:
            self._w = None

    @property
    def _cw(self) -> _Cache:
        """The working cache inside a transaction, the committed one outside."""
        return self._w if self._w is not None else self._c

    @property
    def chain_id(self) -> bytes:
        return self._chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._genesis_hash

    def __enter__(self) -> SqliteStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._poisoned = "closed"
            self._conn.close()
            self._lock.close()

    def integrity_check(self) -> list[str]:
        with self._guard():
            q = self._conn.execute
            problems = [str(r[0]) for r in q("PRAGMA integrity_check").fetchall()]
            if problems == ["ok"]:
                problems = []
            problems += [f"foreign key violation in {r[0]}" for r in q("PRAGMA foreign_key_check")]
            c = self._read_cache()
            problems += self._log.check(c.start, c.last)
            if c.hs.commit > max(c.last, c.snap_index):
                problems.append(f"commit {c.hs.commit} ahead of the log ({c.last})")
            if c.applied > max(c.hs.commit, c.snap_index):
                problems.append(f"applied {c.applied} ahead of commit {c.hs.commit}")
            top = q("SELECT height, hash, raft_index FROM blocks ORDER BY height DESC LIMIT 1")
            row = top.fetchone()
            if row is not None and c.tip != (row[0], bytes(row[1])):
                problems.append(f"tip {c.tip} does not match the highest block {row[0]}")
            if row is not None and row[2] > c.applied:
                problems.append(f"block {row[0]} at raft index {row[2]} beyond applied {c.applied}")
            return problems

    # -- hard state ----------------------------------------------------------

    def hard_state(self) -> HardState:
        return self._c.hs

    def conf_state(self) -> ConfState:
        return self._c.conf

    def applied_index(self) -> int:
        return self._c.applied

    def set_applied(self, index: int, conf_state: ConfState | None = None) -> None:
        with self._txn() as w:
            rules.check_applied(index, w.applied, max(w.hs.commit, w.snap_index))
            w.applied = index
            if conf_state is not None:
                w.conf = conf_state
            self._conn.execute(
                "UPDATE node_state SET applied_index = ?, conf = ? WHERE id = 1",
                (index, encode_conf(w.conf)),
            )

    # -- log -----------------------------------------------------------------

    def first_index(self) -> int:
        return self._c.start + 1

    def last_index(self) -> int:
        return self._c.last

    def term(self, index: int) -> int:
        c = self._cw
        if index == c.last:
            return c.last_term
        if index == c.start:
            return c.start_term
        if index < c.start:
            raise LogCompacted(index, c.start + 1, c.last)
        if index > c.last:
            raise LogUnavailable(index, c.start + 1, c.last)
        with self._guard():
            term = self._log.term(index)
        assert term is not None, f"log entry {index} missing inside {c.start + 1}..{c.last}"
        return term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        c = self._c
        if lo <= c.start:
            raise LogCompacted(lo, c.start + 1, c.last)
        if hi > c.last + 1 or lo > hi:
            raise LogUnavailable(hi - 1, c.start + 1, c.last)
        if lo == hi:
            return []
        with self._guard():
            out = self._log.entries(lo, hi, max_bytes)
        assert len(out) == hi - lo or max_bytes is not None, (lo, hi, len(out))
        return out

    def _append(self, w: _Cache, entries: Sequence[Entry]) -> None:
        entries = rules.trim_compacted(entries, w.start + 1)
        if not entries:
            return
        e0 = entries[0].index
        prev_term = self.term(e0 - 1) if e0 - 1 <= w.last else None
        terms = rules.check_entries(entries, w.start + 1, w.last, prev_term)
        if e0 <= w.last:
            rules.check_truncate(e0, w.start + 1, w.last, w.hs.commit)
            self._log.truncate_from(e0)
        self._log.insert(entries, terms)  # one row for the whole run (hzp2p.storage.logruns)
        w.last, w.last_term = entries[-1].index, entries[-1].term

    def append(self, entries: Sequence[Entry]) -> None:
        with self._txn() as w:
            self._append(w, entries)

    def truncate_suffix(self, index: int) -> None:
        with self._txn() as w:
            if index > w.last:
                return
            rules.check_truncate(index, w.start + 1, w.last, w.hs.commit)
            last_term = self.term(index - 1)  # before the cache moves its last index
            self._log.truncate_from(index)
            w.last, w.last_term = index - 1, last_term

    def compact(self, index: int) -> None:
        with self._txn() as w:
            if index <= w.start:
                return
            if index > w.last:
                raise LogUnavailable(index, w.start + 1, w.last)
            if w.snap_index < index:
                raise InvalidOperation(f"compacting to {index} needs a snapshot at or beyond it")
            self._set_start(w, index, self.term(index))
            self._log.delete_through(index)

    def _set_start(self, w: _Cache, index: int, term: int) -> None:
        w.start, w.start_term = index, term
        self._conn.execute(
            "UPDATE node_state SET log_start = ?, log_start_term = ? WHERE id = 1", (index, term)
        )

    # -- snapshots -----------------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        with self._guard():
            row = self._conn.execute(
                "SELECT idx, term, conf, data FROM snapshot WHERE id = 1"
            ).fetchone()
        if row is None:
            return None
        return Snapshot(SnapshotMeta(row[0], row[1], decode_conf(row[2])), bytes(row[3]))

    def _store_snapshot(self, w: _Cache, snapshot: Snapshot) -> None:
        m = snapshot.meta
        self._conn.execute(
            "INSERT OR REPLACE INTO snapshot (id, idx, term, conf, data) VALUES (1, ?, ?, ?, ?)",
            (m.index, m.term, encode_conf(m.conf), snapshot.data),
        )
        w.snap_index = m.index

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._txn() as w:
            m = snapshot.meta
            if m.index < w.snap_index:
                raise InvalidOperation(f"snapshot at {m.index} is older than the stored one")
            if m.index > w.applied:
                raise InvalidOperation(f"snapshot at {m.index} is ahead of applied {w.applied}")
            if w.start <= m.index <= w.last and self.term(m.index) != m.term:
                raise InvalidOperation(f"snapshot term {m.term} does not match the log at {m.index}")
            self._store_snapshot(w, snapshot)

    def _install_snapshot(self, w: _Cache, snapshot: Snapshot) -> None:
        m = snapshot.meta
        if m.index < w.snap_index:
            raise InvalidOperation(f"snapshot at {m.index} is older than the stored one")
        keep = w.start + 1 <= m.index <= w.last and self.term(m.index) == m.term
        if keep:
            self._log.delete_through(m.index)
        else:
            self._log.delete_all()
            w.last, w.last_term = m.index, m.term
        self._set_start(w, m.index, m.term)
        self._store_snapshot(w, snapshot)
        w.conf = m.conf
        self._conn.execute(
            "UPDATE node_state SET conf = ? WHERE id = 1", (encode_conf(m.conf),)
        )

    # -- Ready ---------------------------------------------------------------

    def _save(self, w: _Cache, batch: ReadyBatch) -> None:
        if batch.snapshot is not None:
            self._install_snapshot(w, batch.snapshot)
        if batch.entries:
            self._append(w, batch.entries)
        hs = batch.hard_state
        if hs is not None and hs != w.hs:
            rules.check_hard_state(w.hs, hs, max(w.last, w.snap_index))
            self._conn.execute(
                "UPDATE node_state SET term = ?, vote = ?, commit_index = ? WHERE id = 1",
                (hs.term, hs.vote, hs.commit),
            )
            w.hs = hs

    def save_ready(
        self,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        with self._txn() as w:
            self._save(w, ReadyBatch(entries, hard_state, snapshot))

    def save_batches(self, batches: Sequence[ReadyBatch]) -> None:
        with self._txn() as w:
            for batch in batches:
                self._save(w, batch)

    def load(self) -> InitialState:
        c = self._c
        snap = self.snapshot()
        return InitialState(
            hard_state=c.hs,
            conf_state=c.conf,
            snapshot_meta=snap.meta if snap else None,
            first_index=c.start + 1,
            entries=tuple(self.entries(c.start + 1, c.last + 1)),
            applied_index=c.applied,
            tip=c.tip,
        )

    # -- blocks --------------------------------------------------------------

    def _apply_block(
        self,
        w: _Cache,
        block: BlockRecord,
        txs: Sequence[TxRecord],
        writes: Writes,
        applied_index: int,
    ) -> None:
        rules.check_block(block, txs, w.tip)
        rules.check_applied(applied_index, w.applied, max(w.hs.commit, w.snap_index))
        h = block.height
        x = self._conn.execute
        x(
            "INSERT INTO blocks (height, hash, prev_hash, raft_index, raw) VALUES (?, ?, ?, ?, ?)",
            (h, block.block_hash, block.prev_hash, block.raft_index, block.raw),
        )
        self._conn.executemany(
            _SQL_INSERT_TX,
            [(h, t.position, t.tx_hash, t.tx_type, t.status, t.reason) for t in txs],
        )
        keys = sorted(writes)
        puts = [(k, v) for k in keys if (v := writes[k]) is not None]
        if puts:
            self._conn.executemany(_SQL_UPSERT_STATE, puts)
        if len(puts) != len(keys):
            dels = [(k,) for k in keys if writes[k] is None]
            self._conn.executemany("DELETE FROM state WHERE key = ?", dels)
        x(
            "UPDATE node_state SET applied_index = ?, tip_height = ?, tip_hash = ? WHERE id = 1",
            (applied_index, h, block.block_hash),
        )
        w.applied = applied_index
        w.tip = (h, block.block_hash)

    def apply_block(
        self, block: BlockRecord, txs: Sequence[TxRecord], writes: Writes, applied_index: int
    ) -> None:
        with self._txn() as w:
            self._apply_block(w, block, txs, writes, applied_index)

    def apply_block_with(
        self, block: BlockRecord, execute: BlockExecutor, applied_index: int
    ) -> ExecResult:
        with self._txn() as w:
            reader = SqlStateReader(self._conn)
            try:
                result = execute(reader)
            finally:
                reader.valid = False
            txs, writes = result
            self._apply_block(w, block, txs, writes, applied_index)
            return result

    def apply_blocks_with(
        self, jobs: Sequence[BlockJob], applied_index: int | None = None
    ) -> list[ExecResult]:
        out: list[ExecResult] = []
        with self._txn() as w:
            reader = SqlStateReader(self._conn)  # same connection: sees the earlier blocks
            try:
                for block, execute, index in jobs:
                    result = execute(reader)
                    self._apply_block(w, block, result[0], result[1], index)
                    out.append(result)
            finally:
                reader.valid = False
            if applied_index is not None:
                rules.check_applied(applied_index, w.applied, max(w.hs.commit, w.snap_index))
                if applied_index != w.applied:
                    self._conn.execute(
                        "UPDATE node_state SET applied_index = ? WHERE id = 1", (applied_index,)
                    )
                    w.applied = applied_index
        return out

    @staticmethod
    def _block(row: tuple[int, bytes, bytes, int, bytes] | None) -> BlockRecord | None:
        if row is None:
            return None
        return BlockRecord(row[0], bytes(row[1]), bytes(row[2]), row[3], bytes(row[4]))

    _BLOCK_COLS = "SELECT height, hash, prev_hash, raft_index, raw FROM blocks"

    def block_by_height(self, height: int) -> BlockRecord | None:
        with self._guard():
            q = self._conn.execute(f"{self._BLOCK_COLS} WHERE height = ?", (height,))
            return self._block(q.fetchone())

    def block_by_hash(self, block_hash: bytes) -> BlockRecord | None:
        with self._guard():
            q = self._conn.execute(f"{self._BLOCK_COLS} WHERE hash = ?", (block_hash,))
            return self._block(q.fetchone())

    def blocks(self, lo: int, hi: int) -> list[BlockRecord]:
        with self._guard():
            rows = self._conn.execute(
                f"{self._BLOCK_COLS} WHERE height >= ? AND height < ? ORDER BY height", (lo, hi)
            ).fetchall()
        return [b for r in rows if (b := self._block(r)) is not None]

    def tip(self) -> tuple[int, bytes] | None:
        return self._c.tip

    _TX_COLS = "SELECT tx_hash, height, position, tx_type, status, reason FROM txs"

    def tx(self, tx_hash: bytes) -> TxRecord | None:
        with self._guard():
            rows = self._conn.execute(f"{self._TX_COLS} WHERE tx_hash = ?", (tx_hash,)).fetchall()
        return rules.pick_verdict([TxRecord(bytes(r[0]), *r[1:]) for r in rows])

    def block_txs(self, height: int) -> list[TxRecord]:
        with self._guard():
            rows = self._conn.execute(
                f"{self._TX_COLS} WHERE height = ? ORDER BY position", (height,)
            ).fetchall()
        return [TxRecord(bytes(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # -- admission refusals --------------------------------------------------

    def record_refusals(self, refusals: Sequence[Refusal]) -> None:
        if not refusals:
            return
        with self._txn():
            q = self._conn.execute
            for r in refusals:
                q("DELETE FROM refusals WHERE tx_hash = ?", (r.tx_hash,))
                q(
                    "INSERT INTO refusals (tx_hash, tx_type, reason, problems, at_ms)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (r.tx_hash, r.tx_type, r.reason, rules.encode_problems(r.problems), r.at_ms),
                )
            q(
                "DELETE FROM refusals WHERE seq <= (SELECT MAX(seq) FROM refusals) - ?",
                (REFUSALS_KEPT,),
            )

    def refusal(self, tx_hash: bytes) -> Refusal | None:
        with self._guard():
            row = self._conn.execute(
                "SELECT tx_type, reason, problems, at_ms FROM refusals WHERE tx_hash = ?",
                (tx_hash,),
            ).fetchone()
        if row is None:
            return None
        return Refusal(tx_hash, row[0], row[1], rules.decode_problems(bytes(row[2])), row[3])

    def refusals_page(
        self, lo_ms: int, hi_ms: int, before: tuple[int, bytes] | None, limit: int
    ) -> list[Refusal]:
        b_ms, b_hash = before if before is not None else (2**63 - 1, b"\xff" * 33)
        with self._guard():
            rows = self._conn.execute(
                "SELECT tx_hash, tx_type, reason, problems, at_ms FROM refusals"
                " WHERE at_ms BETWEEN ? AND ? AND (at_ms < ? OR (at_ms = ? AND tx_hash < ?))"
                " ORDER BY at_ms DESC, tx_hash DESC LIMIT ?",
                (lo_ms, hi_ms, b_ms, b_ms, b_hash, limit),
            ).fetchall()
        return [Refusal(bytes(r[0]), r[1], r[2], rules.decode_problems(bytes(r[3])), r[4])
                for r in rows]

    def rejected_page(
        self, lo_h: int, hi_h: int, before: tuple[int, int] | None, limit: int
    ) -> list[TxRecord]:
        b_h, b_pos = before if before is not None else (hi_h + 1, 0)
        with self._guard():
            rows = self._conn.execute(
                f"{self._TX_COLS} WHERE height BETWEEN ? AND ? AND status = 'rejected'"
                " AND (height < ? OR (height = ? AND position < ?))"
                " ORDER BY height DESC, position DESC LIMIT ?",
                (lo_h, hi_h, b_h, b_h, b_pos, limit),
            ).fetchall()
        return [TxRecord(bytes(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # -- contract state ------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        with self._guard():
            row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        with self._guard():
            return scan_state(self._conn, prefix, limit)

    def install_state(
        self,
        pairs: Iterable[tuple[bytes, bytes]],
        applied_index: int,
        conf_state: ConfState,
        tip: tuple[int, bytes] | None,
    ) -> None:
        with self._txn() as w:
            if applied_index > max(w.hs.commit, w.snap_index):
                raise InvalidOperation(f"state at {applied_index} is ahead of commit")
            self._conn.execute("DELETE FROM state")
            self._conn.executemany(_SQL_UPSERT_STATE, pairs)
            self._conn.execute(
                "UPDATE node_state SET applied_index = ?, conf = ?, tip_height = ?, tip_hash = ?"
                " WHERE id = 1",
                (applied_index, encode_conf(conf_state), *(tip or (None, None))),
            )
            w.applied, w.conf, w.tip = applied_index, conf_state, tip

