"""Shared helpers of the storage tests (imported by conftest and the test modules)."""

from __future__ import annotations

from pathlib import Path

from hzp2p.storage import MemoryStorage, OpenOptions, SqliteStorage, SyncStorage

CHAIN = b"chain-A"
GENESIS = b"\x01" * 32


class Harness:
    """A store plus a way to "restart" it: SQLite reopens the file, memory keeps the object."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.path = str(tmp / "node.db")
        self.store: SyncStorage = self._open()

    def _open(self) -> SyncStorage:
        if self.kind == "memory":
            return MemoryStorage(CHAIN, GENESIS)
        return SqliteStorage(self.path, CHAIN, GENESIS, OpenOptions(busy_timeout_s=0.2))

    def reopen(self) -> SyncStorage:
        if self.kind == "sqlite":
            self.store.close()
            self.store = self._open()
        return self.store

    def close(self) -> None:
        self.store.close()
