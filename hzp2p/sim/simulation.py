"""One simulated run for one seed: build the cluster, run the safety phase, then liveness.

Owns the wiring of a run (loop, network, nodes, clients, faults, checkers),
the RNG derivation from the seed, the trace tail, the history fingerprint and
the liveness phase. `Simulation(options).run()` returns a `RunSummary` or
raises `SimulationFailure` naming the seed, the property, the last events and
the command that replays the run. The core and the state machine are injected
(`core_factory`, `sm_factory`) so tests can plant bugs and a later issue can
put the ledger on top of the same loop. With `ledger` (the default) every node also
runs the production ledger node (hzp2p.sim.ledger_app: submit, admission, forwarding,
block building, contracts, apply, receipts) beside the KV model, and the ledger
checkers (hzp2p.sim.ledger_checks) run too.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any

from hzp2p.ledgernode.node import PlantedBugs
from hzp2p.raft.config import RaftConfig
from hzp2p.raft.errors import RaftError
from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.messages import MESSAGE_TYPES, Message
from hzp2p.raft.types import ConfState, Entry, EntryKind, NodeId, ReadState, Role, Snapshot
from hzp2p.sim.checkers import Checkers, SimulationFailure, Violation
from hzp2p.sim.clients import ClientPool
from hzp2p.sim.events import EventLoop, derive_rng
from hzp2p.sim.faults import PROFILES, FaultProfile, FaultScheduler
from hzp2p.sim.ledger_app import BUGS, LedgerApp, LedgerMsg, SimLedger
from hzp2p.sim.network import Network
from hzp2p.sim.node import TICK_MS, CoreFactory, SimNode, default_core_factory, load_core
from hzp2p.sim.statemachine import (
    ApplyOutcome,
    KVStateMachine,
    StateMachine,
    StateMachineFactory,
    Workload,
)
from hzp2p.sim.store import DurableStore

ELECTION_TICKS = 10
HEARTBEAT_TICKS = 2

LIVENESS_BOUND_TICKS = 400
"""Ticks the cluster gets, once every fault is healed and every node restarted,
to converge (one leader that all nodes follow, equal commit and applied indexes,
every client request acknowledged). Budget, in election timeouts of at most
2 * ELECTION_TICKS = 20 ticks each: a stale leader's lease and check-quorum
expire within 1; a pre-vote plus a vote round then needs 1 per attempt, and
randomised timeouts make a split vote unlikely (< 1/2 per round for 7 voters),
so 10 rounds cover every split-vote streak with probability > 1 - 2^-10;
catching up followers (at most a few hundred entries, 64 per append, one
round trip of <= 6 ms each) and the clients' retries (one timeout of 40 ticks
plus retry back-off) fit in the remaining ~8 timeouts. So 20 timeouts = 400."""

PROBE_EVERY_TICKS = 1
MAX_NODES = 300
"""Bound on nodes ever created in one run (membership changes add new ones)."""
MAX_STEPS_PER_RUN = 5_000_000

_MSG_CODE: dict[type, int] = {t: i for i, t in enumerate(MESSAGE_TYPES)}


@dataclass(frozen=True, slots=True)
class SimOptions:
    seed: int
    voters: int = 3
    learners: int = 0
    profile: str = "mixed"
    clients: int = 3
    readers: int = 1
    safety_ticks: int | None = None
    """Override of the profile's safety-phase length."""
    membership: bool = True
    """Allow the profile's membership changes (off: --no-membership)."""
    election_ticks: int = ELECTION_TICKS
    heartbeat_ticks: int = HEARTBEAT_TICKS
    trace_tail: int = 40
    core: str | None = None
    """"module:Class" of a RaftCore replacement (e.g. a deliberately broken core); None = RaftCore."""
    ledger: bool = True
    """Run the production ledger node on every node, with its clients and checkers."""
    bug: str | None = None
    """Test only: a planted bug of the ledger node (a key of hzp2p.sim.ledger_app.BUGS)."""

    def __post_init__(self) -> None:
        if self.voters < 1:
            raise ValueError("need at least one voter")
        if self.learners < 0 or self.clients < 0:
            raise ValueError("learners and clients must be >= 0")
        if self.profile not in PROFILES:
            raise ValueError(f"unknown fault profile {self.profile!r} (known: {sorted(PROFILES)})")
        if self.bug is not None and self.bug not in BUGS:
            raise ValueError(f"unknown planted bug {self.bug!r} (known: {sorted(BUGS)})")
        if self.bug is not None and not self.ledger:
            raise ValueError("a planted ledger bug needs the ledger (drop --no-ledger)")

    def replay_command(self, verbose: bool = True) -> str:
        parts = ["hzp2p fuzz --seeds 1", f"--start {self.seed}", f"--voters {self.voters}"]
        if self.learners:
            parts.append(f"--learners {self.learners}")
        if self.profile != "mixed":
            parts.append(f"--profile {self.profile}")
        if not self.membership:
            parts.append("--no-membership")
        if self.safety_ticks is not None:
            parts.append(f"--ticks {self.safety_ticks}")
        if self.core is not None:
            parts.append(f"--core {self.core}")
        if not self.ledger:
            parts.append("--no-ledger")
        if self.bug is not None:
            parts.append(f"--plant-bug {self.bug}")
        if verbose:
            parts.append("--verbose")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class RunSummary:
    seed: int
    voters: int
    learners: int
    steps: int
    elections: int
    committed: int
    acked: int
    crashes: int
    messages: int
    virtual_ms: int
    liveness_ticks: int
    faults: int
    conf_changes: int
    reads: int
    snapshots: int
    commit_p50_ms: int
    """Client-observed latency, request issued -> acknowledged (virtual ms), incl. retries."""
    commit_p99_ms: int
    history: str
    blocks_applied: int = 0
    """Distinct ledger blocks applied (the chain's height at the end)."""
    receipts_checked: int = 0
    """Final receipts clients got, each compared with the applied block's verdict."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Simulation:
    """One seeded run: N simulated nodes, clients, faults and checkers on one event loop."""

    def __init__(
        self,
        options: SimOptions,
        core_factory: CoreFactory | None = None,
        sm_factory: StateMachineFactory = KVStateMachine,
        workload: Workload | None = None,
    ) -> None:
        if core_factory is not None and options.core is None:
            spec = f"{core_factory.__module__}:{getattr(core_factory, '__qualname__', '?')}"
            if spec != "hzp2p.raft.core:RaftCore":
                options = replace(options, core=spec)  # so the replay command names it
        elif core_factory is None:
            core_factory = load_core(options.core) if options.core else default_core_factory()
        self.options = options
        self.profile: FaultProfile = PROFILES[options.profile]
        self.core_factory = core_factory
        self.sm_factory: StateMachineFactory = sm_factory
        rng = random.Random(options.seed)
        self.loop = EventLoop()
        self.checkers = Checkers()
        self._trace: deque[tuple[object, ...]] = deque(maxlen=max(options.trace_tail, 1))
        self._hist = 0
        self.network = Network(self.loop, derive_rng(rng), self._deliver, self.profile.base_net)
        fault_rng = derive_rng(rng)
        client_rng = derive_rng(rng)
        self._node_rng = derive_rng(rng)
        self.ledger: SimLedger | None = None
        if options.ledger and sm_factory is KVStateMachine:
            self.ledger = SimLedger(self, options.voters + options.learners, derive_rng(rng),
                                    BUGS.get(options.bug or "", PlantedBugs()))
            hub = self.ledger
            self.sm_factory = lambda: LedgerApp(hub, 0)  # the reference for snapshot checks
        self.max_entries_per_msg = rng.choice(self.profile.max_entries_per_msg)
        self.snapshot_chunk_bytes = rng.choice(self.profile.snapshot_chunk_bytes)
        self.nodes: dict[NodeId, SimNode] = {}
        v, n = options.voters, options.voters + options.learners
        self.genesis = ConfState(frozenset(range(1, v + 1)), frozenset(range(v + 1, n + 1)))
        self.conf = self.genesis
        self._conf_index = 0
        self.next_node_id = n + 1
        for node_id in range(1, n + 1):
            self._add_node(node_id)
        self.clients = ClientPool(
            self.loop,
            client_rng,
            self.nodes,
            self.checkers,
            self.trace,
            options.clients,
            options.readers,
            workload,
        )
        self.faults = FaultScheduler(self, fault_rng, self.profile)
        self.crashes = 0
        self.conf_changes = 0
        self.liveness_ticks = 0
        self._converged = False

    # --- cluster -----------------------------------------------------------------------

    def _add_node(self, node_id: NodeId, base_conf: ConfState | None = None) -> SimNode:
        o = self.options
        config = RaftConfig(
            node_id=node_id,
            election_ticks=o.election_ticks,
            heartbeat_ticks=o.heartbeat_ticks,
            max_entries_per_msg=self.max_entries_per_msg,
            max_snapshot_chunk_bytes=self.snapshot_chunk_bytes,
        )
        store = DurableStore(base_conf=base_conf or self.genesis)
        node_rng = derive_rng(self._node_rng)
        every = self.profile.compact_every
        sm_factory = self.sm_factory
        if self.ledger is not None:
            hub = self.ledger

            def sm_factory() -> StateMachine:
                return LedgerApp(hub, node_id)

        node = SimNode(
            node_id,
            config,
            node_rng,
            self,
            store,
            self.core_factory,
            sm_factory,
            compact_every=node_rng.randint(*every) if every is not None else 0,
        )
        self.nodes[node_id] = node
        self.checkers.log.register(node_id, store)
        return node

    def voter_ids(self) -> list[NodeId]:
        return sorted(self.conf.voters)

    def member_ids(self) -> list[NodeId]:
        return sorted(self.conf.members)

    def all_ids(self) -> list[NodeId]:
        return [i for i, n in self.nodes.items() if not n.removed]

    def current_leader(self) -> NodeId | None:
        best: tuple[int, NodeId] | None = None
        for node in self.nodes.values():
            if node.up and node.role == Role.LEADER and (best is None or node.term > best[0]):
                best = (node.term, node.node_id)
        return best[1] if best is not None else None

    # --- NodeHost ------------------------------------------------------------------------

    def send(self, msg: Message | LedgerMsg) -> None:
        self.network.send(msg)

    def _deliver(self, msg: Message | LedgerMsg) -> None:
        self._hist = hash(
            (self._hist, self.loop.now_ms, _MSG_CODE.get(type(msg), -1), msg.src, msg.dst,
             msg.term)
        )
        self._trace.append((self.loop.now_ms, "recv", msg))
        if isinstance(msg, LedgerMsg):
            if self.ledger is not None:
                self.ledger.deliver(msg)
            return
        node = self.nodes.get(msg.dst)
        if node is not None:
            node.receive(msg)

    def trace(self, *item: object) -> None:
        self._trace.append((self.loop.now_ms, *item))

    def on_applied(self, node: NodeId, entry: Entry, outcome: ApplyOutcome | None) -> None:
        self.clients.on_applied(node, entry, outcome)

    def on_conf_applied(self, node: NodeId, index: int, conf: ConfState) -> None:
        if index <= self._conf_index:
            return
        self._conf_index = index
        self.conf_changes += 1
        old, self.conf = self.conf, conf
        self.trace(
            "conf",
            node,
            f"index={index} voters={sorted(conf.voters)} learners={sorted(conf.learners)}",
        )
        for nid in sorted(old.members - conf.members):  # removed: shut it down for good
            self.nodes[nid].removed = True
            self.loop.after(0, self._shut_down, nid)  # not from inside its own apply loop

    def _shut_down(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        assert node.removed
        if node.up:
            node.crash()

    def on_read_state(self, node: NodeId, rs: ReadState) -> None:
        self.clients.on_read_state(node, rs.index, rs.context, self.nodes[node].applied)

    def check_snapshot(self, node: NodeId, snap: Snapshot) -> None:
        """An installed snapshot must be the state of the committed log at its index."""
        log = self.checkers.log
        meta = snap.meta
        log.check_snapshot_point(node, meta.index, meta.term)
        ref = self.sm_factory()
        for i in range(1, meta.index + 1):
            e = log.committed.get(i)
            if e is None:
                return  # a gap in what we saw committed: cannot rebuild the reference state
            if e.kind == EntryKind.NORMAL:
                ref.apply(e)
        restored = self.nodes[node].sm
        assert restored is not None
        if ref.digest() != restored.digest():
            raise Violation(
                "snapshot state differs",
                f"node {node} installed a snapshot at index {meta.index} whose state is not "
                "the committed log's state at that index",
            )

    def on_crash(self, node: NodeId) -> None:
        self.crashes += 1
        self.clients.on_crash(node)
        if self.ledger is not None:
            self.ledger.on_crash(node)

    # --- membership (enabled with options.membership) -----------------------------------------

    def membership_step(self, rng: random.Random) -> bool:
        """Propose one random single-server change through the leader (True if proposed).

        Adds a learner (a brand-new node; ids are never reused), promotes a learner,
        removes a voter (any: the leader itself or a crashed one too) or a learner,
        or demotes a voter, keeping 3..7 voters. The new node starts with an empty
        log and the leader's configuration plus itself, and replays the log from 1.
        """
        leader_id = self.current_leader()
        if leader_id is None:
            return False
        leader = self.nodes[leader_id]
        conf: ConfState = leader.core.status().conf
        voters, learners = sorted(conf.voters), sorted(conf.learners)
        choices: list[tuple[ConfChangeKind, NodeId]] = []
        if len(self.nodes) < MAX_NODES:
            choices.append((ConfChangeKind.ADD_LEARNER, self.next_node_id))
        if learners and len(voters) < 7:
            choices.append((ConfChangeKind.PROMOTE, rng.choice(learners)))
        if len(voters) > 3:
            choices.append((ConfChangeKind.REMOVE, rng.choice(voters)))
            down = [v for v in voters if not self.nodes[v].up]
            if down:
                choices.append((ConfChangeKind.REMOVE, rng.choice(down)))
            choices.append((ConfChangeKind.DEMOTE, rng.choice(voters)))
        if learners:
            choices.append((ConfChangeKind.REMOVE, rng.choice(learners)))
        if not choices:
            return False
        kind, target = rng.choice(choices)
        try:
            leader.propose_conf_change(ConfChange(kind, target))
        except (RaftError, ValueError):
            return False
        self.trace("conf-propose", leader_id, f"{kind.name} {target}")
        if kind == ConfChangeKind.ADD_LEARNER:
            assert target == self.next_node_id
            self.next_node_id += 1
            base = ConfState(conf.voters, conf.learners | {target})
            self._add_node(target, base).start()
        return True

    # --- running -------------------------------------------------------------------------

    def run(self) -> RunSummary:
        try:
            return self._run()
        except Violation as v:
            raise self._failure(v.prop, v.detail) from v
        except SimulationFailure:
            raise
        except Exception as exc:  # a core or simulator exception is a finding too
            tb = traceback.format_exception(exc)
            detail = f"{type(exc).__name__}: {exc} | " + " ".join(
                line.strip() for line in tb[-4:-1]
            )
            raise self._failure("exception during the run", detail) from exc

    def _run(self) -> RunSummary:
        loop = self.loop
        for node_id in sorted(self.nodes):
            self.nodes[node_id].start()
        self.clients.start()
        if self.ledger is not None:
            self.ledger.start()
        self.faults.start()
        safety_ticks = self.options.safety_ticks or self.profile.safety_ticks
        loop.run_until(safety_ticks * TICK_MS, max_steps=MAX_STEPS_PER_RUN)
        # Liveness phase: faults stop, every node runs, clients finish what they started.
        self.trace("liveness", 0, "heal everything")
        self.faults.heal_all()
        self.clients.stop_issuing()
        if self.ledger is not None:
            self.ledger.stop_issuing()
        start_ms = loop.now_ms
        loop.after(TICK_MS, self._probe)
        converged = loop.run_until(
            start_ms + LIVENESS_BOUND_TICKS * TICK_MS,
            after_step=lambda: self._converged,
            max_steps=MAX_STEPS_PER_RUN,
        )
        self.liveness_ticks = (loop.now_ms - start_ms) // TICK_MS
        if not converged:
            raise Violation(
                "liveness",
                f"no convergence within {LIVENESS_BOUND_TICKS} ticks after healing: "
                + self._status_line(),
            )
        members = [n for n in self.member_ids() if not self.nodes[n].removed]
        self.checkers.apply.check_all_acked_applied(members)
        if self.ledger is not None:
            self.ledger.checks.check_end()
        return self._summary()

    def _probe(self) -> None:
        if self._is_converged():
            self._converged = True
        else:
            self.loop.after(PROBE_EVERY_TICKS * TICK_MS, self._probe)

    def _is_converged(self) -> bool:
        if self.clients.outstanding():
            return False
        if self.ledger is not None and self.ledger.outstanding():
            return False
        leader: NodeId | None = None
        term = commit = -1
        for nid in self.member_ids():
            node = self.nodes[nid]
            if not node.up or node.pending is not None:
                return False
            st = node.core.status()
            if st.role == Role.LEADER:
                if leader is not None:
                    return False
                leader = nid
            if term == -1:
                term, commit = st.term, st.commit
            if st.term != term or st.commit != commit or node.applied != commit:
                return False
            if st.leader_id == 0 or (leader is not None and st.leader_id != leader):
                return False
        if leader is None or commit < self.checkers.log.committed_max:
            return False
        return all(self.nodes[n].core.status().leader_id == leader for n in self.member_ids())

    def _status_line(self) -> str:
        parts = []
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            if node.removed:
                continue
            if not node.up:
                parts.append(f"n{nid}=down")
                continue
            if nid not in self.conf.members:
                parts.append(f"n{nid}=not-a-member")
                continue
            st = node.core.status()
            parts.append(
                f"n{nid}={st.role.value}/t{st.term}/lead{st.leader_id}/c{st.commit}/a{node.applied}"
            )
        parts.append(f"outstanding_requests={self.clients.outstanding()}")
        if self.ledger is not None:
            parts.append(f"outstanding_ledger_txs={self.ledger.outstanding()}")
        return " ".join(parts)

    # --- results -------------------------------------------------------------------------

    def _summary(self) -> RunSummary:
        o = self.options
        log = self.checkers.log
        h = hashlib.blake2b(digest_size=8)
        h.update(
            struct.pack(">qqqq", self._hist, self.loop.steps, self.loop.now_ms, self.clients.acks)
        )
        for nid in sorted(self.nodes):
            st = self.nodes[nid].store
            h.update(
                struct.pack(">qqqq", nid, st.hard_state.term, st.hard_state.commit, st.last_index)
            )
        h.update(log.committed_digest())
        return RunSummary(
            seed=o.seed,
            voters=o.voters,
            learners=o.learners,
            steps=self.loop.steps,
            elections=self.checkers.election.elections,
            committed=log.committed_max,
            acked=self.clients.acks,
            crashes=self.crashes,
            messages=self.network.sent,
            virtual_ms=self.loop.now_ms,
            liveness_ticks=self.liveness_ticks,
            faults=sum(self.faults.injected.values()),
            conf_changes=self.conf_changes,
            reads=self.clients.reads_served,
            snapshots=sum(n.snapshots_installed for n in self.nodes.values()),
            commit_p50_ms=_percentile(self.clients.latencies_ms, 50),
            commit_p99_ms=_percentile(self.clients.latencies_ms, 99),
            history=h.hexdigest(),
            blocks_applied=self.ledger.checks.blocks_applied if self.ledger else 0,
            receipts_checked=self.ledger.checks.receipts_checked if self.ledger else 0,
        )

    def _failure(self, prop: str, detail: str) -> SimulationFailure:
        return SimulationFailure(
            seed=self.options.seed,
            voters=self.options.voters,
            prop=prop,
            detail=detail,
            replay=self.options.replay_command(),
            time_ms=self.loop.now_ms,
            trace_tail=[_fmt_trace(t) for t in self._trace],
        )


def _percentile(values: list[int], pct: int) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * pct) // 100)]


def _fmt_trace(item: tuple[object, ...]) -> str:
    t, kind, *rest = item
    if kind == "recv" and rest:
        m: Any = rest[0]
        fields = {
            k: getattr(m, k)
            for k in getattr(m, "__slots__", ())
            if k not in ("term", "src", "dst", "entries", "data")
        }
        extra = ""
        entries = getattr(m, "entries", None)
        if entries:
            extra = f" entries={entries[0].index}..{entries[-1].index}(t{entries[-1].term})"
        return (
            f"t={t} {type(m).__name__} {m.src}->{m.dst} term={m.term} "
            + " ".join(f"{k}={v}" for k, v in fields.items())
            + extra
        )
    return f"t={t} {kind} " + " ".join(str(r) for r in rest)


def run_seed(options: SimOptions, core_factory: CoreFactory | None = None) -> RunSummary:
    """Run one seed (raises SimulationFailure)."""
    return Simulation(options, core_factory).run()


def timed_run(options: SimOptions) -> tuple[RunSummary | None, SimulationFailure | None, float]:
    """Run one seed, catching its failure; returns (summary, failure, wall seconds)."""
    t0 = time.perf_counter()
    try:
        summary = Simulation(options).run()
    except SimulationFailure as f:
        return None, f, time.perf_counter() - t0
    except Exception as exc:  # the setup itself failed: still a reportable, replayable seed
        failure = SimulationFailure(
            seed=options.seed,
            voters=options.voters,
            prop="exception during setup",
            detail=f"{type(exc).__name__}: {exc}",
            replay=options.replay_command(),
        )
        return None, failure, time.perf_counter() - t0
    return summary, None, time.perf_counter() - t0
