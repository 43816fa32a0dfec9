"""Typed errors at open: locked, another chain, corrupt, schema versions and migrations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from storage_helpers import CHAIN, GENESIS

from hzp2p.raft.types import Entry, HardState
from hzp2p.storage import (
    CorruptDatabase,
    DatabaseLocked,
    OpenOptions,
    SchemaTooNew,
    SqliteStorage,
    StorageError,
    WrongChain,
)
from hzp2p.storage.schema import SCHEMA_VERSION, migrate

FAST = OpenOptions(busy_timeout_s=0.05)
ROOT = Path(__file__).resolve().parents[2]


def _make_db(path: Path, n: int = 0) -> None:
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    if n:
        s.save_ready([Entry(1, i, data=os.urandom(200)) for i in range(1, n + 1)], HardState(1, 1, n))
    s.close()


def test_second_open_in_this_process_is_locked(tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    s = SqliteStorage(path, CHAIN, GENESIS)
    try:
        with pytest.raises(DatabaseLocked, match="locked by another process") as info:
            SqliteStorage(path, CHAIN, GENESIS, FAST)
        assert "\n" not in str(info.value)
    finally:
        s.close()
    SqliteStorage(path, CHAIN, GENESIS).close()  # released on close


def test_database_held_by_another_process_is_locked(tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    holder = textwrap.dedent(
        f"""
        import sys
        from hzp2p.storage import SqliteStorage
        s = SqliteStorage({path!r}, {CHAIN!r}, {GENESIS!r})
        print("ready", flush=True)
        sys.stdin.read()
        s.close()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        with pytest.raises(DatabaseLocked):
            SqliteStorage(path, CHAIN, GENESIS, FAST)
        assert time.monotonic() - t0 < 1.0  # refused at once, not after a long busy wait
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    SqliteStorage(path, CHAIN, GENESIS).close()


def test_foreign_connection_holding_the_write_lock(tmp_path: Path) -> None:
    """Another program (e.g. the sqlite3 shell) holds a write lock without our lock file."""
    path = tmp_path / "a.db"
    _make_db(path)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        with pytest.raises(DatabaseLocked):
            SqliteStorage(str(path), CHAIN, GENESIS, FAST)
        assert time.monotonic() - t0 < 1.0
    finally:
        other.execute("ROLLBACK")
        other.close()
    SqliteStorage(str(path), CHAIN, GENESIS).close()


def test_database_of_another_chain_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    _make_db(path, 3)
    with pytest.raises(WrongChain, match="chain id") as info:
        SqliteStorage(str(path), b"chain-B", GENESIS)
    assert info.value.stored == CHAIN
    with pytest.raises(WrongChain, match="genesis hash"):
        SqliteStorage(str(path), CHAIN, b"\x02" * 32)
    s = SqliteStorage(str(path), CHAIN, GENESIS)  # the refusals changed nothing
    assert s.last_index() == 3
    s.close()


def test_missing_database_without_identity(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        SqliteStorage(str(tmp_path / "none.db"), None, None)


@pytest.mark.parametrize("size", [10, 100, 8192])
def test_garbage_file_is_corrupt(tmp_path: Path, size: int) -> None:
    path = tmp_path / "a.db"
    path.write_bytes(os.urandom(size))
    with pytest.raises(CorruptDatabase, match="not an SQLite database"):
        SqliteStorage(str(path), CHAIN, GENESIS)


def test_truncated_database_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    _make_db(path, 2000)
    assert not os.path.exists(str(path) + "-wal") or os.path.getsize(str(path) + "-wal") == 0
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CorruptDatabase, match="truncated"):
        SqliteStorage(str(path), CHAIN, GENESIS)


def test_damaged_pages_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    _make_db(path, 2000)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(3 * 4096))
    try:
        s = SqliteStorage(str(path), CHAIN, GENESIS)
    except CorruptDatabase:
        return
    try:
        try:
            problems = s.integrity_check()
        except CorruptDatabase:
            return
        assert problems, "integrity_check must notice damaged pages"
    finally:
        s.close()


def test_older_schema_is_migrated_forward(tmp_path: Path) -> None:
    """A v1 database written by an older release opens, migrates, and keeps its data."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    migrate(conn, str(path), upto=1)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("chain_id", CHAIN), ("genesis_hash", GENESIS)],
    )
    conn.executemany(
        "INSERT INTO log (idx, term, kind, data) VALUES (?, ?, 0, ?)",
        [(i, 1, b"old") for i in range(1, 4)],
    )
    conn.execute("UPDATE node_state SET term = 1, vote = 2, commit_index = 3")
    conn.execute("COMMIT")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    s = SqliteStorage(str(path), CHAIN, GENESIS)
    assert s.hard_state() == HardState(1, 2, 3)
    assert [e.data for e in s.entries(1, 4)] == [b"old"] * 3
    s.close()
    conn = sqlite3.connect(str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "blocks_by_raft_index" in names
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    _make_db(path)
    conn = sqlite3.connect(str(path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    conn.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 3}"):
        SqliteStorage(str(path), CHAIN, GENESIS)


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    s = SqliteStorage(str(tmp_path / "a.db"), CHAIN, GENESIS)
    try:
        fk = s._conn.execute("PRAGMA foreign_keys").fetchone()[0]
        sync = s._conn.execute("PRAGMA synchronous").fetchone()[0]
        mode = s._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert (fk, sync, mode) == (1, 2, "wal")  # synchronous=FULL is 2
        assert s._conn.execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST
    finally:
        s.close()


def test_v2_log_rows_are_migrated_to_runs(tmp_path: Path) -> None:
    """v2 kept one `log` row per entry; v3 keeps runs (hzp2p.storage.logruns). An older
    database opens with every entry, term and kind, its compaction point, and a clean check."""
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    migrate(conn, str(path), upto=2)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("chain_id", CHAIN), ("genesis_hash", GENESIS)],
    )
    rows = [(i, 1 + i // 1100, i % 3, b"e%d" % i) for i in range(6, 2501)]
    conn.executemany("INSERT INTO log (idx, term, kind, data) VALUES (?, ?, ?, ?)", rows)
    conn.execute(
        "UPDATE node_state SET term = 3, vote = 2, commit_index = 2000, log_start = 5,"
        " log_start_term = 1"
    )
    conn.execute("COMMIT")
    conn.close()

    s = SqliteStorage(str(path), CHAIN, GENESIS)
    assert (s.first_index(), s.last_index(), s.term(5), s.term(2500)) == (6, 2500, 1, 3)
    got = s.entries(6, 2501)
    assert [(e.index, e.term, int(e.kind), e.data) for e in got] == rows
    assert s.integrity_check() == []
    s.save_ready([Entry(3, 2501, data=b"new")], HardState(3, 2, 2001))
    s.close()
    conn = sqlite3.connect(str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "log" not in tables and "log_runs" in tables
    assert conn.execute("SELECT count(*) FROM log_runs").fetchone()[0] < 10
    conn.close()
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    assert s.last_index() == 2501 and s.entries(2500, 2502)[1].data == b"new"
    s.close()


@pytest.mark.parametrize(
    ("damage", "finding"),
    [
        ("UPDATE log_runs SET lens = X'0100000002000000' WHERE first = 1", "malformed"),
        ("UPDATE log_runs SET data = 'text' WHERE first = 1", "malformed"),
        ("UPDATE log_runs SET terms = X'01' WHERE first = 6", "bad terms"),
        ("DELETE FROM log_runs WHERE first = 6", "not contiguous"),
        ("DELETE FROM log_runs WHERE first = 11", "ahead of the log"),
        ("DELETE FROM log_runs WHERE first = 1", "do not cover"),
    ],
)
def test_integrity_check_finds_damaged_log_runs(tmp_path: Path, damage: str, finding: str) -> None:
    path = tmp_path / "a.db"
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    for lo in (1, 6, 11):
        s.save_ready([Entry(lo // 5 + 1, i, data=b"x" * i) for i in range(lo, lo + 5)],
                     HardState(3, 1, lo + 4))
    assert s.integrity_check() == []
    s.close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute(damage)
    conn.close()
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    try:
        assert any(finding in p for p in s.integrity_check()), s.integrity_check()
    finally:
        s.close()


def _terms_hex(*terms: int) -> str:
    return "X'" + b"".join(t.to_bytes(8, "little", signed=True) for t in terms).hex() + "'"


@pytest.mark.parametrize(
    ("damage", "finding", "reads"),
    [
        # run 1..5: term 1, no terms blob; run 6..10: terms 2,2,3,3,3; run 11..15: term 3
        ("UPDATE log_runs SET kinds = X'0007000000' WHERE first = 1",
         "log run 1..5 has invalid kind byte 7 at index 2", [(2, 3), (1, 16)]),
        ("UPDATE log_runs SET kinds = X'FF00000000' WHERE first = 11",
         "log run 11..15 has invalid kind byte 255 at index 11", [(11, 12), (10, 16)]),
        ("UPDATE log_runs SET term = 5 WHERE first = 6",
         "log run 6..10 has term column 5 but its last entry has term 3", [(7, 8), (1, 16)]),
        ("UPDATE log_runs SET term = 5 WHERE first = 1",
         "log terms decrease between runs: run 6..10 starts at term 2 after term 5 at 5",
         [(5, 7), (1, 16)]),
        (f"UPDATE log_runs SET terms = {_terms_hex(0, 0, 3, 3, 3)} WHERE first = 6",
         "log terms decrease between runs: run 6..10 starts at term 0 after term 1 at 5",
         [(5, 7), (1, 16)]),
        (f"UPDATE log_runs SET terms = {_terms_hex(2, 3, 2, 3, 3)} WHERE first = 6",
         "log run 6..10 has terms decreasing within the run: term 2 at index 8 after term 3",
         [(6, 7), (1, 16)]),
        ("UPDATE log_runs SET terms = X'01' WHERE first = 6", "log run 6..10 has bad terms",
         [(6, 7), (1, 16)]),
        ("UPDATE log_runs SET lens = X'0100000002000000' WHERE first = 1",
         "log run 1..5 is malformed", [(1, 2), (1, 16)]),
        ("UPDATE log_runs SET data = 'text' WHERE first = 1", "log run 1..5 is malformed",
         [(1, 2)]),
        ("UPDATE log_runs SET data = X'00' WHERE first = 11", "log run 11..15 is malformed",
         [(15, 16)]),
    ],
)
def test_damaged_log_runs_are_reported_and_reads_raise_corrupt(
    tmp_path: Path, damage: str, finding: str, reads: list[tuple[int, int]]
) -> None:
    """A damaged run is named by integrity_check, and reading it raises CorruptDatabase (not
    IndexError, ValueError or TypeError, and not wrong entries)."""
    path = tmp_path / "a.db"
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    s.save_ready([Entry(1, i, data=b"a" * i) for i in range(1, 6)], HardState(3, 1, 5))
    terms = zip(range(6, 11), (2, 2, 3, 3, 3), strict=True)
    s.save_ready([Entry(t, i, data=b"b" * i) for i, t in terms], HardState(3, 1, 10))
    s.save_ready([Entry(3, i, data=b"c" * i) for i in range(11, 16)], HardState(3, 1, 15))
    assert s.integrity_check() == []
    s.close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    assert conn.execute("SELECT count(*) FROM log_runs").fetchone()[0] == 3
    assert conn.execute("SELECT terms IS NULL FROM log_runs ORDER BY first").fetchall() == [
        (1,), (0,), (1,)
    ]
    conn.execute(damage)
    conn.close()
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    try:
        problems = s.integrity_check()
        assert any(finding in p for p in problems), problems
        for lo, hi in reads:
            with pytest.raises(CorruptDatabase, match=r"log run|log terms"):
                s.entries(lo, hi)
            with pytest.raises(CorruptDatabase):
                s.entries(lo, hi, max_bytes=1 << 20)
    finally:
        s.close()


def test_varying_terms_run_reads_its_terms_not_the_term_column(tmp_path: Path) -> None:
    """With a terms blob, the last index's term (cached at open) is its entry's, not the
    damaged `term` column's; the check names the column."""
    path = tmp_path / "a.db"
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    s.save_ready([Entry(t, i) for i, t in zip(range(1, 6), (1, 1, 2, 2, 3), strict=True)], HardState(3, 1, 5))
    s.close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("UPDATE log_runs SET term = 5 WHERE first = 1")
    conn.close()
    s = SqliteStorage(str(path), CHAIN, GENESIS)
    try:
        assert (s.term(5), s.term(4), s.term(1)) == (3, 2, 1)
        assert s.integrity_check() == [
            "log run 1..5 has term column 5 but its last entry has term 3"
        ]
        with pytest.raises(CorruptDatabase, match="term column 5"):
            s.entries(1, 6)
    finally:
        s.close()
