"""Concurrent callers on one SQLite facade: one transaction per call, in call order.

This is the shape the benchmark's "batch 1, concurrent callers" figure measures, so it
checks what that figure claims: every save_ready is its own BEGIN IMMEDIATE ... COMMIT
(counted with sqlite3's statement trace on the DB thread), none is merged with another,
and the calls reach the log in the order they were made.
"""

from __future__ import annotations

import threading
from pathlib import Path

import trio
import trio.testing
from storage_helpers import CHAIN, GENESIS

from hzp2p.raft.types import Entry, HardState
from hzp2p.storage import SyncStorage, open_sqlite


async def test_concurrent_save_ready_calls_commit_one_by_one_in_call_order(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "a.db"), CHAIN, GENESIS) as s:
        statements: list[str] = []

        def trace(store: SyncStorage) -> None:
            store._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]

        def untrace(store: SyncStorage) -> None:
            store._conn.set_trace_callback(None)  # type: ignore[attr-defined]

        await s.call(trace)
        calls: list[int] = []
        indexes = iter(range(1, 61))

        async def caller() -> None:
            for i in indexes:  # no checkpoint between next() and the submission
                calls.append(i)
                await s.save_ready([Entry(1, i, data=b"%d" % i)], HardState(1, 1, i - 1))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(caller)
        await s.call(untrace)

        assert calls == list(range(1, 61))
        begins = [q for q in statements if q.startswith("BEGIN")]
        commits = [q for q in statements if q == "COMMIT"]
        assert len(begins) == len(commits) == 60
        # each COMMIT closes the transaction its BEGIN opened: no two calls share one
        opened = 0
        for q in statements:
            if q.startswith("BEGIN"):
                assert opened == 0
                opened = 1
            elif q == "COMMIT":
                assert opened == 1
                opened = 0
        entries = await s.entries(1, 61)
        assert [(e.index, e.data) for e in entries] == [(i, b"%d" % i) for i in range(1, 61)]
        assert await s.hard_state() == HardState(1, 1, 59)


async def test_save_ready_overtakes_queued_ordinary_calls(tmp_path: Path) -> None:
    """A Raft persist waits only for the call already running, not for the queue behind it
    (block executions, pre-checks, queries): acknowledgements depend on it."""
    async with open_sqlite(str(tmp_path / "a.db"), CHAIN, GENESIS) as s:
        started, release = threading.Event(), threading.Event()
        seen: list[tuple[str, int]] = []  # (call, last log index it saw), on the DB thread

        def hold(_: SyncStorage) -> None:
            started.set()
            assert release.wait(10)

        async def ordinary(name: str) -> None:
            await s.call(lambda store: seen.append((name, store.last_index())))

        async def persist() -> None:
            await s.save_ready([Entry(1, 1, data=b"x")], HardState(1, 1, 0), urgent=True)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(s.call, hold)
                await trio.to_thread.run_sync(started.wait)
                for name in ("query", "apply"):
                    nursery.start_soon(ordinary, name)
                    await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(persist)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
        assert seen == [("query", 1), ("apply", 1)]  # both queued first, both ran after it
        assert [e.index for e in await s.entries(1, 2)] == [1]
