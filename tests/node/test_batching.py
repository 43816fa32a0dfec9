"""StorageBatcher: concurrent reads share one storage trip; errors and cancellation are safe."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from hzp2p.node.batching import StorageBatcher
from hzp2p.storage import AsyncStorage, SyncStorage


def double(store: SyncStorage, items: Sequence[int]) -> list[int]:
    if any(i < 0 for i in items):
        raise ValueError("negative")
    return [2 * i for i in items]


async def test_concurrent_calls_share_one_trip() -> None:
    b = StorageBatcher(AsyncStorage.memory(), double)
    out: dict[int, int] = {}

    async def one(i: int) -> None:
        out[i] = await b.run(i)

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(one, i)
    assert out == {i: 2 * i for i in range(100)}
    assert b.items == 100 and b.trips <= 3


async def test_an_error_reaches_every_member_of_its_batch() -> None:
    b = StorageBatcher(AsyncStorage.memory(), double)
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        try:
            await b.run(i)
        except ValueError:
            errors += 1

    async with trio.open_nursery() as nursery:
        for i in (-1, 1, 2):
            nursery.start_soon(one, i)
    assert errors >= 1
    assert await b.run(3) == 6


async def test_cancelled_callers_leave_nothing_behind() -> None:
    b = StorageBatcher(AsyncStorage.memory(), double, max_batch=2)
    got: list[int] = []

    async def one(i: int) -> None:
        got.append(await b.run(i))

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await b.run(99)
        for i in range(5):
            nursery.start_soon(one, i)
    assert sorted(got) == [0, 2, 4, 6, 8]
    assert b._pending == [] and not b._busy


async def test_run_many_rides_shared_trips_in_order() -> None:
    b = StorageBatcher(AsyncStorage.memory(), double, max_batch=64)
    out: dict[str, list[int]] = {}

    async def many(name: str, items: list[int]) -> None:
        out[name] = await b.run_many(items)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(many, "a", list(range(100)))
        nursery.start_soon(many, "b", list(range(1000, 1050)))
        nursery.start_soon(many, "none", [])
    assert out == {"a": [2 * i for i in range(100)], "b": [2 * i for i in range(1000, 1050)],
                   "none": []}
    assert b.items == 150 and b.trips == 3  # 150 items, at most 64 per trip


async def test_run_many_error_and_cancellation_leave_nothing_behind() -> None:
    b = StorageBatcher(AsyncStorage.memory(), double, max_batch=4)
    with pytest.raises(ValueError):
        await b.run_many([1, 2, -3, 4])
    with trio.CancelScope() as scope:
        scope.cancel()
        await b.run_many(list(range(10)))
    assert scope.cancelled_caught
    assert await b.run_many([5, 6]) == [10, 12]
    assert b._pending == []
