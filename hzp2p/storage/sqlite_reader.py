"""Reading contract state from SQLite: prefix scans and the StateReader the contracts get.

`SqlStateReader` is handed to the contract engine by
`SqliteStorage.apply_block_with`: it reads through the store's own connection,
inside the transaction that will store the block, on the database thread, so
the engine's reads are synchronous and see exactly the state the block's writes
will be applied to. It is invalidated once the block is applied.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


class SqlStateReader:
    """StateReader over the store's connection, valid only during one apply_block_with."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.valid = True

    def get(self, key: bytes) -> bytes | None:
        assert self.valid, "StateReader used after its block was applied"
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        assert self.valid, "StateReader used after its block was applied"
        return scan_state(self._conn, prefix, limit)


def scan_state(
    conn: sqlite3.Connection, prefix: bytes, limit: int | None
) -> Iterator[tuple[bytes, bytes]]:
    end = prefix_end(prefix)
    lim = -1 if limit is None else limit
    if end is None:
        rows = conn.execute(
            "SELECT key, value FROM state WHERE key >= ? ORDER BY key LIMIT ?", (prefix, lim)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
            (prefix, end, lim),
        ).fetchall()
    return iter([(bytes(k), bytes(v)) for k, v in rows])
