"""InboundQueue: FIFO, bounded with back-pressure, cancel-safe receive."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from hzp2p.net.inbound import InboundQueue


async def test_fifo_and_nowait() -> None:
    q = InboundQueue(10)
    with pytest.raises(trio.WouldBlock):
        q.receive_nowait()
    await q.put_batch(1, ["a", "b"])
    assert q.put_nowait((2, "c"))
    assert q.receive_nowait() == (1, "a")
    assert q.receive_batch_nowait(5) == [(1, "b"), (2, "c")]
    assert q.receive_batch_nowait(5) == []


async def test_put_batch_waits_while_full(autojump_clock: trio.testing.MockClock) -> None:
    q = InboundQueue(2)
    await q.put_batch(1, ["a", "b"])
    assert not q.put_nowait((1, "x"))
    done = []

    async def producer() -> None:
        await q.put_batch(1, ["c"])
        done.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.sleep(1)
        assert not done and len(q) == 2  # back-pressure
        assert await q.receive() == (1, "a")
        await trio.sleep(1)
        assert done
    assert q.receive_batch_nowait(10) == [(1, "b"), (1, "c")]


async def test_receive_wakes_and_cancel_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    q = InboundQueue(4)
    with trio.move_on_after(1):
        await q.receive()
    got = []

    async def consumer() -> None:
        got.append(await q.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.sleep(1)
        q.put_nowait((3, "m"))
    assert got == [(3, "m")]
    assert len(q) == 0
