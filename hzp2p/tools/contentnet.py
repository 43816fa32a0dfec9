"""In-process content delivery over real encrypted TCP: N transports, each with a content
store and a ContentService, optionally through relays that can cut every connection.

For tests and benchmarks/dataset_bench.py only: the daemon wires the same service into its
stack (hzp2p.node.stack); here nothing else runs on the transport, so what is measured
or broken is delivery alone.
"""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from hzp2p.net.handshake import ChainParams
from hzp2p.net.schemas import default_registry
from hzp2p.net.tcp import TcpConfig, TcpTransport
from hzp2p.net.transport import NodeIdentity, StaticMembership
from hzp2p.node.content.service import Authorise, ContentService
from hzp2p.node.content.store import ContentStore

CHAIN = ChainParams("hzp2p-content", b"\x22" * 32)
FAST = dict(keepalive_interval_s=0.2, read_timeout_s=2.0, handshake_timeout_s=1.0,
            backoff_initial_s=0.02, backoff_max_s=0.2, connect_timeout_s=1.0,
            max_frame_bytes=8 << 20, max_batch_bytes=1 << 20)


class CutRelay:
    """A 127.0.0.1 TCP relay to `target` whose `cut()` breaks every connection through it
    (new connections are relayed again at once); `rate_bytes_per_s` caps each direction
    of each connection (0: no cap)."""

    def __init__(self, rate_bytes_per_s: float = 0.0) -> None:
        self.rate = rate_bytes_per_s
        self.target: tuple[str, int] | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.cuts = 0
        self._open: set[trio.SocketStream] = set()

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.address = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        await nursery.start(trio.serve_listeners, self._handle, listeners)

    async def cut(self) -> None:
        self.cuts += 1
        streams, self._open = list(self._open), set()
        for s in streams:
            await s.aclose()

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.target is None:
            await client.aclose()
            return
        try:
            upstream = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        self._open |= {client, upstream}

        async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
            while data := await src.receive_some(1 << 18):
                if self.rate:
                    await trio.sleep(len(data) / self.rate)
                await dst.send_all(data)
            await dst.aclose()

        try:
            async with trio.open_nursery() as n:
                n.start_soon(pump, client, upstream)
                n.start_soon(pump, upstream, client)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._open -= {client, upstream}
            await client.aclose()
            await upstream.aclose()


@dataclass
class ContentNode:
    transport: TcpTransport
    store: ContentStore
    service: ContentService
    relays: list[CutRelay] = field(default_factory=list)

    @property
    def node_id(self) -> int:
        return self.transport.node_id


async def _allow(_did: str, _v: int, _h: bytes, _node: int) -> str | None:
    return None


@asynccontextmanager
async def content_net(
    nursery: trio.Nursery, root: Path, n: int, *, relayed: frozenset[int] = frozenset(),
    authorise: Authorise | None = None,
    service_args: dict[str, float] | None = None,
) -> AsyncIterator[list[ContentNode]]:
    """`n` connected nodes (ids 1..n); every connection of a node in `relayed` goes through
    a CutRelay (its `relays`)."""
    ids = [NodeIdentity.from_seed(i, bytes([i]) * 32) for i in range(1, n + 1)]
    mem = StaticMembership({i.node_id: i.node_key for i in ids})
    # relays first: a relayed pair's address must be an override (signed peer records,
    # gossiped, would otherwise replace a mere hint with the real address)
    relays: dict[tuple[int, int], CutRelay] = {}
    for a in ids:
        for b in ids:
            if a is not b and (a.node_id in relayed or b.node_id in relayed):
                relays[a.node_id, b.node_id] = r = CutRelay()
                await r.start(nursery)
    ts = []
    for i in ids:
        overrides = tuple((b, r.address) for (a, b), r in sorted(relays.items()) if a == i.node_id)
        cfg = TcpConfig(**FAST, peer_overrides=overrides)  # type: ignore[arg-type]
        ts.append(TcpTransport(i, CHAIN, mem, cfg, rng=random.Random(i.node_id),
                               registry=default_registry()))
    nodes = []
    for t in ts:
        store = ContentStore(root / f"node{t.node_id}" / "content")
        svc = ContentService(store, t, authorise or _allow, **(service_args or {}))  # type: ignore[arg-type]
        nodes.append(ContentNode(t, store, svc))
    for t in ts:
        await nursery.start(t.run)
    by_id = {x.node_id: x for x in nodes}
    for (src, dst), r in relays.items():
        r.target = by_id[dst].transport.listen_address
        by_id[src].relays.append(r)
    for x in nodes:
        for y in nodes:
            if x is not y and (x.node_id, y.node_id) not in relays:
                x.transport.address_book.add_hint(y.node_id, y.transport.listen_address)
        x.transport.membership_changed()
    for node in nodes:
        nursery.start_soon(_dispatch, node)
        await nursery.start(node.service.run)
    with trio.fail_after(10):  # polled: the transport has no connection event
        while True:
            if all(len(x.transport.connected_peers()) == n - 1 for x in nodes):
                break
            await trio.sleep(0.01)
    yield nodes


async def _dispatch(node: ContentNode) -> None:
    while True:
        sender, msg = await node.transport.receive()
        node.service.on_message(sender, msg)


async def cut_all(nodes: list[ContentNode]) -> None:
    for node in nodes:
        for r in node.relays:
            await r.cut()


Cutter = Callable[[], Awaitable[None]]


@asynccontextmanager
async def standalone_node(
    nursery: trio.Nursery, root: Path, node_id: int, ports: dict[int, int],
) -> AsyncIterator[ContentNode]:
    """One node of a content network whose nodes run in separate processes: node ids and
    fixed 127.0.0.1 ports in `ports` (this node listens on its own). Connected to all."""
    ids = {i: NodeIdentity.from_seed(i, bytes([i]) * 32) for i in ports}
    mem = StaticMembership({i: x.node_key for i, x in ids.items()})
    cfg = TcpConfig(**FAST, listen_host="127.0.0.1", listen_port=ports[node_id])  # type: ignore[arg-type]
    t = TcpTransport(ids[node_id], CHAIN, mem, cfg, rng=random.Random(node_id),
                     registry=default_registry())
    store = ContentStore(root / f"node{node_id}" / "content")
    node = ContentNode(t, store, ContentService(store, t, _allow))
    await nursery.start(t.run)
    for other, port in ports.items():
        if other != node_id:
            t.address_book.add_hint(other, ("127.0.0.1", port))
    t.membership_changed()
    nursery.start_soon(_dispatch, node)
    await nursery.start(node.service.run)
    with trio.fail_after(30):  # polled: the transport has no connection event
        while True:
            if len(t.connected_peers()) == len(ports) - 1:
                break
            await trio.sleep(0.01)
    yield node


class RelayHost:
    """CutRelays served by a trio loop in a background thread, for tests that drive real
    daemons synchronously: `add(target)` returns the relay's address, `cut_all()` breaks
    every connection through them."""

    def __init__(self, rate_bytes_per_s: float = 0.0) -> None:
        self.rate = rate_bytes_per_s
        self.relays: list[CutRelay] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        assert self._token is not None, "the relay loop did not start"

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await trio.sleep_forever()

    def add(self, target: tuple[str, int]) -> tuple[str, int]:
        async def start() -> tuple[str, int]:
            assert self._nursery is not None
            r = CutRelay(self.rate)
            await r.start(self._nursery)
            r.target = target
            self.relays.append(r)
            return r.address

        addr: tuple[str, int] = trio.from_thread.run(start, trio_token=self._token)
        return addr

    def cut_all(self) -> None:
        async def cut() -> None:
            for r in self.relays:
                await r.cut()

        trio.from_thread.run(cut, trio_token=self._token)

    def close(self) -> None:
        def stop() -> None:
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()

        trio.from_thread.run_sync(stop, trio_token=self._token)
        self._thread.join(10)
