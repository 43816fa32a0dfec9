"""The dedicated database thread and how Trio waits for it.

Why a dedicated thread (and not `trio.to_thread.run_sync` with a
CapacityLimiter(1)): the sqlite3 connection is created, used and closed by one
OS thread for its whole life, so sqlite3's own `check_same_thread` guard stays
on and catches any misuse; calls run strictly in submission order (FIFO
queue), which the Ready contract relies on; there is no dependency on Trio's
thread cache or on a Trio run existing (tools without an event loop use
`call()`); and a job costs one queue hand-off instead of a thread-cache
round trip. aiosqlite is not an option: it is asyncio-only.

Hand-off (measured, see docs/storage.md): each batch-1 durable append pays two
cross-thread wake-ups on top of its fsync, so both are kept to one syscall:
* Trio -> DB thread: jobs go on a deque and the thread is woken through a
  "doorbell" file descriptor (an eventfd; a pipe where there is none) it
  blocks on, instead of a `queue.SimpleQueue` (a futex). On this KVM guest the
  fd wake-up was consistently the cheaper of the two.
* DB thread -> Trio: every waiting task owns a completion slot with its own
  eventfd (pooled per DbThread, so a sequential caller reuses one), and waits
  on it with `trio.lowlevel.wait_readable`: Trio's I/O manager reschedules the
  task itself, instead of `TrioToken.run_sync_soon` waking Trio's run_sync_soon
  system task, which then reschedules the caller one scheduler pass later.

Cancellation: a Trio task awaiting `run()` cannot be cancelled while its job
is on the thread (it waits inside a shielded cancel scope). The job therefore
always runs to its end, and a transaction commits or rolls back on the thread
exactly as it would without Trio; the connection stays usable. The task gets
the job's result and then `trio.Cancelled` at its next checkpoint, as Trio's
rules say. A job not yet started when its task is already cancelled is never
submitted. (A KeyboardInterrupt that Trio delivers to the main task can end
its wait early; the job still runs to its end and its slot is not reused.)

Two lanes: `run(fn, urgent=True)` queues `fn` ahead of every ordinary job not
yet started (FIFO within each lane). The Raft driver's persist step uses it:
an append or vote response waits for its fsync, so with one FIFO queue a
follower's acknowledgements (and a leader's own durable progress) waited
behind every block execution, pre-check and query queued before them; under
CPU starvation that wait outgrew the election timeout and leaders changed for
nothing. The driver has at most one persist job outstanding, so the ordinary
lane is never starved; nothing in it depends on running before a later
persist (docs/storage.md, "The database thread").
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

import outcome
import structlog
import trio

from hzp2p.storage.errors import StoreClosed

T = TypeVar("T")
log = structlog.get_logger("hzp2p.storage")

_HAS_EVENTFD = hasattr(os, "eventfd")
MAX_FREE_SLOTS = 16
"""Idle completion slots kept for reuse (one fd each). Concurrent callers beyond that get a
slot of their own whose fd closes once it is collected: a burst of a thousand concurrent
queries must not pin a thousand fds for the life of the process."""


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in set(fds):
        os.close(fd)


class _Fd:
    """One wake-up channel: `ring()` from any thread makes `rfd` readable until `clear()`.

    An eventfd (one fd, a counter) on Linux, else a pipe; closed when garbage collected.
    """

    __slots__ = ("__weakref__", "_use_pipe", "rfd", "wfd")

    def __init__(self, *, blocking: bool, use_pipe: bool = not _HAS_EVENTFD) -> None:
        self._use_pipe = use_pipe
        if use_pipe:
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.rfd, blocking)
            os.set_blocking(self.wfd, False)
        else:
            flags = os.EFD_CLOEXEC | (0 if blocking else os.EFD_NONBLOCK)
            self.rfd = self.wfd = os.eventfd(0, flags)
        # Closed only once nothing can ring it any more (the DB thread holds a job's slot
        # until it has rung it), never at interpreter exit: a daemon DB thread still
        # finishing a job then must not write into a reused fd number.
        weakref.finalize(self, _close_fds, (self.rfd, self.wfd)).atexit = False

    def ring(self) -> None:
        if self._use_pipe:
            with contextlib.suppress(BlockingIOError):  # full: already readable
                os.write(self.wfd, b"\0")
        else:
            os.eventfd_write(self.wfd, 1)

    def clear(self) -> None:
        """Consume the ring(s); blocks until rung if the read end is blocking."""
        if self._use_pipe:
            os.read(self.rfd, 4096)
        else:
            os.eventfd_read(self.rfd)


class _Slot(Generic[T]):
    """Where the DB thread leaves one job's result and how it tells the waiter."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: outcome.Outcome[T] | None = None

    def fire(self, result: outcome.Outcome[T]) -> None:
        raise NotImplementedError


class _TrioSlot(_Slot[T]):
    """A Trio task waits on `fd` (wait_readable); reused by the next call once collected."""

    __slots__ = ("fd",)

    def __init__(self, use_pipe: bool) -> None:
        super().__init__()
        self.fd = _Fd(blocking=False, use_pipe=use_pipe)

    def fire(self, result: outcome.Outcome[T]) -> None:
        self.result = result
        self.fd.ring()


class _ThreadSlot(_Slot[T]):
    """A plain thread waits on an Event (`DbThread.call`)."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def fire(self, result: outcome.Outcome[T]) -> None:
        self.result = result
        self.event.set()


class _CallbackSlot(_Slot[T]):
    __slots__ = ("done",)

    def __init__(self, done: Callable[[outcome.Outcome[T]], None]) -> None:
        super().__init__()
        self.done = done

    def fire(self, result: outcome.Outcome[T]) -> None:
        self.done(result)


_Job = tuple[Callable[[], object], _Slot[object]]


class DbThread:
    """One OS thread running submitted callables one at a time, in order."""

    def __init__(self, name: str = "hzp2p-db", *, use_pipe: bool = not _HAS_EVENTFD) -> None:
        self._jobs: collections.deque[_Job | None] = collections.deque()
        self._urgent: collections.deque[_Job] = collections.deque()
        self._use_pipe = use_pipe
        self._bell = _Fd(blocking=True, use_pipe=use_pipe)
        self._free: list[_TrioSlot[object]] = []  # idle completion slots (Trio thread only)
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        jobs, urgent, wait, capture = self._jobs, self._urgent, self._bell.clear, outcome.capture
        while True:
            while not jobs and not urgent:
                wait()
            job = urgent.popleft() if urgent else jobs.popleft()
            if job is None:
                return
            fn, slot = job
            try:
                slot.fire(capture(fn))
            except BaseException:  # a broken callback must not kill the thread (and hang all)
                log.exception("db_thread_callback_failed")

    def _put(self, job: _Job | None, urgent: bool = False) -> None:
        # deque.append is atomic; the thread re-checks both lanes after each ring
        if urgent:
            assert job is not None, "the stop marker goes last, in the ordinary lane"
            self._urgent.append(job)
        else:
            self._jobs.append(job)
        self._bell.ring()

    def submit(self, fn: Callable[[], T], done: Callable[[outcome.Outcome[T]], None]) -> None:
        """Queue `fn`; `done(outcome)` is called on the DB thread once it ran (it must not block)."""
        if self._stopped:
            raise StoreClosed("the database thread is stopped")
        self._put((fn, _CallbackSlot(done)))  # type: ignore[arg-type]

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the thread and block until it is done (for code without Trio)."""
        assert threading.current_thread() is not self._thread, "call() from the DB thread deadlocks"
        if self._stopped:
            raise StoreClosed("the database thread is stopped")
        slot: _ThreadSlot[T] = _ThreadSlot()
        self._put((fn, slot))  # type: ignore[arg-type]
        slot.event.wait()
        assert slot.result is not None
        return slot.result.unwrap()

    async def run(self, fn: Callable[[], T], *, urgent: bool = False) -> T:
        """Run `fn` on the thread; the awaiting task waits uncancellably until it is done.

        `urgent`: queue it ahead of the ordinary jobs not yet started (module docstring)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._stopped:
            raise StoreClosed("the database thread is stopped")
        slot = self._free.pop() if self._free else _TrioSlot(self._use_pipe)
        self._put((fn, slot), urgent)
        with trio.CancelScope(shield=True):
            await trio.lowlevel.wait_readable(slot.fd.rfd)
        # Only reached once the fd is readable, i.e. after fire(): the result is there.
        slot.fd.clear()
        result, slot.result = slot.result, None
        if len(self._free) < MAX_FREE_SLOTS:
            self._free.append(slot)
        assert result is not None, "woken without a result"
        return result.unwrap()  # type: ignore[return-value]

    def stop(self) -> None:
        """Let the thread exit after the jobs already queued."""
        if not self._stopped:
            self._stopped = True
            self._put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
