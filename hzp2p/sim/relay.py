"""The live engine's fault-injecting TCP relay: one listening port per ordered node pair.

Owns every byte between two daemons in `hzp2p sim --engine live`. Node i's
config sends its dials to node j to the relay port of (i, j)
([net.peer_addresses]), so the relay knows which pair each connection belongs
to; the bytes i -> j travel the client->server direction of (i, j)
connections and the server->client direction of (j, i) connections, so a
directed link (a, b) is one direction of both. Per direction the relay adds
the scenario's latency (order kept, as TCP does), bandwidth (serialisation
delay) and loss (TCP turns a lost segment into a retransmission: a lost chunk
costs RETRANSMIT_MS more delay). Blocking a link blackholes that direction;
blocking both directions of a pair also closes its open connections and
refuses new ones, so a partition is seen at once. A one-way block cannot
carry a TCP session for long (handshakes need both directions): like a real
one, it ends in read timeouts and the pair falls silent both ways.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import trio

from hzp2p.sim.scenario import Network

Link = tuple[int, int]
RETRANSMIT_MS = 200
CHUNK_BYTES = 65536
MAX_QUEUED_CHUNKS = 4096


class Relay:
    def __init__(
        self, targets: dict[int, tuple[str, int]], net: Network, rng: random.Random
    ) -> None:
        self.targets = targets
        self.net = net
        self.loss = net.loss
        self.rng = rng
        self.blocked: dict[Link, int] = {}
        self.ports: dict[Link, int] = {}
        self._conns: dict[Link, set[trio.CancelScope]] = {}
        self.bytes_relayed = 0
        self.connections = 0

    # --- faults --------------------------------------------------------------------------

    def block(self, links: set[Link]) -> None:
        for link in links:
            self.blocked[link] = self.blocked.get(link, 0) + 1
        for a, b in links:
            if self.is_blocked(b, a):  # both directions: cut the pair's sessions now
                for pair in ((a, b), (b, a)):
                    for scope in list(self._conns.get(pair, ())):
                        scope.cancel()

    def unblock(self, links: set[Link]) -> None:
        for link in links:
            n = self.blocked.get(link, 0) - 1
            if n > 0:
                self.blocked[link] = n
            else:
                self.blocked.pop(link, None)

    def is_blocked(self, a: int, b: int) -> bool:
        return (a, b) in self.blocked

    # --- serving -------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Bind one port per ordered pair (i, j), i != j, and serve them in `nursery`."""
        for i in sorted(self.targets):
            for j in sorted(self.targets):
                if i == j:
                    continue
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                self.ports[(i, j)] = listeners[0].socket.getsockname()[1]
                nursery.start_soon(trio.serve_listeners, self._handler(i, j), listeners)

    def _handler(self, i: int, j: int) -> Callable[[trio.SocketStream], Awaitable[None]]:
        async def handle(client: trio.SocketStream) -> None:
            async with client:
                if self.is_blocked(i, j) and self.is_blocked(j, i):
                    return  # partitioned: refuse
                try:
                    server = await trio.open_tcp_stream(*self.targets[j])
                except OSError:
                    return
                self.connections += 1
                scope = trio.CancelScope()
                self._conns.setdefault((i, j), set()).add(scope)
                try:
                    async with server:
                        with scope:
                            async with trio.open_nursery() as n:
                                n.start_soon(self._direction, client, server, (i, j), n)
                                n.start_soon(self._direction, server, client, (j, i), n)
                finally:
                    self._conns[(i, j)].discard(scope)

        return handle

    async def _direction(
        self, src: trio.SocketStream, dst: trio.SocketStream, link: Link, n: trio.Nursery
    ) -> None:
        send, recv = trio.open_memory_channel[tuple[float, bytes]](MAX_QUEUED_CHUNKS)
        n.start_soon(self._writer, recv, dst, n)
        last = 0.0
        bytes_per_s = self.net.bandwidth_mbit_s * 1e6 / 8
        try:
            while True:
                try:
                    data = await src.receive_some(CHUNK_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    break
                if self.is_blocked(*link):
                    continue  # blackholed
                delay_ms = self.rng.uniform(self.net.latency_ms_min, self.net.latency_ms_max)
                if self.net.spike_prob and self.rng.random() < self.net.spike_prob:
                    delay_ms = self.rng.uniform(self.net.latency_ms_max, self.net.spike_ms)
                if self.loss and self.rng.random() < self.loss:
                    delay_ms += RETRANSMIT_MS
                release = max(trio.current_time() + delay_ms / 1000, last)
                if bytes_per_s > 0:
                    release += len(data) / bytes_per_s
                last = release
                await send.send((release, data))
        finally:
            n.cancel_scope.cancel()

    async def _writer(
        self,
        recv: trio.MemoryReceiveChannel[tuple[float, bytes]],
        dst: trio.SocketStream,
        n: trio.Nursery,
    ) -> None:
        try:
            async for release, data in recv:
                await trio.sleep_until(release)
                try:
                    await dst.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                self.bytes_relayed += len(data)
        finally:
            n.cancel_scope.cancel()
