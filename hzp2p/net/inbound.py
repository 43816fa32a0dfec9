"""The bounded inbound queue every transport delivers into: (sender, message) pairs, FIFO.

Faster than a trio memory channel for our pattern (a whole decoded frame is
appended at once; the consumer drains bursts with `receive_nowait`), and it
applies back-pressure: `put_batch` waits while the queue holds `max_msgs` or
more (TCP stops reading that peer's socket), `put_nowait` refuses (the
simulator drops). The queue holds at most `max_msgs` plus one frame's batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import trio

from hzp2p.raft.types import NodeId

Inbound = tuple[NodeId, Any]


class InboundQueue:
    """Multi-producer, single- or multi-consumer bounded FIFO of Inbound items."""

    __slots__ = ("_getters", "_items", "_putters", "max_msgs")

    def __init__(self, max_msgs: int) -> None:
        if max_msgs <= 0:
            raise ValueError("max_msgs must be positive")
        self.max_msgs = max_msgs
        self._items: deque[Inbound] = deque()
        self._getters = trio.lowlevel.ParkingLot()
        self._putters = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    async def put_batch(self, src: NodeId, msgs: Sequence[Any]) -> None:
        """Append all of `msgs` from `src`, first waiting while the queue is full."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._items) >= self.max_msgs:
            await self._putters.park()
        self._items.extend([(src, m) for m in msgs])
        if self._getters:
            self._getters.unpark_all()

    def put_nowait(self, item: Inbound) -> bool:
        """Append one item unless the queue is full (returns False: the caller drops it)."""
        if len(self._items) >= self.max_msgs:
            return False
        self._items.append(item)
        if self._getters:
            self._getters.unpark_all()
        return True

    def receive_nowait(self) -> Inbound:
        """The next item, or raise trio.WouldBlock if there is none."""
        if not self._items:
            raise trio.WouldBlock
        item = self._items.popleft()
        if self._putters and len(self._items) < self.max_msgs:
            self._putters.unpark_all()
        return item

    def receive_batch_nowait(self, max_items: int) -> list[Inbound]:
        """Up to `max_items` items at once (possibly none)."""
        items = self._items
        n = min(max_items, len(items))
        out = [items.popleft() for _ in range(n)]
        if n and self._putters and len(items) < self.max_msgs:
            self._putters.unpark_all()
        return out

    async def receive(self) -> Inbound:
        """Wait for and return the next item (a checkpoint; cancel-safe: nothing is lost)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            await self._getters.park()
        item = self.receive_nowait()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item
