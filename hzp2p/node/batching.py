"""Coalescing many small storage reads of concurrent tasks into one database-thread trip.

It owns `StorageBatcher`: hundreds of submits waiting at once each want a tiny
read on the database thread (the stored verdict of their transaction, a
pre-check against committed state). One trip per request costs a thread
hand-off each and queues them behind each other and behind block writes; the
profile of a loaded leader showed those trips as a large share of its
database thread. The batcher lets the first caller carry everything queued at
that moment in one `storage.call` (a bounded batch); the others wait for their
result. A caller with many items (`run_many`, a batch submit) queues them all
at once and rides the same trips. No timer: a batch is whatever accumulated while the previous one ran.

Cancellation: a caller cancelled while it carries a batch puts the unfinished
items back for the next carrier (the storage call itself completes on the
thread either way); a caller cancelled while waiting just leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import trio

from hzp2p.storage import AsyncStorage, SyncStorage

K = TypeVar("K")
R = TypeVar("R")

MAX_BATCH = 1024


class _Slot(Generic[K, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: K) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: Exception | None = None


class StorageBatcher(Generic[K, R]):
    """`await batcher.run(item)` == `fn(store, [item])[0]`, with concurrent calls batched."""

    def __init__(
        self,
        storage: AsyncStorage,
        fn: Callable[[SyncStorage, Sequence[K]], Sequence[R]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.storage = storage
        self.fn = fn
        self.max_batch = max_batch
        self._pending: list[_Slot[K, R]] = []
        self._busy = False
        self._idle = trio.Event()
        self.trips = 0
        self.items = 0

    async def run(self, item: K) -> R:
        return (await self.run_many([item]))[0]

    async def run_many(self, items: Sequence[K]) -> list[R]:
        """`fn(store, items)`, in as few trips as the bound allows, shared with other callers."""
        slots: list[_Slot[K, R]] = [_Slot(item) for item in items]
        self._pending.extend(slots)
        try:
            for slot in slots:
                while not slot.done:
                    if self._busy:
                        await self._idle.wait()
                        continue
                    await self._carry()
        except BaseException:
            mine = {id(s) for s in slots}
            self._pending = [s for s in self._pending if id(s) not in mine]
            raise
        for slot in slots:
            if slot.error is not None:
                raise slot.error
        return [slot.result for slot in slots]  # type: ignore[misc]

    async def _carry(self) -> None:
        self._busy = True
        batch: list[_Slot[K, R]] = []
        try:
            # let every task that is ready to run queue its item first
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch, self._pending = (
                self._pending[: self.max_batch],
                self._pending[self.max_batch :],
            )
            if not batch:
                return
            items = [s.item for s in batch]
            fn = self.fn
            self.trips += 1
            self.items += len(items)
            try:
                results = await self.storage.call(lambda store: fn(store, items))
            except Exception as exc:  # the batch's error is every member's error
                for s in batch:
                    s.error, s.done = exc, True
            else:
                for s, r in zip(batch, results, strict=True):
                    s.result, s.done = r, True
        except BaseException:
            self._pending[:0] = [s for s in batch if not s.done]
            raise
        finally:
            self._busy = False
            idle, self._idle = self._idle, trio.Event()
            idle.set()
