"""The dedicated database thread and how Trio waits for it.

Why a dedicated thread (and not `trio.to_thread.run_sync` with a
CapacityLimiter(1)): the sqlite3 connection is created, used and closed by one
OS thread for its whole life, so sqlite3's own `check_same_thread` guard stays
on and catches any misuse; calls run strictly in submission order (FIFO
queue), which the Ready contract relies on; there is no dependency on Trio's
thread cache or on a Trio run existing (tools without an event loop use
`call()`); and a job costs one queue hand-off instead of a thread-cache
round trip. aiosqlite is not an option: it is asyncio-only.

Cancellation: a Trio task awaiting `run()` cannot be cancelled while its job
is on the thread (the wait's abort function answers `Abort.FAILED`). The job
therefore always runs to its end, and a transaction commits or rolls back on
the thread exactly as it would without Trio; the connection stays usable.
The task gets the job's result and then `trio.Cancelled` at its next
checkpoint, as Trio's rules say. A job not yet started when its task is
already cancelled is never submitted.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import outcome
import structlog
import trio

from hzp2p.storage.errors import StoreClosed

T = TypeVar("T")
log = structlog.get_logger("hzp2p.storage")

_Job = tuple[Callable[[], object], Callable[["outcome.Outcome[object]"], None]]


class DbThread:
    """One OS thread running submitted callables one at a time, in order."""

    def __init__(self, name: str = "hzp2p-db") -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._stopped = False
        self._thread.start()

    def _main(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                return
            fn, done = job
            try:
                done(outcome.capture(fn))
            except BaseException:  # a broken callback must not kill the thread (and hang all)
                log.exception("db_thread_callback_failed")

    def submit(self, fn: Callable[[], T], done: Callable[[outcome.Outcome[T]], None]) -> None:
        """Queue `fn`; `done(outcome)` is called on the DB thread once it ran (it must not block)."""
        if self._stopped:
            raise StoreClosed("the database thread is stopped")
        self._queue.put((fn, done))  # type: ignore[arg-type]

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the thread and block until it is done (for code without Trio)."""
        assert threading.current_thread() is not self._thread, "call() from the DB thread deadlocks"
        finished = threading.Event()
        box: list[outcome.Outcome[T]] = []

        def done(result: outcome.Outcome[T]) -> None:
            box.append(result)
            finished.set()

        self.submit(fn, done)
        finished.wait()
        return box[0].unwrap()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the thread; the awaiting task waits uncancellably until it is done."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def done(result: outcome.Outcome[T]) -> None:
            # RunFinishedError: the run is gone, so nobody is waiting any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self.submit(fn, done)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED

        value: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return value

    def stop(self) -> None:
        """Let the thread exit after the jobs already queued."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
