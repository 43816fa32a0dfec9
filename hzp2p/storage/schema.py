"""SQLite schema, ordered migrations, and opening a database safely.

Owns everything that happens between a path and a ready connection: the
data-dir lock file (fcntl.flock, so a second daemon on the same data dir fails
at once with `DatabaseLocked` instead of waiting on SQLite's busy handler),
cheap corruption checks before SQLite sees the file, the pragmas (WAL,
synchronous=FULL, foreign keys), migrations driven by PRAGMA user_version, and
the chain-identity check. Also the one translation of sqlite3 errors into the
typed errors of hzp2p.storage.errors.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import msgpack

from hzp2p.raft.types import ConfState
from hzp2p.storage.errors import (
    CorruptDatabase,
    DatabaseLocked,
    InvalidOperation,
    SchemaTooNew,
    StorageError,
    WrongChain,
)
from hzp2p.storage.logruns import migrate_v3

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE node_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    term INTEGER NOT NULL,
    vote INTEGER NOT NULL,
    commit_index INTEGER NOT NULL,
    applied_index INTEGER NOT NULL,
    conf BLOB NOT NULL,
    log_start INTEGER NOT NULL,
    log_start_term INTEGER NOT NULL,
    tip_height INTEGER,
    tip_hash BLOB
);
INSERT INTO node_state VALUES (1, 0, 0, 0, 0, X'929090', 0, 0, NULL, NULL);
CREATE TABLE log (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    conf BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    prev_hash BLOB NOT NULL,
    raft_index INTEGER NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE txs (
    height INTEGER NOT NULL REFERENCES blocks (height),
    position INTEGER NOT NULL,
    tx_hash BLOB NOT NULL,
    tx_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason TEXT NOT NULL,
    PRIMARY KEY (height, position)
) WITHOUT ROWID;
CREATE INDEX txs_by_hash ON txs (tx_hash);
CREATE TABLE state (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""

_V2 = """
CREATE INDEX blocks_by_raft_index ON blocks (raft_index);
"""

_V4 = """
CREATE TABLE refusals (
    seq INTEGER PRIMARY KEY,
    tx_hash BLOB NOT NULL UNIQUE,
    tx_type TEXT NOT NULL,
    reason TEXT NOT NULL,
    problems BLOB NOT NULL,
    at_ms INTEGER NOT NULL
);
"""
"""v4: admission refusals, local and bounded (hzp2p.storage.interfaces.Refusal)."""

MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    _V1, _V2, migrate_v3, _V4,
)
"""MIGRATIONS[k] takes a database from user_version k to k + 1: SQL statements, or a function
of the connection when rows must be re-encoded (v3: the log as runs, hzp2p.storage.logruns).
Append only; never edit."""

SCHEMA_VERSION = len(MIGRATIONS)

_SQLITE_MAGIC = b"SQLite format 3\x00"


def encode_conf(conf: ConfState) -> bytes:
    return msgpack.packb([sorted(conf.voters), sorted(conf.learners)])  # type: ignore[no-any-return]


def decode_conf(raw: bytes) -> ConfState:
    voters, learners = msgpack.unpackb(raw)
    return ConfState(frozenset(voters), frozenset(learners))


def translate(err: sqlite3.Error, path: str) -> StorageError:
    """The typed error for an sqlite3 error (raise it `from err`)."""
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    msg = str(err)
    if code in (5, 6) or "locked" in msg or "busy" in msg:  # SQLITE_BUSY, SQLITE_LOCKED
        return DatabaseLocked(path, msg)
    if code in (11, 26) or "malformed" in msg or "not a database" in msg:  # CORRUPT, NOTADB
        return CorruptDatabase(path, msg)
    if code == 19 or isinstance(err, sqlite3.IntegrityError):  # SQLITE_CONSTRAINT
        return InvalidOperation(f"constraint violated: {msg}")
    return StorageError(f"database {path}: {msg}")


@dataclass(frozen=True, slots=True)
class OpenOptions:
    """How to open. `durable=False` (synchronous=OFF) exists for tests that need speed only."""

    busy_timeout_s: float = 2.0
    durable: bool = True
    create: bool = True
    wal_autocheckpoint_pages: int = 4000
    exclusive: bool = True
    """locking_mode=EXCLUSIVE: this process owns the file (it holds the lock file anyway), so
    SQLite skips its per-transaction fcntl locks and keeps the WAL index in heap memory
    instead of a shared -shm file: about 4 us less CPU per commit (30 % of it) here.
    Other processes cannot even read the database while it is open."""


def _lock_data_dir(path: str) -> IO[bytes]:
    lock = open(path + ".lock", "ab")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DatabaseLocked(path, f"lock file {path}.lock is held") from None
    return lock


def _precheck(path: str) -> bool:
    """True when the file exists with content; raises CorruptDatabase for garbage or truncation."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise CorruptDatabase(path, "not an SQLite database (bad header)")
    (page_size,) = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    (pages,) = struct.unpack(">I", header[28:32])
    wal = path + "-wal"
    wal_has_frames = os.path.exists(wal) and os.path.getsize(wal) > 32
    # The in-header size is authoritative for the main file once checkpointed; while
    # the WAL holds frames a crash mid-checkpoint may legitimately leave it short.
    if not wal_has_frames and pages * page_size > size:
        raise CorruptDatabase(path, f"truncated: header says {pages} pages, file has {size} bytes")
    return True


def open_database(
    path: str, chain_id: bytes | None, genesis_hash: bytes | None, options: OpenOptions
) -> tuple[sqlite3.Connection, IO[bytes], bytes, bytes]:
    """Lock, check, connect, migrate, check the chain. Returns (conn, lock, chain_id, genesis)."""
    lock = _lock_data_dir(path)
    conn: sqlite3.Connection | None = None
    try:
        existed = _precheck(path)
        if not existed and (not options.create or chain_id is None or genesis_hash is None):
            raise StorageError(f"database {path} does not exist (chain id and genesis needed to create it)")
        conn = sqlite3.connect(path, timeout=options.busy_timeout_s, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        if options.exclusive:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"database {path}: cannot enable WAL (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous = {'FULL' if options.durable else 'OFF'}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(options.wal_autocheckpoint_pages)}")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
        # Debian's SQLite is built with SECURE_DELETE: every freed page is zeroed and written
        # again, so compacting the log rewrote each compacted run's overflow pages (a 400 KB
        # run: 478 us of CPU at commit, 8 us with FAST). Nothing deleted here is secret from
        # the reader of the file: compacted entries and overwritten state are derivable from
        # the retained blocks and snapshot. FAST zeroes only what costs no extra I/O.
        conn.execute("PRAGMA secure_delete = FAST")
        conn.execute("BEGIN IMMEDIATE")
        try:
            found_chain, found_genesis = _migrate_and_check(conn, path, chain_id, genesis_hash)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return conn, lock, found_chain, found_genesis
    except sqlite3.Error as err:
        if conn is not None:
            conn.close()
        lock.close()
        raise translate(err, path) from err
    except BaseException:
        if conn is not None:
            conn.close()
        lock.close()
        raise


def migrate(conn: sqlite3.Connection, path: str, upto: int = SCHEMA_VERSION) -> int:
    """Run the missing migrations (inside the caller's transaction); returns the old version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(path, version, SCHEMA_VERSION)
    for v in range(version, upto):
        step = MIGRATIONS[v]
        if callable(step):
            step(conn)
            conn.execute(f"PRAGMA user_version = {v + 1}")
            continue
        for stmt in step.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {v + 1}")
    return version


def _migrate_and_check(
    conn: sqlite3.Connection, path: str, chain_id: bytes | None, genesis_hash: bytes | None
) -> tuple[bytes, bytes]:
    old = migrate(conn, path)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if old == 0 or not meta:
        if chain_id is None or genesis_hash is None:
            raise StorageError(f"database {path} has no chain identity and none was given")
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("chain_id", chain_id), ("genesis_hash", genesis_hash)],
        )
        return chain_id, genesis_hash
    stored_chain, stored_genesis = bytes(meta["chain_id"]), bytes(meta["genesis_hash"])
    if chain_id is not None and stored_chain != chain_id:
        raise WrongChain(path, "chain id", stored_chain, chain_id)
    if genesis_hash is not None and stored_genesis != genesis_hash:
        raise WrongChain(path, "genesis hash", stored_genesis, genesis_hash)
    return stored_chain, stored_genesis
