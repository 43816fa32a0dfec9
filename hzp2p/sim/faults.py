"""Fault profiles and the random fault schedule of the safety phase.

Owns which faults happen when. Every `interval` of virtual time the scheduler
draws one action by weight (crash a node or the leader, isolate the leader,
split minority/majority, one-way links, a flapping link, a lossy network, a
slow disk, a leadership transfer, a membership change) and schedules its heal
at a random later time; everything is drawn from the scheduler's own RNG. At
most `max_active` faults are open at once and at most a minority of voters is
down (so the cluster can still make progress). `heal_all` ends every fault for
the liveness phase.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from hzp2p.raft.errors import RaftError
from hzp2p.raft.types import NodeId
from hzp2p.sim.events import EventLoop
from hzp2p.sim.network import AWFUL_NET, CALM_NET, LOSSY_NET, NetProfile, Network, partition_links
from hzp2p.sim.node import TICK_MS, SimNode


class _Options(Protocol):
    @property
    def membership(self) -> bool: ...


class FaultTarget(Protocol):
    """What the scheduler acts on: the run (hzp2p.sim.simulation.Simulation), seen from below."""

    @property
    def options(self) -> _Options: ...

    loop: EventLoop
    network: Network
    nodes: dict[NodeId, SimNode]

    def voter_ids(self) -> list[NodeId]: ...

    def member_ids(self) -> list[NodeId]: ...

    def all_ids(self) -> list[NodeId]: ...

    def current_leader(self) -> NodeId | None: ...

    def membership_step(self, rng: random.Random) -> bool: ...

ACTIONS = (
    "crash",
    "crash_leader",
    "isolate_leader",
    "split",
    "one_way",
    "flap",
    "lossy_net",
    "slow_disk",
    "transfer",
    "membership",
)


@dataclass(frozen=True, slots=True)
class FaultProfile:
    name: str
    weights: dict[str, float]
    interval_ms: tuple[int, int] = (5 * TICK_MS, 25 * TICK_MS)
    """Virtual time between two fault injections (uniform)."""
    duration_ms: tuple[int, int] = (10 * TICK_MS, 60 * TICK_MS)
    """How long a fault lasts before it heals (uniform)."""
    max_active: int = 3
    base_net: NetProfile = CALM_NET
    safety_ticks: int = 300
    """Length of the safety phase, in ticks."""
    max_entries_per_msg: tuple[int, ...] = (1, 4, 64)
    """Drawn per run: small batches make partial replication (Figure 8) likely."""
    allow_majority_down: bool = False
    compact_every: tuple[int, int] | None = (20, 80)
    """Each node snapshots and compacts its log every N applied entries, N drawn per node."""
    snapshot_chunk_bytes: tuple[int, ...] = (512, 4096, 1 << 18)
    """InstallSnapshot chunk size, drawn per run (small sizes exercise resumed transfers)."""
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert set(self.weights) <= set(ACTIONS), set(self.weights) - set(ACTIONS)


PROFILES: dict[str, FaultProfile] = {
    p.name: p
    for p in (
        FaultProfile(
            "mixed",
            {
                "crash": 3,
                "crash_leader": 2,
                "isolate_leader": 2,
                "split": 2,
                "one_way": 1.5,
                "flap": 1,
                "lossy_net": 1.5,
                "slow_disk": 1,
                "transfer": 1,
                "membership": 1.5,
            },
            base_net=NetProfile(drop_prob=0.01, dup_prob=0.01, max_delay_ms=6, spike_prob=0.01),
        ),
        FaultProfile("calm", {}, safety_ticks=200),
        # `hzp2p sim SCENARIO.toml`: no random faults (the scenario scripts them with
        # `inject`-style actions); the ledger's snapshots are whole states, so compact rarely.
        FaultProfile(
            "scripted",
            {},
            compact_every=(300, 600),
            max_entries_per_msg=(64,),
            snapshot_chunk_bytes=(1 << 20,),
        ),
        FaultProfile(
            "crashes",
            {"crash": 3, "crash_leader": 3, "slow_disk": 1, "membership": 1},
            interval_ms=(3 * TICK_MS, 12 * TICK_MS),
        ),
        FaultProfile(
            "partitions",
            {
                "isolate_leader": 2,
                "split": 2,
                "one_way": 2,
                "flap": 1,
                "lossy_net": 1,
                "membership": 1,
            },
        ),
        # Membership churn under crashes: joins, promotions,
        # removals of live and dead voters and of the leader itself.
        FaultProfile(
            "churn",
            {"crash": 2, "crash_leader": 2, "isolate_leader": 1, "split": 1, "membership": 6},
            interval_ms=(3 * TICK_MS, 12 * TICK_MS),
        ),
        # Built to expose Figure-8 and stale-vote bugs: one entry per append, so a
        # leader often dies having replicated only part of its log; leaders crash
        # or get cut off every few ticks; slow, lossy links widen every window.
        # With a core that commits earlier-term entries by counting it fails ~1 seed
        # in 10 (3 voters); with a core that skips the log check, most seeds fail.
        FaultProfile(
            "hunt",
            {"crash": 2, "crash_leader": 6, "isolate_leader": 3, "split": 1},
            interval_ms=(1 * TICK_MS, 5 * TICK_MS),
            duration_ms=(3 * TICK_MS, 20 * TICK_MS),
            max_entries_per_msg=(1,),
            base_net=NetProfile(drop_prob=0.1, max_delay_ms=25, spike_prob=0.05, reorder_prob=1.0),
            safety_ticks=600,
        ),
    )
}


class FaultScheduler:
    def __init__(self, sim: FaultTarget, rng: random.Random, profile: FaultProfile) -> None:
        self.sim = sim
        self.rng = rng
        self.profile = profile
        self.active = False
        self.open_faults = 0
        self.next_fault_id = 0
        self.injected: dict[str, int] = {}
        self._epoch = 0  # bumps on heal_all; voids every pending heal/toggle
        weights = dict(profile.weights)
        if not sim.options.membership:  # --no-membership: the profile's changes are off
            weights.pop("membership", None)
        self._actions = sorted(weights)
        self._weights = [weights[a] for a in self._actions]

    def start(self) -> None:
        self.active = bool(self._actions)
        if self.active:
            self._schedule_next()

    def _schedule_next(self) -> None:
        lo, hi = self.profile.interval_ms
        self.sim.loop.after(self.rng.randint(lo, hi), self._inject, self._epoch)

    def _duration_ms(self) -> int:
        lo, hi = self.profile.duration_ms
        return self.rng.randint(lo, hi)

    def inject(self, action: str) -> bool:
        """Inject one named fault now (for scripted scenarios); True if it took effect."""
        if action not in ACTIONS:
            raise ValueError(f"unknown fault {action!r} (known: {', '.join(ACTIONS)})")
        done: bool = getattr(self, "_do_" + action)()
        if done:
            self.injected[action] = self.injected.get(action, 0) + 1
        return done

    def _inject(self, epoch: int) -> None:
        if epoch != self._epoch or not self.active:
            return
        self._schedule_next()
        if self.open_faults >= self.profile.max_active:
            return
        self.inject(self.rng.choices(self._actions, self._weights)[0])

    def _later(self, fn: object, *args: object) -> None:
        """Schedule a heal; it runs only if no heal_all happened in between."""
        self.open_faults += 1
        self.sim.loop.after(self._duration_ms(), self._heal, self._epoch, fn, args)

    def _heal(self, epoch: int, fn: object, args: tuple[object, ...]) -> None:
        if epoch != self._epoch:
            return
        self.open_faults -= 1
        assert callable(fn)
        fn(*args)

    def heal_all(self) -> None:
        """Liveness phase: end every fault, restore the network and disks, restart nodes."""
        self.active = False
        self._epoch += 1
        self.open_faults = 0
        sim = self.sim
        sim.network.heal_all()
        sim.network.profile = CALM_NET
        for node in sim.nodes.values():
            node.disk_min_ms, node.disk_max_ms = 1, 4
            if not node.up and not node.removed:
                node.start()

    # --- actions (True if injected) ------------------------------------------------------

    def _can_crash(self) -> bool:
        sim = self.sim
        down = sum(1 for n in sim.voter_ids() if not sim.nodes[n].up)
        limit = (
            len(sim.voter_ids())
            if self.profile.allow_majority_down
            else ((len(sim.voter_ids()) - 1) // 2)
        )
        return down < limit

    def _crash(self, node_id: NodeId) -> bool:
        node = self.sim.nodes[node_id]
        if not node.up or (node_id in self.sim.voter_ids() and not self._can_crash()):
            return False
        node.crash()
        self._later(self._restart, node_id)
        return True

    def _restart(self, node_id: NodeId) -> None:
        node = self.sim.nodes[node_id]
        if not node.up and not node.removed:
            node.start()

    def _do_crash(self) -> bool:
        live = [n for n in self.sim.member_ids() if self.sim.nodes[n].up]
        return bool(live) and self._crash(self.rng.choice(live))

    def _do_crash_leader(self) -> bool:
        leader = self.sim.current_leader()
        return leader is not None and self._crash(leader)

    def _block(self, links: frozenset[tuple[NodeId, NodeId]]) -> bool:
        if not links:
            return False
        self.next_fault_id += 1
        fid = self.next_fault_id
        self.sim.network.block(fid, links)
        self._later(self.sim.network.unblock, fid)
        return True

    def _do_isolate_leader(self) -> bool:
        leader = self.sim.current_leader()
        if leader is None:
            return False
        others = [n for n in self.sim.all_ids() if n != leader]
        return self._block(partition_links([[leader], others]))

    def _do_split(self) -> bool:
        ids = self.sim.all_ids()
        voters = self.sim.voter_ids()
        minority = self.rng.sample(voters, self.rng.randint(1, max(1, (len(voters) - 1) // 2)))
        rest = [n for n in ids if n not in minority]
        return self._block(partition_links([minority, rest]))

    def _do_one_way(self) -> bool:
        ids = self.sim.all_ids()
        if len(ids) < 2:
            return False
        a = self.rng.choice(ids)
        targets = [n for n in ids if n != a]
        k = self.rng.randint(1, len(targets))
        bs = self.rng.sample(targets, k)
        outbound = self.rng.random() < 0.5
        links = frozenset((a, b) if outbound else (b, a) for b in bs)
        return self._block(links)

    def _do_flap(self) -> bool:
        ids = self.sim.all_ids()
        if len(ids) < 2:
            return False
        a, b = self.rng.sample(ids, 2)
        self.next_fault_id += 1
        fid = self.next_fault_id
        end_ms = self.sim.loop.now_ms + self._duration_ms()
        self.open_faults += 1
        self._toggle(self._epoch, fid, frozenset({(a, b), (b, a)}), True, end_ms)
        return True

    def _toggle(
        self, epoch: int, fid: int, links: frozenset[tuple[NodeId, NodeId]], down: bool, end_ms: int
    ) -> None:
        if epoch != self._epoch:
            return
        net = self.sim.network
        net.unblock(fid)
        if self.sim.loop.now_ms >= end_ms:
            self.open_faults -= 1
            return
        if down:
            net.block(fid, links)
        self.sim.loop.after(
            self.rng.randint(1, 3 * TICK_MS), self._toggle, epoch, fid, links, not down, end_ms
        )

    def _do_lossy_net(self) -> bool:
        net = self.sim.network
        if net.profile is not self.profile.base_net:
            return False
        net.profile = AWFUL_NET if self.rng.random() < 0.3 else LOSSY_NET
        self._later(self._restore_net)
        return True

    def _restore_net(self) -> None:
        self.sim.network.profile = self.profile.base_net

    def _do_slow_disk(self) -> bool:
        live = [n for n in self.sim.all_ids() if self.sim.nodes[n].up]
        if not live:
            return False
        node = self.sim.nodes[self.rng.choice(live)]
        node.disk_min_ms, node.disk_max_ms = 2 * TICK_MS, 30 * TICK_MS
        self._later(self._restore_disk, node.node_id)
        return True

    def _restore_disk(self, node_id: NodeId) -> None:
        node = self.sim.nodes[node_id]
        node.disk_min_ms, node.disk_max_ms = 1, 4

    def _do_transfer(self) -> bool:
        leader = self.sim.current_leader()
        if leader is None:
            return False
        targets = [n for n in self.sim.voter_ids() if n != leader]
        if not targets:
            return False
        try:
            self.sim.nodes[leader].transfer_leadership(self.rng.choice(targets))
        except (RaftError, ValueError):
            return False
        return True

    def _do_membership(self) -> bool:
        return self.sim.membership_step(self.rng)
