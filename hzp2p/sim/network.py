"""The model network: per-message delay, drop, duplication and reordering, plus partitions.

Each directed link is FIFO like a TCP stream, except that a message may take
an independent random delay (`reorder_prob`) and so overtake or be overtaken.

Owns every message between send and delivery. Links are directed, so a
symmetric partition blocks both directions and a one-way fault blocks one.
Blocks are grouped by the fault that made them (`block(fault_id, links)`), so
overlapping faults heal independently. A message is lost if its link is blocked
when it is sent or when it would arrive (packets in flight die with the link).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hzp2p.raft.types import NodeId
from hzp2p.sim.events import EventLoop

Link = tuple[NodeId, NodeId]
Message = Any
"""A Raft message or a ledger message (hzp2p.sim.ledger_app.LedgerMsg): anything with
`src` and `dst`."""

MAX_INFLIGHT_PER_LINK = 4096
"""Bound on messages in flight on one directed link; past it new ones are dropped
(a full socket buffer). Far above what a correct core keeps in flight."""


@dataclass(frozen=True, slots=True)
class NetProfile:
    """How the network behaves while it is healthy or degraded (delays in virtual ms)."""

    drop_prob: float = 0.0
    dup_prob: float = 0.0
    min_delay_ms: int = 1
    max_delay_ms: int = 6
    spike_prob: float = 0.0
    """Chance that a message takes up to `spike_delay_ms` instead (reordering)."""
    spike_delay_ms: int = 60
    reorder_prob: float = 0.05
    """Chance that a message ignores its link's FIFO order (TCP keeps order per link;
    reconnects, multi-path and the duplicate copies of a retry do not)."""
    half_open_ms: int = 0
    """How long a link stays dead after the partition that cut it heals: the connection
    it had is half-open, and nothing passes until the sender notices (keepalives, read
    timeout) and reconnects. 0: a healed link carries the next message (issue 22)."""

    def __post_init__(self) -> None:
        assert 0.0 <= self.drop_prob < 1.0 and 0.0 <= self.dup_prob < 1.0
        assert 0.0 <= self.reorder_prob <= 1.0
        assert 0 <= self.min_delay_ms <= self.max_delay_ms <= self.spike_delay_ms
        assert self.half_open_ms >= 0


CALM_NET = NetProfile()
LOSSY_NET = NetProfile(drop_prob=0.05, dup_prob=0.03, max_delay_ms=10, spike_prob=0.03)
AWFUL_NET = NetProfile(
    drop_prob=0.3, dup_prob=0.1, max_delay_ms=20, spike_prob=0.1, spike_delay_ms=150
)


class Network:
    """Delivers messages through the event loop to `deliver(msg)`."""

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        deliver: Callable[[Message], None],
        profile: NetProfile = CALM_NET,
    ) -> None:
        self._loop = loop
        self._rng = rng
        self._deliver = deliver
        self.profile = profile
        self._blocks: dict[int, frozenset[Link]] = {}
        self._blocked: dict[Link, int] = {}  # link -> number of faults blocking it
        self._inflight: dict[Link, int] = {}
        self._fifo_ms: dict[Link, int] = {}  # latest in-order arrival time per link
        self._dead_until_ms: dict[Link, int] = {}  # healed links still half-open
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0
        self.delivered = 0

    # --- faults ---------------------------------------------------------------

    def block(self, fault_id: int, links: Iterable[Link]) -> None:
        assert fault_id not in self._blocks, f"fault {fault_id} already blocks links"
        ls = frozenset(links)
        self._blocks[fault_id] = ls
        for link in ls:
            self._blocked[link] = self._blocked.get(link, 0) + 1

    def unblock(self, fault_id: int) -> None:
        for link in self._blocks.pop(fault_id, frozenset()):
            n = self._blocked[link] - 1
            assert n >= 0
            if n:
                self._blocked[link] = n
            else:
                del self._blocked[link]
                if self.profile.half_open_ms:
                    self._dead_until_ms[link] = self._loop.now_ms + self.profile.half_open_ms

    def heal_all(self) -> None:
        for fid in sorted(self._blocks):
            self.unblock(fid)
        assert not self._blocked

    def is_blocked(self, src: NodeId, dst: NodeId) -> bool:
        return (src, dst) in self._blocked

    def _cut(self, link: Link) -> bool:
        """Blocked by a fault, or healed but still half-open."""
        if link in self._blocked:
            return True
        until = self._dead_until_ms.get(link)
        if until is None:
            return False
        if self._loop.now_ms < until:
            return True
        del self._dead_until_ms[link]
        return False

    @property
    def active_faults(self) -> int:
        return len(self._blocks)

    # --- traffic --------------------------------------------------------------

    def _delay_ms(self) -> int:
        p = self.profile
        rng = self._rng
        if p.spike_prob and rng.random() < p.spike_prob:
            return rng.randint(p.min_delay_ms, p.spike_delay_ms)
        return rng.randint(p.min_delay_ms, p.max_delay_ms)

    def send(self, msg: Message) -> None:
        self.sent += 1
        link = (msg.src, msg.dst)
        p = self.profile
        rng = self._rng
        if self._cut(link) or (p.drop_prob and rng.random() < p.drop_prob):
            self.dropped += 1
            return
        copies = 2 if p.dup_prob and rng.random() < p.dup_prob else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            n = self._inflight.get(link, 0)
            if n >= MAX_INFLIGHT_PER_LINK:
                self.dropped += 1
                continue
            self._inflight[link] = n + 1
            arrive_ms = self._loop.now_ms + self._delay_ms()
            if not (p.reorder_prob and rng.random() < p.reorder_prob):
                arrive_ms = max(arrive_ms, self._fifo_ms.get(link, 0))
                self._fifo_ms[link] = arrive_ms
            self._loop.at(arrive_ms, self._arrive, msg)

    def _arrive(self, msg: Message) -> None:
        link = (msg.src, msg.dst)
        n = self._inflight[link] - 1
        assert n >= 0
        self._inflight[link] = n
        if self._cut(link):
            self.dropped += 1
            return
        self.delivered += 1
        self._deliver(msg)


def partition_links(groups: Iterable[Iterable[NodeId]]) -> frozenset[Link]:
    """Directed links cut by a symmetric partition into `groups` (no link across groups)."""
    gs = [sorted(set(g)) for g in groups]
    links: set[Link] = set()
    for i, a in enumerate(gs):
        for j, b in enumerate(gs):
            if i != j:
                links.update((x, y) for x in a for y in b)
    return frozenset(links)


def bridge_halves(
    bridge: NodeId, nodes: Iterable[NodeId], rng: random.Random
) -> tuple[list[NodeId], list[NodeId]]:
    """The two sides of a bridge partition: every node but `bridge`, shuffled by `rng` and
    halved. Cut with `partition_links(bridge_halves(...))`: each side still sees the
    bridge, which sees both, but the sides cannot see each other."""
    rest = sorted(n for n in set(nodes) if n != bridge)
    rng.shuffle(rest)
    half = len(rest) // 2
    return sorted(rest[:half]), sorted(rest[half:])
