"""Typed storage errors: what an operator or the daemon can act on, never a raw traceback.

Every sqlite3 error leaving the SQLite implementation is translated into one of
these (the original stays in `__cause__`), so callers catch `StorageError` and
print `str(err)` as the one-line reason.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised by hzp2p.storage."""


class DatabaseLocked(StorageError):
    """Another process (or another open store in this one) holds the database."""

    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        msg = f"database {path} is locked by another process (is another hzp2p node running on this data dir?)"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class WrongChain(StorageError):
    """The database was created for another chain (chain id or genesis hash differ)."""

    def __init__(self, path: str, field: str, stored: bytes, expected: bytes) -> None:
        self.path = path
        self.field = field
        self.stored = stored
        self.expected = expected
        super().__init__(
            f"database {path} belongs to another chain: stored {field} {stored.hex()[:16]}..., "
            f"expected {expected.hex()[:16]}..."
        )


class CorruptDatabase(StorageError):
    """The file is not an SQLite database, is truncated, or fails an integrity check."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"database {path} is corrupt: {detail}")


class SchemaTooNew(StorageError):
    """The database was written by a newer release (its schema version is unknown here)."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"database {path} has schema version {found}, this release supports up to {supported}"
        )


class StoreClosed(StorageError):
    """The store was closed (or its database thread died); no further calls are possible."""


class LogUnavailable(StorageError):
    """A log index outside [first_index - 1, last_index] was asked for."""

    def __init__(self, index: int, first: int, last: int) -> None:
        self.index = index
        self.first = first
        self.last = last
        super().__init__(f"log index {index} unavailable (stored: {first}..{last})")


class LogCompacted(LogUnavailable):
    """The index was compacted away into a snapshot; send the snapshot instead."""


class InvalidOperation(StorageError):
    """A write that would break a storage invariant (gap in the log, block height regress...)."""
