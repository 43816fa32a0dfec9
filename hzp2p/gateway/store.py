"""Committed state, read-only: the gateway's own SQLite connection to the node's database.

The daemon writes its database in WAL mode; with a [gateway] section it opens the
file shared (not locking_mode=EXCLUSIVE), so this process can open it with
`mode=ro` and read committed snapshots while the daemon keeps committing: a WAL
reader never blocks the writer, and the writer never blocks it. Each `snapshot()`
is one read transaction, so every query of one HTTP request sees the same height.
The connection is used from the gateway's one Trio thread only; reads of a few rows
take microseconds, so they run inline rather than on a worker thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgpack

from hzp2p.storage.interfaces import TxRecord
from hzp2p.storage.rules import pick_verdict
from hzp2p.storage.sqlite_reader import scan_state

BUSY_TIMEOUT_MS = 2000


class StoreUnavailable(Exception):
    """The node's database cannot be read (missing, locked exclusively, corrupt)."""


@dataclass(frozen=True, slots=True)
class BlockHead:
    height: int
    hash: bytes
    prev_hash: bytes
    merkle_root: bytes
    state_digest: bytes
    proposer: int
    timestamp_ms: int
    tx_count: int


class Snapshot:
    """One read transaction: a StateReader (get/scan) plus blocks and verdicts."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, key: bytes) -> bytes | None:
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return scan_state(self._conn, prefix, limit)

    def tip_height(self) -> int:
        row = self._conn.execute("SELECT tip_height FROM node_state WHERE id = 1").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def block(self, height: int) -> BlockHead | None:
        row = self._conn.execute(
            "SELECT hash, prev_hash, raw FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        if row is None:
            return None
        header_bytes = msgpack.unpackb(bytes(row[2]), raw=False)[0]
        # version 2 headers (issue 19) add a ninth field, the certificates' hash
        _v, h, prev, root, digest, proposer, ts, count = msgpack.unpackb(
            header_bytes, raw=False)[:8]
        assert h == height, "block row does not match its header"
        return BlockHead(h, bytes(row[0]), prev, root, digest, proposer, ts, count)

    def block_txs(self, height: int) -> list[TxRecord]:
        rows = self._conn.execute(
            "SELECT tx_hash, height, position, tx_type, status, reason FROM txs"
            " WHERE height = ? ORDER BY position",
            (height,),
        ).fetchall()
        return [TxRecord(bytes(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def tx(self, tx_hash: bytes) -> TxRecord | None:
        rows = self._conn.execute(
            "SELECT tx_hash, height, position, tx_type, status, reason FROM txs WHERE tx_hash = ?",
            (tx_hash,),
        ).fetchall()
        return pick_verdict([TxRecord(bytes(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows])


class Store:
    """A read-only connection to `path` (the node's node.db)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise StoreUnavailable(f"{path} does not exist (has the daemon run once?)")
        try:
            self._conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA query_only = ON")
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"{path}: {exc} (does the node config have a [gateway] section, so the daemon "
                "shares its database?)"
            ) from None
        self.chain_id = bytes(meta["chain_id"]).decode()
        self.genesis_hash = bytes(meta["genesis_hash"])

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A consistent view for the length of the `with` block."""
        try:
            self._conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from None
        try:
            yield Snapshot(self._conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from None
        finally:
            self._conn.execute("COMMIT")

    def tip_and_get(self, key: bytes) -> tuple[int, bytes | None]:
        """The tip height and one state value, read together: one statement, so one
        snapshot without BEGIN/COMMIT (the hot path: a health code)."""
        try:
            row = self._conn.execute(
                "SELECT (SELECT tip_height FROM node_state WHERE id = 1),"
                " (SELECT value FROM state WHERE key = ?)",
                (key,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from None
        return (0 if row[0] is None else int(row[0])), (None if row[1] is None else bytes(row[1]))

    def close(self) -> None:
        self._conn.close()
