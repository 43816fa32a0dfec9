"""DbThread on its own: FIFO order, results to the right waiter, cancellation, slots, stop.

Every test runs with the eventfd channels (Linux) and with the pipe fallback.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator

import outcome
import pytest
import trio
import trio.testing

from hzp2p.storage.dbthread import DbThread
from hzp2p.storage.errors import StoreClosed

KINDS = ["eventfd", "pipe"] if hasattr(os, "eventfd") else ["pipe"]


@pytest.fixture(params=KINDS)
def thread(request: pytest.FixtureRequest) -> Iterator[DbThread]:
    t = DbThread(name="test-db", use_pipe=request.param == "pipe")
    yield t
    t.stop()
    t.join(10)
    assert not t.alive


def _gate(thread: DbThread) -> tuple[threading.Event, threading.Event]:
    """Occupy the DB thread until `release` is set; `started` is set once it is busy."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        assert release.wait(10)

    thread.submit(hold, lambda _: None)
    return started, release


async def test_jobs_run_in_submission_order_and_results_reach_their_callers(
    thread: DbThread,
) -> None:
    started, release = _gate(thread)
    submitted: list[int] = []
    ran: list[int] = []
    got: dict[int, int] = {}

    async def caller(i: int) -> None:
        def job() -> int:
            ran.append(i)
            return i * i

        submitted.append(i)  # no checkpoint between this and the submission inside run()
        got[i] = await thread.run(job)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(caller, i)
            await trio.to_thread.run_sync(started.wait)
            await trio.testing.wait_all_tasks_blocked()
            assert ran == [] and len(submitted) == 40  # all queued behind the gate
            release.set()
    assert ran == submitted
    assert got == {i: i * i for i in range(40)}


async def test_urgent_jobs_overtake_queued_ordinary_ones_and_keep_their_own_order(
    thread: DbThread,
) -> None:
    """The Raft persist step's lane: behind the job already running, ahead of the queue."""
    started, release = _gate(thread)
    ran: list[str] = []

    async def caller(name: str, urgent: bool) -> None:
        await thread.run(lambda: ran.append(name), urgent=urgent)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await trio.to_thread.run_sync(started.wait)
            for name, urgent in [("a", False), ("b", False), ("U1", True), ("c", False),
                                 ("U2", True)]:
                nursery.start_soon(caller, name, urgent)
                await trio.testing.wait_all_tasks_blocked()  # submitted in this order
            assert ran == []
            release.set()
    assert ran == ["U1", "U2", "a", "b", "c"]


async def test_exceptions_reach_the_caller_and_the_thread_goes_on(thread: DbThread) -> None:
    def boom() -> None:
        raise ValueError("bad job")

    with trio.fail_after(10):
        with pytest.raises(ValueError, match="bad job"):
            await thread.run(boom)
        assert await thread.run(lambda: 7) == 7


async def test_cancelled_while_running_waits_for_the_job_then_sees_cancelled(
    thread: DbThread,
) -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow() -> str:
        started.set()
        assert release.wait(10)
        finished.append("job")
        return "done"

    got: list[str] = []
    cs = trio.CancelScope()

    async def waiter() -> None:
        with cs:
            got.append(await thread.run(slow))
            assert finished == ["job"]  # returned only after the job ended on the thread
            await trio.lowlevel.checkpoint()
            raise AssertionError("not reached: cancelled at the checkpoint")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.to_thread.run_sync(started.wait)
            cs.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert got == [] and finished == []  # still waiting: the cancel did not abort it
            release.set()
    assert got == ["done"] and cs.cancelled_caught
    # the thread and the caller's slot are still usable
    with trio.fail_after(10):
        assert await thread.run(lambda: "again") == "again"


async def test_already_cancelled_caller_submits_nothing(thread: DbThread) -> None:
    ran: list[int] = []
    with trio.CancelScope() as cs:
        cs.cancel()
        await thread.run(lambda: ran.append(1))
    assert cs.cancelled_caught
    with trio.fail_after(10):
        await thread.run(lambda: ran.append(2))
    assert ran == [2]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_completion_fds_do_not_leak(thread: DbThread) -> None:
    with trio.fail_after(10):
        await thread.run(lambda: None)
        before = _open_fds()
        for _ in range(200):
            await thread.run(lambda: None)
        async with trio.open_nursery() as nursery:  # a few concurrent callers: a few slots
            for _ in range(4):
                nursery.start_soon(thread.run, lambda: None)
        after_concurrent = _open_fds()
        for _ in range(200):
            await thread.run(lambda: None)
    assert after_concurrent - before <= 2 * 4
    assert _open_fds() == after_concurrent


async def test_a_burst_of_concurrent_callers_does_not_pin_an_fd_each(thread: DbThread) -> None:
    """Only MAX_FREE_SLOTS idle slots are kept; the others' fds close once collected."""

    with trio.fail_after(10):
        await thread.run(lambda: None)
        before = _open_fds()
        async with trio.open_nursery() as nursery:
            for _ in range(300):
                nursery.start_soon(thread.run, lambda: None)
    gc.collect()
    per_slot = 2 if thread._use_pipe else 1
    assert len(thread._free) <= 32
    assert _open_fds() - before <= 32 * per_slot  # not one per caller (300)


async def test_call_submit_and_stop(thread: DbThread) -> None:
    # call(): blocking, from a plain thread, no Trio involved
    assert await trio.to_thread.run_sync(thread.call, lambda: threading.current_thread().name) == (
        "test-db"
    )
    # submit(): the callback runs on the DB thread with the outcome
    box: list[outcome.Outcome[int]] = []
    done = threading.Event()

    def on_done(result: outcome.Outcome[int]) -> None:
        box.append(result)
        done.set()

    thread.submit(lambda: 5, on_done)
    assert await trio.to_thread.run_sync(done.wait, 10)
    assert box[0].unwrap() == 5
    # stop(): jobs already queued still run, later ones are refused
    _, release = _gate(thread)
    late: list[int] = []
    thread.submit(lambda: late.append(1), lambda _: None)
    thread.stop()
    with pytest.raises(StoreClosed):
        await thread.run(lambda: None)
    with pytest.raises(StoreClosed):
        thread.call(lambda: None)
    release.set()
    await trio.to_thread.run_sync(thread.join, 10)
    assert late == [1] and not thread.alive


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("kind", KINDS)
async def test_a_stopped_thread_releases_its_fds_once_collected(kind: str) -> None:
    gc.collect()
    before = _open_fds()
    t = DbThread(name="test-db", use_pipe=kind == "pipe")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(t.run, lambda: None)
    assert _open_fds() > before
    t.stop()
    await trio.to_thread.run_sync(t.join, 10)
    del t
    gc.collect()
    assert _open_fds() == before
