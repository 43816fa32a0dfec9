"""The async storage facade the Trio daemon calls.

`AsyncStorage` wraps one synchronous store (`SyncStorage`) and an executor:
for SQLite the dedicated database thread (hzp2p.storage.dbthread), for the
in-memory store an inline executor. Every method is one call on the
underlying store, hence one transaction for writes. Calls on one facade run
in the order they were made; a cancelled caller's write still completes (see
dbthread for why) and the caller sees `trio.Cancelled` afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Protocol, TypeVar

import trio

from hzp2p.raft.types import ConfState, Entry, HardState, Snapshot
from hzp2p.storage.dbthread import DbThread
from hzp2p.storage.interfaces import (
    BlockExecutor,
    BlockJob,
    BlockRecord,
    ExecResult,
    InitialState,
    ReadyBatch,
    Refusal,
    SyncStorage,
    TxRecord,
    Writes,
)
from hzp2p.storage.memory import MemoryStorage
from hzp2p.storage.schema import OpenOptions
from hzp2p.storage.sqlite import SqliteStorage

T = TypeVar("T")


class _Executor(Protocol):
    async def run(self, fn: Callable[[], T], *, urgent: bool = False) -> T: ...


class _Inline:
    """Runs calls in the Trio thread (the in-memory store never blocks)."""

    async def run(self, fn: Callable[[], T], *, urgent: bool = False) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        result = fn()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return result


class AsyncStorage:
    """Async facade over one SyncStorage; see the module docstring."""

    def __init__(self, core: SyncStorage, executor: _Executor, thread: DbThread | None = None):
        self._core = core
        self._ex = executor
        self._thread = thread
        self._closed = False

    @classmethod
    async def open_sqlite(
        cls,
        path: str,
        chain_id: bytes | None,
        genesis_hash: bytes | None,
        options: OpenOptions | None = None,
    ) -> AsyncStorage:
        """Open or create the database on a new database thread (typed errors on failure)."""
        thread = DbThread(name=f"hzp2p-db:{path}")
        try:
            core = await thread.run(lambda: SqliteStorage(path, chain_id, genesis_hash, options))
        except BaseException:
            thread.stop()
            raise
        return cls(core, thread, thread)

    @classmethod
    def memory(
        cls,
        core: MemoryStorage | None = None,
        chain_id: bytes = b"test-chain",
        genesis_hash: bytes = b"\x00" * 32,
    ) -> AsyncStorage:
        return cls(core or MemoryStorage(chain_id, genesis_hash), _Inline())

    @property
    def core(self) -> SyncStorage:
        """The synchronous store. Only touch it from the executor (see `call`)."""
        return self._core

    @property
    def chain_id(self) -> bytes:
        return self._core.chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._core.genesis_hash

    async def call(self, fn: Callable[[SyncStorage], T]) -> T:
        """Run `fn(store)` where the store lives (the DB thread for SQLite), as one unit."""
        core = self._core
        return await self._ex.run(lambda: fn(core))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with trio.CancelScope(shield=True):
                await self._ex.run(self._core.close)
        finally:
            if self._thread is not None:
                self._thread.stop()

    async def __aenter__(self) -> AsyncStorage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- Raft ----------------------------------------------------------------

    async def load(self) -> InitialState:
        return await self._ex.run(self._core.load)

    async def save_ready(
        self,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        *,
        urgent: bool = False,
    ) -> None:
        """One transaction, one fsync. `urgent`: jump the queue of ordinary calls (dbthread;
        the Raft driver's persist step, which acknowledgements wait for)."""
        core = self._core
        await self._ex.run(lambda: core.save_ready(entries, hard_state, snapshot), urgent=urgent)

    async def save_batches(self, batches: Sequence[ReadyBatch]) -> None:
        core = self._core
        await self._ex.run(lambda: core.save_batches(batches))

    async def hard_state(self) -> HardState:
        return await self._ex.run(self._core.hard_state)

    async def conf_state(self) -> ConfState:
        return await self._ex.run(self._core.conf_state)

    async def applied_index(self) -> int:
        return await self._ex.run(self._core.applied_index)

    async def set_applied(self, index: int, conf_state: ConfState | None = None) -> None:
        core = self._core
        await self._ex.run(lambda: core.set_applied(index, conf_state))

    async def first_index(self) -> int:
        return await self._ex.run(self._core.first_index)

    async def last_index(self) -> int:
        return await self._ex.run(self._core.last_index)

    async def term(self, index: int) -> int:
        core = self._core
        return await self._ex.run(lambda: core.term(index))

    async def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        core = self._core
        return await self._ex.run(lambda: core.entries(lo, hi, max_bytes))

    async def append(self, entries: Sequence[Entry]) -> None:
        core = self._core
        await self._ex.run(lambda: core.append(entries))

    async def truncate_suffix(self, index: int) -> None:
        core = self._core
        await self._ex.run(lambda: core.truncate_suffix(index))

    async def compact(self, index: int) -> None:
        core = self._core
        await self._ex.run(lambda: core.compact(index))

    async def snapshot(self) -> Snapshot | None:
        return await self._ex.run(self._core.snapshot)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        core = self._core
        await self._ex.run(lambda: core.save_snapshot(snapshot))

    # -- blocks and state ----------------------------------------------------

    async def apply_block(
        self, block: BlockRecord, txs: Sequence[TxRecord], writes: Writes, applied_index: int
    ) -> None:
        core = self._core
        await self._ex.run(lambda: core.apply_block(block, txs, writes, applied_index))

    async def apply_block_with(
        self, block: BlockRecord, execute: BlockExecutor, applied_index: int
    ) -> ExecResult:
        """Run the (sync, pure) contract engine on the store's thread and commit its result
        with the block in one transaction; see BlockStore.apply_block_with."""
        core = self._core
        return await self._ex.run(lambda: core.apply_block_with(block, execute, applied_index))

    async def apply_blocks_with(
        self, jobs: Sequence[BlockJob], applied_index: int | None = None
    ) -> list[ExecResult]:
        """Several blocks executed and stored in one transaction; see
        BlockStore.apply_blocks_with."""
        core = self._core
        return await self._ex.run(lambda: core.apply_blocks_with(jobs, applied_index))

    async def block_by_height(self, height: int) -> BlockRecord | None:
        core = self._core
        return await self._ex.run(lambda: core.block_by_height(height))

    async def block_by_hash(self, block_hash: bytes) -> BlockRecord | None:
        core = self._core
        return await self._ex.run(lambda: core.block_by_hash(block_hash))

    async def blocks(self, lo: int, hi: int) -> list[BlockRecord]:
        core = self._core
        return await self._ex.run(lambda: core.blocks(lo, hi))

    async def tip(self) -> tuple[int, bytes] | None:
        return await self._ex.run(self._core.tip)

    async def tx(self, tx_hash: bytes) -> TxRecord | None:
        core = self._core
        return await self._ex.run(lambda: core.tx(tx_hash))

    async def record_refusals(self, refusals: Sequence[Refusal]) -> None:
        core = self._core
        await self._ex.run(lambda: core.record_refusals(refusals))

    async def refusal(self, tx_hash: bytes) -> Refusal | None:
        core = self._core
        return await self._ex.run(lambda: core.refusal(tx_hash))

    async def block_txs(self, height: int) -> list[TxRecord]:
        core = self._core
        return await self._ex.run(lambda: core.block_txs(height))

    async def get(self, key: bytes) -> bytes | None:
        core = self._core
        return await self._ex.run(lambda: core.get(key))

    async def scan(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        core = self._core
        return await self._ex.run(lambda: list(core.scan(prefix, limit)))

    async def install_state(
        self,
        pairs: Iterable[tuple[bytes, bytes]],
        applied_index: int,
        conf_state: ConfState,
        tip: tuple[int, bytes] | None,
    ) -> None:
        core = self._core
        await self._ex.run(lambda: core.install_state(pairs, applied_index, conf_state, tip))

    async def integrity_check(self) -> list[str]:
        return await self._ex.run(self._core.integrity_check)


@asynccontextmanager
async def open_sqlite(
    path: str,
    chain_id: bytes | None,
    genesis_hash: bytes | None,
    options: OpenOptions | None = None,
) -> AsyncIterator[AsyncStorage]:
    """`async with open_sqlite(...) as store:` — opens, and closes on exit."""
    store = await AsyncStorage.open_sqlite(path, chain_id, genesis_hash, options)
    async with store:
        yield store
