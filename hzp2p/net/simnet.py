"""An in-memory network of SimTransports under Trio, with fault injection, for virtual time.

`SimNetwork` owns the links; `network.transport(node_id)` gives each node a
`SimTransport` implementing the same Transport contract as TCP, so real node
tasks run unchanged under trio's MockClock (autojump_clock). Every message is
encoded and validated by the same codec as on TCP (so only wire-safe messages
pass), then delivered after a per-link delay. Faults, all seeded from one
random.Random: drop and duplicate probability, delay ranges (per link FIFO
unless `reorder=True`), partitions, one-way blocked links, node isolation.
Queues are bounded: a full link or inbound queue drops the newest message.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import trio

from hzp2p.net.codec import MessageRegistry
from hzp2p.net.connection import Signal
from hzp2p.net.errors import LocalProtocolError, RemoteProtocolError
from hzp2p.net.inbound import Inbound, InboundQueue
from hzp2p.net.schemas import PeerRecords, default_registry
from hzp2p.net.stats import TransportStatistics
from hzp2p.net.transport import MembershipProvider
from hzp2p.raft.types import NodeId

Link = tuple[NodeId, NodeId]


@dataclass(slots=True)
class LinkFaults:
    drop_rate: float = 0.0
    dup_rate: float = 0.0
    min_delay_s: float = 0.0
    max_delay_s: float = 0.0


class SimNetwork:
    """The shared medium. Fault settings apply to links (src, dst); None = every link."""

    def __init__(
        self,
        rng: random.Random,
        *,
        registry: MessageRegistry | None = None,
        membership: MembershipProvider | None = None,
        default_faults: LinkFaults | None = None,
        reorder: bool = False,
        link_queue_max_msgs: int = 4096,
        inbound_queue_max_msgs: int = 4096,
    ) -> None:
        self.rng = rng
        self.registry = registry or default_registry()
        self.membership = membership
        self.default_faults = default_faults or LinkFaults()
        self.reorder = reorder
        self.link_queue_max_msgs = link_queue_max_msgs
        self.inbound_queue_max_msgs = inbound_queue_max_msgs
        self._faults: dict[Link, LinkFaults] = {}
        self._blocked: set[Link] = set()
        self._nodes: dict[NodeId, SimTransport] = {}

    # --- nodes ---------------------------------------------------------------------------

    def transport(self, node_id: NodeId) -> SimTransport:
        """The transport of `node_id` (a fresh one replaces a previous incarnation's)."""
        t = SimTransport(self, node_id)
        self._nodes[node_id] = t
        return t

    def _running(self, node_id: NodeId) -> SimTransport | None:
        t = self._nodes.get(node_id)
        return t if t is not None and t.running else None

    def _is_member(self, node_id: NodeId) -> bool:
        if self.membership is None:
            return node_id in self._nodes
        return self.membership.node_key(node_id) is not None

    # --- faults --------------------------------------------------------------------------

    def faults(self, src: NodeId, dst: NodeId) -> LinkFaults:
        return self._faults.get((src, dst), self.default_faults)

    def set_faults(
        self, faults: LinkFaults, src: NodeId | None = None, dst: NodeId | None = None
    ) -> None:
        """Set faults for one link, or for every link with None wildcards (resets overrides)."""
        if src is None and dst is None:
            self.default_faults = faults
            self._faults.clear()
            return
        nodes = list(self._nodes)
        for s in [src] if src is not None else nodes:
            for d in [dst] if dst is not None else nodes:
                if s != d:
                    self._faults[(s, d)] = faults

    def block(self, src: NodeId, dst: NodeId) -> None:
        """One-way cut: nothing from src reaches dst (dst -> src still works)."""
        self._blocked.add((src, dst))

    def unblock(self, src: NodeId, dst: NodeId) -> None:
        self._blocked.discard((src, dst))

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Cut every link between different groups (nodes in no group keep their links)."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self._blocked.add((x, y))
                        self._blocked.add((y, x))

    def isolate(self, node_id: NodeId) -> None:
        others = [n for n in self._nodes if n != node_id]
        self.partition([node_id], others)

    def heal(self) -> None:
        """Remove every cut (delay and drop settings stay)."""
        self._blocked.clear()

    def can_reach(self, src: NodeId, dst: NodeId) -> bool:
        return (src, dst) not in self._blocked and self._running(dst) is not None


class SimTransport:
    """A node's end of the SimNetwork; implements hzp2p.net.transport.Transport."""

    def __init__(self, network: SimNetwork, node_id: NodeId) -> None:
        self._net = network
        self._id = node_id
        self._stats = TransportStatistics()
        self._links: dict[NodeId, deque[tuple[float, bytes]]] = {}
        self._signals: dict[NodeId, Signal] = {}
        self._nursery: trio.Nursery | None = None
        self._inbound = InboundQueue(network.inbound_queue_max_msgs)

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def running(self) -> bool:
        return self._nursery is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._net._nodes.get(self._id) is not self:
            raise LocalProtocolError("a newer transport replaced this one")
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._links.clear()
                self._signals.clear()

    def send_nowait(self, dst: NodeId, msg: Any) -> bool:
        net = self._net
        if getattr(msg, "dst", dst) != dst:
            raise LocalProtocolError(f"message dst {msg.dst} != {dst}")
        data = net.registry.encode_message(msg)
        stats = self._stats
        if self._nursery is None or dst == self._id or not net._is_member(dst):
            stats.messages_dropped += 1
            return False
        faults = net.faults(self._id, dst)
        copies = 1
        if faults.drop_rate and net.rng.random() < faults.drop_rate:
            copies = 0
        elif faults.dup_rate and net.rng.random() < faults.dup_rate:
            copies = 2
        stats.messages_sent += 1
        stats.bytes_sent += len(data)
        if copies == 0 or not net.can_reach(self._id, dst):
            stats.messages_dropped += 1
            return True  # lost "on the wire" (or peer down / cut off): the sender cannot tell
        link = self._links.get(dst)
        if link is None:
            link = self._links[dst] = deque()
            self._signals[dst] = Signal()
            self._nursery.start_soon(self._link_task, dst, link, self._signals[dst])
        if len(link) + copies > net.link_queue_max_msgs:
            stats.messages_dropped += 1
            return False
        now = trio.current_time()
        for _ in range(copies):
            at = now + net.rng.uniform(faults.min_delay_s, faults.max_delay_s)
            if link and not net.reorder:
                at = max(at, link[-1][0])
            link.append((at, data))
        if net.reorder:
            link_sorted = sorted(link, key=lambda x: x[0])
            link.clear()
            link.extend(link_sorted)
        self._signals[dst].set()
        return True

    async def _link_task(
        self, dst: NodeId, link: deque[tuple[float, bytes]], signal: Signal
    ) -> None:
        net = self._net
        while True:
            while not link:
                await signal.wait()
            at, data = link[0]
            if at > trio.current_time():
                with trio.move_on_at(at):
                    await signal.wait()  # an earlier message may be inserted (reorder)
                continue
            link.popleft()
            target = net._running(dst)
            if target is None or (self._id, dst) in net._blocked:
                self._stats.messages_dropped += 1
                continue
            target._accept(self._id, data)
            await trio.lowlevel.checkpoint()

    def _accept(self, src: NodeId, data: bytes) -> None:
        stats = self._stats
        try:
            msgs = self._net.registry.decode_batch(
                MessageRegistry.join_batch([data]), src=src, dst=self._id
            )
        except RemoteProtocolError:
            stats.frames_refused += 1
            return
        for msg in msgs:
            if type(msg) is PeerRecords:
                continue  # the simulator has no discovery: addresses are implicit
            if not self._inbound.put_nowait((src, msg)):
                stats.messages_dropped += 1
                continue
            stats.messages_received += 1
            stats.bytes_received += len(data)

    async def receive(self) -> Inbound:
        return await self._inbound.receive()

    @property
    def inbound(self) -> InboundQueue:
        return self._inbound

    def connected_peers(self) -> frozenset[NodeId]:
        if not self.running:
            return frozenset()
        net = self._net
        return frozenset(
            n
            for n in net._nodes
            if n != self._id
            and net._is_member(n)
            and net.can_reach(self._id, n)
            and net.can_reach(n, self._id)
        )

    def statistics(self) -> TransportStatistics:
        s = self._stats.snapshot()
        s.connections_current = len(self.connected_peers())
        return s

    def membership_changed(self) -> None:
        """Non-members are refused at send time; drop what is queued for them."""
        for dst in list(self._links):
            if not self._net._is_member(dst):
                self._stats.messages_dropped += len(self._links[dst])
                self._links[dst].clear()
