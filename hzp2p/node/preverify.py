"""Early signature checks: a follower verifies a block's transactions while the block is
still being persisted and waiting to commit, on a worker thread, off the apply path.

It owns one thing: filling the process-wide verified-signature cache
(hzp2p.ledger.tx) ahead of time. When a Ready hands the driver new log entries
to persist, each block entry is queued here; a worker thread decodes it and
checks every transaction's Ed25519 signature (libsodium, called through cffi,
releases the GIL, so this runs beside the Trio thread and the database
thread). By the time the block is committed and executed, `Transaction.verify`
finds each (hash, signature) pair in the cache and costs a dictionary look-up.

It never decides anything: a bad signature is simply not cached, so execution
checks it again and rejects the transaction exactly as it would without this
module. The decoded block is handed to the applier only for the very bytes it
was decoded from (decoding is deterministic), which saves decoding it twice.
The apply path never waits for it: a check still queued or running when the
applier reaches its block is abandoned (what was verified by then is cached,
the applier verifies the rest). Queue full, entry truncated, leader change:
the entry just is not pre-checked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

import trio

from hzp2p.ledger.block import Block, BlockError, decode_block
from hzp2p.ledger.tx import TxError
from hzp2p.node.benchrepl import is_opaque
from hzp2p.raft.types import Entry, EntryKind

QUEUE_LEN = 64
"""Block entries waiting for the worker; beyond this they are left to the applier."""
MAX_DONE = 256
"""Checked blocks kept for the applier (oldest dropped first: they were truncated)."""


def check_block(data: bytes, abandoned: threading.Event) -> Block | None:
    """Decode `data` and verify each transaction's signature (caching the good ones), until
    `abandoned` is set (the applier reached the block first and checks the rest itself).
    Runs on a worker thread; None when the bytes are not a block."""
    try:
        block = decode_block(data)
    except BlockError:
        return None
    for tx in block.txs:
        if abandoned.is_set():
            return None
        # a bad one is not cached: execution finds it bad and rejects it as always
        with contextlib.suppress(TxError):
            tx.verify()
    return block


class Preverifier:
    """See the module docstring. `submit` from the Ready loop, `take` from the apply task,
    `run` in the driver's nursery."""

    def __init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[Entry](QUEUE_LEN)
        self._pending: dict[int, tuple[bytes, threading.Event]] = {}
        self._done: dict[int, tuple[bytes, Block | None]] = {}
        self._limiter = trio.CapacityLimiter(1)
        self.submitted = 0
        self.skipped = 0
        self.abandoned = 0

    def submit(self, entries: Iterable[Entry]) -> None:
        """Queue the block entries among `entries` (new log entries of one Ready)."""
        for e in entries:
            if e.kind is not EntryKind.NORMAL or not e.data or is_opaque(e.data):
                continue
            try:
                self._send.send_nowait(e)
            except trio.WouldBlock:
                self.skipped += 1
                continue
            self._done.pop(e.index, None)  # a truncated predecessor at this index
            self._pending[e.index] = (e.data, threading.Event())
            self.submitted += 1

    def take(self, entry: Entry) -> Block | None:
        """The block decoded from `entry`'s bytes if this module has checked it, else None.
        A check still queued or running is abandoned (the applier does the rest: whatever
        was checked by then is cached), so the apply path never waits for this one."""
        pending = self._pending.get(entry.index)
        if pending is not None and pending[0] == entry.data:
            pending[1].set()
            self.abandoned += 1
        done = self._done.pop(entry.index, None)
        if done is None or done[0] != entry.data:
            return None
        return done[1]

    def forget_through(self, index: int) -> None:
        """Drop results for entries up to `index` (applied, or covered by a snapshot)."""
        for i in [i for i in self._done if i <= index]:
            del self._done[i]

    async def run(self) -> None:
        async for e in self._recv:
            pending = self._pending.get(e.index)
            if pending is None or pending[0] != e.data:
                continue  # replaced by a later entry at this index
            if not pending[1].is_set():
                block = await trio.to_thread.run_sync(
                    check_block, e.data, pending[1], limiter=self._limiter)
                if block is not None and not pending[1].is_set():
                    self._done[e.index] = (e.data, block)
                    while len(self._done) > MAX_DONE:
                        del self._done[next(iter(self._done))]
            if self._pending.get(e.index) is pending:
                del self._pending[e.index]
