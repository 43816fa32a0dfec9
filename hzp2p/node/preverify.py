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

The driver runs it only when asked (the config's `ledger.early_signature_checks`):
with no idle core, the GIL hand-offs around each check cost more than the overlap
saves; on a server with a spare core the checks run beside the other two threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from hzp2p.ledger.block import Block, BlockError, decode_block
from hzp2p.ledger.tx import TxError
from hzp2p.node.opaque import is_opaque
from hzp2p.raft.types import Entry, EntryKind

QUEUE_LEN = 64
"""Block entries waiting for the worker; beyond this they are left to the applier."""
MAX_JOBS = 256
"""Jobs kept for the applier (oldest dropped first: they were truncated)."""


@dataclass(slots=True, eq=False)
class CheckJob:
    """One block entry's early check; the worker fills `block` and then `checked`."""

    data: bytes
    abandoned: threading.Event = field(default_factory=threading.Event)
    block: Block | None = None
    """The block decoded from `data` (set by the worker before it verifies anything)."""
    checked: bool = False
    """Every transaction's signature was checked (the good ones are cached)."""


def check_block(job: CheckJob) -> None:
    """Decode the job's bytes and verify each transaction's signature (caching the good
    ones), until `abandoned` is set: the applier reached the block first and checks the
    rest itself. Runs on a worker thread."""
    try:
        block = decode_block(job.data)
    except BlockError:
        return
    job.block = block
    for tx in block.txs:
        if job.abandoned.is_set():
            return
        # a bad one is not cached: execution finds it bad and rejects it as always
        with contextlib.suppress(TxError):
            tx.verify()
    job.checked = True


class Preverifier:
    """See the module docstring. `submit` from the Ready loop, `take` from the apply task,
    `run` in the driver's nursery."""

    def __init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[CheckJob](QUEUE_LEN)
        self._jobs: dict[int, CheckJob] = {}
        self._limiter = trio.CapacityLimiter(1)
        self.submitted = 0
        self.skipped = 0
        self.checked_in_time = 0
        """Blocks whose every signature was checked before the applier needed them."""
        self.cut_short = 0
        """Blocks the applier reached while still queued or being checked."""

    def submit(self, entries: Iterable[Entry]) -> None:
        """Queue the block entries among `entries` (new log entries of one Ready)."""
        for e in entries:
            if e.kind is not EntryKind.NORMAL or not e.data or is_opaque(e.data):
                continue
            job = CheckJob(e.data)
            try:
                self._send.send_nowait(job)
            except trio.WouldBlock:
                self.skipped += 1
                continue
            old = self._jobs.pop(e.index, None)  # a truncated predecessor at this index
            if old is not None:
                old.abandoned.set()
            self._jobs[e.index] = job
            while len(self._jobs) > MAX_JOBS:
                self._jobs.pop(next(iter(self._jobs))).abandoned.set()
            self.submitted += 1

    def take(self, entry: Entry) -> Block | None:
        """The block decoded from `entry`'s bytes if the worker got that far, else None.
        A check still queued or running is abandoned (whatever was verified by then is
        cached; the applier verifies the rest), so the apply path never waits for it."""
        job = self._jobs.pop(entry.index, None)
        if job is None:
            return None
        job.abandoned.set()
        if job.data != entry.data:
            return None
        if job.checked:
            self.checked_in_time += 1
        else:
            self.cut_short += 1
        return job.block

    def forget_through(self, index: int) -> None:
        """Drop jobs for entries up to `index` (applied, or covered by a snapshot)."""
        for i in [i for i in self._jobs if i <= index]:
            self._jobs.pop(i).abandoned.set()

    async def run(self) -> None:
        async for job in self._recv:
            if not job.abandoned.is_set():
                await trio.to_thread.run_sync(check_block, job, limiter=self._limiter)
