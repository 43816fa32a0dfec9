"""hzp2p.storage: durable node state behind narrow interfaces.

Interfaces and records: `hzp2p.storage.interfaces`; typed errors:
`hzp2p.storage.errors`; implementations: `MemoryStorage` (sync, for the
simulator and tests) and `SqliteStorage` (sync core on one thread); the Trio
daemon uses `AsyncStorage` (`await AsyncStorage.open_sqlite(...)` or the
`open_sqlite` context manager). See docs/storage.md.
"""

from hzp2p.storage.errors import (
    CorruptDatabase,
    DatabaseLocked,
    InvalidOperation,
    LogCompacted,
    LogUnavailable,
    SchemaTooNew,
    StorageError,
    StoreClosed,
    WrongChain,
)
from hzp2p.storage.facade import AsyncStorage, open_sqlite
from hzp2p.storage.interfaces import (
    REFUSALS_KEPT,
    TX_APPLIED,
    TX_REJECTED,
    BlockExecutor,
    BlockJob,
    BlockRecord,
    ExecResult,
    InitialState,
    ReadyBatch,
    Refusal,
    StateReader,
    SyncStorage,
    TxRecord,
    Writes,
)
from hzp2p.storage.memory import MemoryStorage
from hzp2p.storage.schema import OpenOptions
from hzp2p.storage.sqlite import SqliteStorage

__all__ = [
    "REFUSALS_KEPT",
    "TX_APPLIED",
    "TX_REJECTED",
    "AsyncStorage",
    "BlockExecutor",
    "BlockJob",
    "BlockRecord",
    "CorruptDatabase",
    "DatabaseLocked",
    "ExecResult",
    "InitialState",
    "InvalidOperation",
    "LogCompacted",
    "LogUnavailable",
    "MemoryStorage",
    "OpenOptions",
    "ReadyBatch",
    "Refusal",
    "SchemaTooNew",
    "SqliteStorage",
    "StateReader",
    "StorageError",
    "StoreClosed",
    "SyncStorage",
    "TxRecord",
    "Writes",
    "WrongChain",
    "open_sqlite",
]
