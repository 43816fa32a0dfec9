"""SimNetwork fault injection in virtual time (trio MockClock with autojump)."""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing
from net_helpers import identities, membership_of

from hzp2p.net.simnet import LinkFaults, SimNetwork, SimTransport
from hzp2p.raft.messages import Heartbeat, HeartbeatResponse

IDS = identities(3)


async def start(
    nursery: trio.Nursery, seed: int = 1, **kw: Any
) -> tuple[SimNetwork, list[SimTransport]]:
    net = SimNetwork(random.Random(seed), membership=membership_of(IDS), **kw)
    ts = [net.transport(i.node_id) for i in IDS]
    for t in ts:
        await nursery.start(t.run)
    return net, ts


async def drain(t: SimTransport, within_s: float) -> list[tuple[int, Any]]:
    out = []
    with trio.move_on_after(within_s):
        while True:
            out.append(await t.receive())
    return out


async def test_delay_in_virtual_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _net, (a, b, _) = await start(
        nursery, default_faults=LinkFaults(min_delay_s=5.0, max_delay_s=5.0)
    )
    t0 = trio.current_time()
    a.send_nowait(2, Heartbeat(1, 1, 2, 0))
    assert await b.receive() == (1, Heartbeat(1, 1, 2, 0))
    assert trio.current_time() - t0 == 5.0


async def test_drop_rate(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    net, (a, b, _) = await start(nursery, seed=3)
    net.set_faults(LinkFaults(drop_rate=0.5), src=1, dst=2)
    for i in range(1000):
        a.send_nowait(2, Heartbeat(1, 1, 2, i))
    got = await drain(b, 1.0)
    assert 400 < len(got) < 600
    commits = [m.commit for _, m in got]
    assert commits == sorted(commits)  # FIFO survives drops
    assert a.statistics().messages_dropped == 1000 - len(got)


async def test_partition_and_heal(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    net, (a, b, c) = await start(nursery)
    net.partition([1], [2, 3])
    assert a.connected_peers() == frozenset() and b.connected_peers() == {3}
    a.send_nowait(2, Heartbeat(1, 1, 2, 0))
    b.send_nowait(3, Heartbeat(1, 2, 3, 0))
    assert await drain(b, 1.0) == []
    assert await drain(c, 1.0) == [(2, Heartbeat(1, 2, 3, 0))]
    net.heal()
    a.send_nowait(2, Heartbeat(1, 1, 2, 1))
    assert await drain(b, 1.0) == [(1, Heartbeat(1, 1, 2, 1))]


async def test_one_way_link(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    net, (a, b, _) = await start(nursery)
    net.block(1, 2)
    a.send_nowait(2, Heartbeat(1, 1, 2, 0))
    b.send_nowait(1, HeartbeatResponse(1, 2, 1))
    assert await drain(b, 1.0) == []
    assert await drain(a, 1.0) == [(2, HeartbeatResponse(1, 2, 1))]
    assert 2 not in a.connected_peers()
    net.unblock(1, 2)
    assert 2 in a.connected_peers()


async def test_partition_drops_messages_in_flight(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    net, (a, b, _) = await start(
        nursery, default_faults=LinkFaults(min_delay_s=2.0, max_delay_s=2.0)
    )
    a.send_nowait(2, Heartbeat(1, 1, 2, 0))
    await trio.sleep(1.0)
    net.isolate(2)
    assert await drain(b, 5.0) == []


async def test_duplicates_and_reordering(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _net, (a, b, _) = await start(
        nursery,
        seed=5,
        reorder=True,
        default_faults=LinkFaults(dup_rate=0.3, min_delay_s=0.0, max_delay_s=1.0),
    )
    for i in range(200):
        a.send_nowait(2, Heartbeat(1, 1, 2, i))
    commits = [m.commit for _, m in await drain(b, 5.0)]
    assert len(commits) > 200  # duplicated
    assert commits != sorted(commits)  # reordered
    assert set(commits) == set(range(200))


async def test_stopped_node_receives_nothing_and_restarts(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    net = SimNetwork(random.Random(1), membership=membership_of(IDS))
    a = net.transport(1)
    await nursery.start(a.run)
    b_scope = trio.CancelScope()

    async def run_b(t: SimTransport, *, task_status: trio.TaskStatus[None]) -> None:
        with b_scope:
            await t.run(task_status=task_status)

    b = net.transport(2)
    await nursery.start(run_b, b)
    assert a.connected_peers() == {2}
    b_scope.cancel()
    await trio.sleep(0.1)
    assert a.connected_peers() == frozenset()
    a.send_nowait(2, Heartbeat(1, 1, 2, 0))
    b2 = net.transport(2)  # a restart: a fresh incarnation with an empty inbox
    await nursery.start(b2.run)
    a.send_nowait(2, Heartbeat(1, 1, 2, 1))
    assert await drain(b2, 1.0) == [(1, Heartbeat(1, 1, 2, 1))]


async def _ping_pong_run(seed: int) -> list[tuple[float, int, int]]:
    """Real node tasks (each answers heartbeats) under lossy, delayed links; returns the trace."""
    trace: list[tuple[float, int, int]] = []
    async with trio.open_nursery() as nursery:
        _net, ts = await start(
            nursery,
            seed=seed,
            default_faults=LinkFaults(drop_rate=0.2, min_delay_s=0.01, max_delay_s=0.2),
        )

        async def node(t: SimTransport) -> None:
            while True:
                src, msg = await t.receive()
                trace.append((trio.current_time(), t.node_id, src))
                if isinstance(msg, Heartbeat):
                    t.send_nowait(src, HeartbeatResponse(msg.term, t.node_id, src))

        for t in ts:
            nursery.start_soon(node, t)
        for step in range(100):
            for t in ts:
                for dst in (1, 2, 3):
                    if dst != t.node_id:
                        t.send_nowait(dst, Heartbeat(1, t.node_id, dst, step))
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    return trace


def test_simulation_is_reproducible_from_its_seed() -> None:
    def run(seed: int) -> list[tuple[float, int, int]]:
        return trio.run(_ping_pong_run, seed, clock=trio.testing.MockClock(autojump_threshold=0))

    first = run(11)
    assert len(first) > 600
    assert run(11) == first
    assert run(12) != first
