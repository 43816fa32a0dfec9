"""The deterministic engine of `hzp2p sim`: a scenario on the seeded simulator loop.

Owns the mapping of a `Scenario` onto the existing simulator (hzp2p.sim.simulation):
the real RaftCore per node, the ledger state machine (hzp2p.sim.ledger_sm) instead
of the KV model, open-loop clients that offer transactions at the scenario's rate
and batch what arrived while their previous proposal was in flight, the scenario's
network and disk, and its fault schedule, applied at exact virtual times. A sampler
on the same loop records the leader, per-node lag, the time to a new leader after
each leader loss and the time for every node to catch up after each heal. The run
ends as the simulator's runs do: faults heal, clients finish, the cluster must
converge, and every checker has had a say after every step. Everything is a pure
function of the scenario and its seed except `wall_seconds`.
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hzp2p.raft.messages import Message
from hzp2p.raft.types import Entry, NodeId, Snapshot
from hzp2p.sim.checkers import SimulationFailure, Violation
from hzp2p.sim.clients import Client, ClientPool
from hzp2p.sim.events import derive_rng
from hzp2p.sim.ledger_sm import LedgerWorld, encode_batch
from hzp2p.sim.network import NetProfile, Network, bridge_halves, partition_links
from hzp2p.sim.node import TICK_MS
from hzp2p.sim.record import FaultRecord, RunRecord
from hzp2p.sim.scenario import Fault, Scenario
from hzp2p.sim.simulation import SimOptions, Simulation
from hzp2p.sim.statemachine import ApplyOutcome

LAG_SAMPLE_MS = 100
PROGRESS_STEPS = 50
ProgressFn = Callable[[float], None]


class RateClientPool(ClientPool):
    """Clients that offer Poisson arrivals at the scenario's rate, one batch in flight each."""

    def setup(
        self,
        world: LedgerWorld,
        rate_per_s: float,
        max_batch: int,
        interval_ms: int,
        rng: random.Random,
    ) -> None:
        self.world = world
        self.interval_ms = interval_ms
        self.last_issue: dict[int, int] = {}
        self.max_batch = max_batch
        self.arrival_rng = rng
        self.mean_gap_ms = (1000.0 * len(self.clients) / rate_per_s) if rate_per_s > 0 else 0.0
        self.next_arrival: dict[int, float] = {}
        self.waiting: dict[int, deque[float]] = {c.client_id: deque() for c in self.clients}
        self.batches: dict[int, tuple[int, list[bytes], list[float]]] = {}
        self.tx_acks: list[tuple[int, float]] = []  # (ack ms, latency ms) per transaction
        for c in self.clients:
            self.next_arrival[c.client_id] = self._gap()

    def _gap(self) -> float:
        return self.arrival_rng.expovariate(1.0 / self.mean_gap_ms)

    def _collect(self, c: Client) -> None:
        now = self.loop.now_ms
        q = self.waiting[c.client_id]
        t = self.next_arrival[c.client_id]
        while t <= now and len(q) < 100_000:
            q.append(t)
            t += self._gap()
        self.next_arrival[c.client_id] = t

    def _next(self, c: Client) -> None:
        if not self.issuing or self.mean_gap_ms <= 0:
            return
        due = self.last_issue.get(c.client_id, -self.interval_ms) + self.interval_ms
        if self.loop.now_ms < due:  # one block per interval per client
            self.loop.at(due, self._next, c)
            return
        self._collect(c)
        q = self.waiting[c.client_id]
        if not q:  # nothing offered yet: come back when the next transaction arrives
            at = int(self.next_arrival[c.client_id]) + 1
            self.loop.at(max(at, self.loop.now_ms), self._next, c)
            return
        self.last_issue[c.client_id] = self.loop.now_ms
        n = min(len(q), self.max_batch)
        arrivals = [q.popleft() for _ in range(n)]
        types = self.arrival_rng.choices(self.world.mix_types, self.world.mix_weights, k=n)
        self.batches[c.client_id] = (c.seq + 1, [self.world.next_tx(t) for t in types], arrivals)
        super()._next(c)

    def request(self, client_id: int, seq: int, attempt: int, rng: random.Random) -> bytes:
        bseq, txs, _ = self.batches[client_id]
        assert bseq == seq
        return encode_batch(client_id, seq, attempt, txs)

    def on_applied(self, node_id: NodeId, entry: Entry, outcome: ApplyOutcome | None) -> None:
        watching = [(c, c.acked) for c in self.nodes[node_id].watchers.get(entry.index, [])]
        super().on_applied(node_id, entry, outcome)
        now = self.loop.now_ms
        for c, before in watching:
            if c.acked > before:
                _, _, arrivals = self.batches.pop(c.client_id)
                self.tx_acks.extend((now, now - a) for a in arrivals)


class _Workload:
    def __init__(self) -> None:
        self.pool: RateClientPool | None = None

    def request(self, client_id: int, seq: int, attempt: int, rng: random.Random) -> bytes:
        assert self.pool is not None
        return self.pool.request(client_id, seq, attempt, rng)


class BandwidthNetwork(Network):
    """The model network plus each node's egress: its messages leave one after another at
    `bytes_per_ms` (a leader sending every block to N followers pays N times its size)."""

    def __init__(self, *args: Any, bytes_per_ms: float, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.bytes_per_ms = bytes_per_ms
        self._busy_until: dict[NodeId, float] = {}
        self._extra_ms = 0

    def send(self, msg: Message) -> None:
        size = 64 + sum(len(e.data) + 24 for e in getattr(msg, "entries", ()) or ())
        size += len(getattr(msg, "data", b"") or b"")
        now = self._loop.now_ms
        done = max(self._busy_until.get(msg.src, 0.0), float(now)) + size / self.bytes_per_ms
        self._busy_until[msg.src] = done
        self._extra_ms = int(done - now)
        super().send(msg)

    def _delay_ms(self) -> int:
        return super()._delay_ms() + self._extra_ms


class LedgerSimulation(Simulation):
    """The simulator with the ledger's cheaper snapshot check (digest recorded at apply)."""

    world: LedgerWorld

    def check_snapshot(self, node: NodeId, snap: Snapshot) -> None:
        meta = snap.meta
        self.checkers.log.check_snapshot_point(node, meta.index, meta.term)
        idx = max((i for i in self.world.digest_at if i <= meta.index), default=0)
        want = self.world.digest_at.get(idx)
        sm = self.nodes[node].sm
        if want is not None and sm is not None and sm.digest() != want.hex()[:16]:
            raise Violation(
                "snapshot state differs",
                f"node {node} installed a snapshot at index {meta.index} whose ledger state "
                "is not the committed state at that index",
            )


class DeterministicRun:
    """One scenario, one seed, in virtual time."""

    def __init__(
        self,
        scenario: Scenario,
        progress: ProgressFn | None = None,
        skip: tuple[int, int] | None = None,
    ) -> None:
        self.scn = scenario
        c, w = scenario.cluster, scenario.workload
        self.world = LedgerWorld(c.voters, c.learners, w.mix)
        self.world.skip = skip
        self.duration_ms = int(scenario.duration_s * 1000)
        opts = SimOptions(
            seed=scenario.seed,
            voters=c.voters,
            learners=c.learners,
            profile="scripted",
            clients=w.clients,
            readers=0,
            safety_ticks=max(1, self.duration_ms // TICK_MS),
            membership=False,
            election_ticks=scenario.election_ticks,
            heartbeat_ticks=scenario.heartbeat_ticks,
        )
        wl = _Workload()
        sim = LedgerSimulation(opts, sm_factory=self.world.new_sm, workload=wl)
        sim.world = self.world
        rng = random.Random(scenario.seed ^ 0x5C3A)
        pool = RateClientPool(
            sim.loop, derive_rng(rng), sim.nodes, sim.checkers, sim.trace, w.clients, 0, wl
        )
        pool.setup(
            self.world, w.tx_rate_per_s, w.max_batch_txs, w.block_interval_ms, derive_rng(rng)
        )
        wl.pool = pool
        sim.clients = pool
        n = scenario.network
        self.net_profile = NetProfile(
            drop_prob=n.loss,
            dup_prob=n.duplicate,
            min_delay_ms=n.latency_ms_min,
            max_delay_ms=n.latency_ms_max,
            spike_prob=n.spike_prob,
            spike_delay_ms=n.spike_ms,
            half_open_ms=n.half_open_ms,
        )
        if n.bandwidth_mbit_s > 0:
            sim.network = BandwidthNetwork(
                sim.loop, derive_rng(rng), sim._deliver, self.net_profile,
                bytes_per_ms=n.bandwidth_mbit_s * 1e6 / 8 / 1000,
            )  # fmt: skip
        sim.network.profile = self.net_profile
        for node in sim.nodes.values():
            node.disk_min_ms, node.disk_max_ms = (
                scenario.disk.fsync_ms_min,
                scenario.disk.fsync_ms_max,
            )
        self.sim = sim
        self.pool = pool
        self.fault_rng = derive_rng(rng)
        self.progress = progress
        self.rec = RunRecord(engine="deterministic", scenario=scenario.name, seed=scenario.seed)
        self._last_leader: NodeId | None = None
        self._fid = 0
        self._loss_open: list[FaultRecord] = []
        self._heal_open: list[tuple[FaultRecord, int]] = []
        self._samples = 0
        self._progress_every = max(1, self.duration_ms // TICK_MS // PROGRESS_STEPS)

    # --- faults ------------------------------------------------------------------------

    def _resolve(self, f: Fault) -> NodeId | None:
        sim = self.sim
        up = [n for n in sim.all_ids() if sim.nodes[n].up]
        leader = sim.current_leader()
        if isinstance(f.target, int):
            return f.target
        pool = {
            "leader": [leader] if leader is not None else [],
            "follower": [v for v in sim.voter_ids() if v != leader and v in up],
            "voter": [v for v in sim.voter_ids() if v in up],
            "learner": [v for v in sorted(sim.conf.learners) if v in up],
        }[f.target]
        return self.fault_rng.choice(pool) if pool else None

    def _schedule_faults(self) -> None:
        for f in self.scn.faults:
            self.sim.loop.at(int(f.at_s * 1000), self._start_fault, f)

    def _start_fault(self, f: Fault) -> None:
        sim, net = self.sim, self.sim.network
        now = sim.loop.now_ms
        end = min(int(f.end_s * 1000), self.duration_ms)
        target = self._resolve(f) if f.kind not in ("split", "lossy") else None
        leader = sim.current_leader()
        fr = FaultRecord(f.kind, now, end, str(f.target))
        self.rec.faults.append(fr)
        if f.kind not in ("split", "lossy") and target is None:
            fr.detail = "no such node at this time: skipped"
            return
        self._fid += 1
        fid = self._fid
        others = [n for n in sim.all_ids() if n != target]
        undo: Callable[[], None]
        if f.kind in ("isolate_leader", "pause"):
            assert target is not None
            net.block(fid, partition_links([[target], others]))
            fr.detail = f"node {target} cut off"
            undo = lambda: net.unblock(fid)  # noqa: E731
        elif f.kind == "split":
            voters = sim.voter_ids()
            pool = [v for v in voters if v != leader] if f.target == "follower" else voters
            minority = set(self.fault_rng.sample(pool, min(f.minority, len(pool))))
            if f.target == "leader" and leader is not None and leader not in minority:
                minority.discard(max(minority))
                minority.add(leader)
            net.block(
                fid,
                partition_links(
                    [sorted(minority), [n for n in sim.all_ids() if n not in minority]]
                ),
            )
            fr.detail = f"minority {sorted(minority)}"
            target = leader if leader in minority else None
            undo = lambda: net.unblock(fid)  # noqa: E731
        elif f.kind == "bridge":
            assert target is not None
            halves = bridge_halves(target, sim.all_ids(), self.fault_rng)
            net.block(fid, partition_links(halves))
            fr.detail = f"node {target} bridges {halves[0]} and {halves[1]}"
            undo = lambda: net.unblock(fid)  # noqa: E731
            target = None  # the bridge keeps every link: not a leader loss by itself
        elif f.kind == "one_way":
            assert target is not None
            links = frozenset(
                (target, b) if f.direction == "outbound" else (b, target) for b in others
            )
            net.block(fid, links)
            fr.detail = f"node {target} {f.direction} links dropped"
            undo = lambda: net.unblock(fid)  # noqa: E731
            if f.direction == "inbound":
                target = None
        elif f.kind == "flap":
            assert target is not None
            peer = next((v for v in sim.voter_ids() if v != target), None)
            if peer is None:
                fr.detail = "no peer to flap with: skipped"
                return
            pair = frozenset({(target, peer), (peer, target)})
            fr.detail = f"link {target}<->{peer} every {f.period_ms} ms"
            state = {"down": False, "on": True}

            def toggle() -> None:
                if not state["on"]:
                    return
                state["down"] = not state["down"]
                net.unblock(fid)
                if state["down"]:
                    net.block(fid, pair)
                sim.loop.after(f.period_ms, toggle)

            toggle()

            def stop() -> None:
                state["on"] = False
                net.unblock(fid)

            undo = stop
            target = None
        elif f.kind == "crash":
            assert target is not None
            sim.nodes[target].crash()
            fr.detail = f"node {target} crashed"

            def restart(t: NodeId = target) -> None:
                node = sim.nodes[t]
                if not node.up and not node.removed:
                    node.start()

            undo = restart
        elif f.kind == "slow_disk":
            assert target is not None
            node = sim.nodes[target]
            node.disk_min_ms = node.disk_max_ms = f.fsync_ms
            fr.detail = f"node {target} fsync {f.fsync_ms} ms"
            d = self.scn.disk

            def fast(n: Any = node) -> None:
                n.disk_min_ms, n.disk_max_ms = d.fsync_ms_min, d.fsync_ms_max

            undo = fast
            target = None
        else:  # lossy
            net.profile = replace(self.net_profile, drop_prob=f.loss)
            fr.detail = f"loss {f.loss:.0%}"
            undo = lambda: setattr(net, "profile", self.net_profile)  # noqa: E731
        if target is not None and target == leader:
            fr.leader_lost = leader
            self._loss_open.append(fr)
        sim.loop.at(end, self._end_fault, fr, undo)

    def _end_fault(self, fr: FaultRecord, undo: Callable[[], None]) -> None:
        undo()
        self._heal_open.append((fr, self.sim.checkers.log.committed_max))

    # --- sampling ----------------------------------------------------------------------

    def _sample(self) -> None:
        sim = self.sim
        now = sim.loop.now_ms
        leader = sim.current_leader()
        if leader != self._last_leader:
            term = sim.nodes[leader].term if leader is not None else 0
            self.rec.leader_changes.append((now, leader or 0, term))
            self._last_leader = leader
        if leader is not None:
            for fr in list(self._loss_open):
                if leader != fr.leader_lost:
                    fr.new_leader_ms = now - fr.start_ms
                    fr.new_leader = leader
                    self._loss_open.remove(fr)
        if self._heal_open:
            # Every member that is up (a node still down under another fault cannot count).
            members = [sim.nodes[n] for n in sim.member_ids() if sim.nodes[n].up]
            lowest = min((n.applied for n in members), default=-1)
            for item in list(self._heal_open):
                fr, target = item
                if lowest >= target:
                    fr.converged_ms = now - fr.end_ms
                    self._heal_open.remove(item)
        if now % LAG_SAMPLE_MS == 0:
            top = max(n.applied for n in sim.nodes.values())
            self.rec.lag.append((now, [top - sim.nodes[i].applied for i in sorted(sim.nodes)]))
        self._samples += 1
        if self.progress is not None and self._samples % self._progress_every == 0:
            self.progress(min(1.0, now / self.duration_ms))
        sim.loop.after(TICK_MS, self._sample)

    # --- running -----------------------------------------------------------------------

    def run(self) -> RunRecord:
        rec = self.rec
        self._schedule_faults()
        self.sim.loop.at(0, self._sample)
        t0 = time.perf_counter()
        failure: SimulationFailure | None = None
        try:
            summary = self.sim.run()
            rec.extra["liveness_ms"] = summary.liveness_ticks * TICK_MS
        except SimulationFailure as f:
            failure = f
        rec.wall_seconds = time.perf_counter() - t0
        if self.progress is not None:
            self.progress(1.0)
        sim = self.sim
        rec.sim_seconds = self.duration_ms / 1000
        rec.tx_acks = [(t, lat) for t, lat in self.pool.tx_acks if t <= self.duration_ms]
        rec.tx_acks_total = len(self.pool.tx_acks)
        rec.elections = sim.checkers.election.elections
        rec.node_ids = sorted(sim.nodes)
        if failure is not None:
            rec.violations.append(
                {
                    "property": failure.prop,
                    "detail": failure.detail,
                    "at_ms": failure.time_ms,
                    "replay": _replay(self.scn),
                }
            )
        sms = [n.sm for n in sim.nodes.values() if n.sm is not None]
        rec.extra.update(
            blocks=len(self.world.block_at),
            txs_applied=len(self.world.tx_block),
            messages=sim.network.sent,
            messages_dropped=sim.network.dropped,
            crashes=sim.crashes,
            virtual_ms_total=sim.loop.now_ms,
            steps=sim.loop.steps,
            nodes_applied_blocks=max((getattr(s, "blocks", 0) for s in sms), default=0),
        )
        return rec


def _replay(scn: Scenario) -> str:
    return f"hzp2p sim {scn.source or scn.name + '.toml'} --seed {scn.seed}"


def run_deterministic(
    scenario: Scenario, progress: ProgressFn | None = None, skip: tuple[int, int] | None = None
) -> RunRecord:
    return DeterministicRun(scenario, progress, skip).run()


def stderr_progress(label: str) -> ProgressFn:
    """A one-line progress bar on stderr."""

    finished = [False]

    def show(frac: float) -> None:
        if finished[0]:
            return
        finished[0] = frac >= 1.0
        width = 30
        done = int(frac * width)
        sys.stderr.write(f"\r{label} [{'#' * done}{'.' * (width - done)}] {frac:5.0%}")
        if frac >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
