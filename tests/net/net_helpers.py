"""Helpers for hzp2p.net tests: identities, membership, and started transports of either kind."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from hzp2p.net.handshake import ChainParams
from hzp2p.net.simnet import SimNetwork
from hzp2p.net.tcp import TcpConfig, TcpTransport
from hzp2p.net.transport import NodeIdentity, StaticMembership

CHAIN = ChainParams("hzp2p-test", b"\x11" * 32)
FAST = dict(
    keepalive_interval_s=0.2,
    read_timeout_s=1.0,
    handshake_timeout_s=1.0,
    backoff_initial_s=0.02,
    backoff_max_s=0.2,
    connect_timeout_s=1.0,
)


def identities(n: int) -> list[NodeIdentity]:
    return [NodeIdentity.from_seed(i, bytes([i]) * 32) for i in range(1, n + 1)]


def membership_of(ids: Sequence[NodeIdentity]) -> StaticMembership:
    return StaticMembership({i.node_id: i.node_key for i in ids})


def tcp_config(**kw: Any) -> TcpConfig:
    return TcpConfig(**{**FAST, **kw})


async def wait_until(
    pred: Callable[[], bool], timeout_s: float = 5.0, poll_s: float = 0.01
) -> None:
    with trio.fail_after(timeout_s):
        while not pred():
            await trio.sleep(poll_s)


def introduce(ts: Sequence[TcpTransport]) -> None:
    for a in ts:
        for b in ts:
            if a is not b:
                a.address_book.add_hint(b.node_id, b.listen_address)
        a.membership_changed()


@asynccontextmanager
async def open_tcp(
    nursery: trio.Nursery,
    ids: Sequence[NodeIdentity],
    membership: StaticMembership | None = None,
    **cfg: Any,
) -> AsyncIterator[list[TcpTransport]]:
    mem = membership or membership_of(ids)
    ts = [TcpTransport(i, CHAIN, mem, tcp_config(**cfg), rng=random.Random(i.node_id)) for i in ids]
    for t in ts:
        await nursery.start(t.run)
    introduce(ts)
    yield ts


def sim_network(ids: Sequence[NodeIdentity], seed: int = 1, **kw: Any) -> SimNetwork:
    return SimNetwork(random.Random(seed), membership=membership_of(ids), **kw)


async def raw_connect(server: TcpTransport) -> trio.SocketStream:
    return await trio.open_tcp_stream(*server.listen_address)


async def expect_closed(stream: trio.abc.Stream, timeout_s: float = 5.0) -> None:
    """Read until the peer closes the connection (EOF or reset)."""
    with trio.fail_after(timeout_s):
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, OSError):
                return
            if not data:
                return


@asynccontextmanager
async def open_transports(
    kind: str,
    nursery: trio.Nursery,
    ids: Sequence[NodeIdentity],
    membership: StaticMembership | None = None,
) -> AsyncIterator[list[Any]]:
    """Started, fully connected transports of `kind` ("tcp" or "sim")."""
    mem = membership or membership_of(ids)
    if kind == "tcp":
        async with open_tcp(nursery, ids, mem) as ts:
            await wait_until(lambda: all(len(t.connected_peers()) == len(ids) - 1 for t in ts))
            yield ts
        return
    net = SimNetwork(random.Random(7), membership=mem)
    sims = [net.transport(i.node_id) for i in ids]
    for s in sims:
        await nursery.start(s.run)
    yield sims
