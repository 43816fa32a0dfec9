"""One simulated node: drives a Raft core exactly per the Ready contract, crashes and restarts.

Owns the order of persist / send / apply (hzp2p.raft.ready): `messages` leave
at once; the persist step takes a virtual disk delay and only when it
completes are `persisted_messages` sent, `committed_entries` applied,
read states served and `advance` called. A crash bumps the incarnation, which
voids the in-flight persist and every pending tick; the restart rebuilds a
fresh core from the durable store and a fresh state machine that re-applies
from the snapshot (or index 1), since the state machine lives in memory.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from hzp2p.raft.config import RaftConfig
from hzp2p.raft.membership import ConfChange
from hzp2p.raft.messages import Message
from hzp2p.raft.ready import Ready
from hzp2p.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
)
from hzp2p.sim.checkers import Checkers
from hzp2p.sim.events import EventLoop, derive_rng
from hzp2p.sim.statemachine import ApplyOutcome, StateMachine, StateMachineFactory
from hzp2p.sim.store import DurableStore

TICK_MS = 10
"""Virtual milliseconds between two ticks of one node's logical clock."""

MAX_READY_PER_DRAIN = 64
"""Bound on Readies handled back to back without a persist (each one advances)."""


class StatusLike(Protocol):
    @property
    def term(self) -> int: ...
    @property
    def role(self) -> Role: ...
    @property
    def leader_id(self) -> NodeId: ...
    @property
    def commit(self) -> int: ...
    @property
    def applied(self) -> int: ...
    @property
    def conf(self) -> ConfState: ...


class CoreLike(Protocol):
    """The RaftCore API the simulator drives (hzp2p.raft.core.RaftCore)."""

    def tick(self) -> None: ...
    def step(self, msg: Message) -> None: ...
    def propose(self, data: bytes) -> int: ...
    def propose_conf_change(self, change: ConfChange) -> int: ...
    def apply_conf_change(self, change: ConfChange) -> ConfState: ...
    def read_index(self, context: bytes) -> None: ...
    def transfer_leadership(self, target: NodeId) -> None: ...
    def has_ready(self) -> bool: ...
    def ready(self) -> Ready: ...
    def advance(self, ready: Ready) -> None: ...
    def status(self) -> Any: ...


class CoreFactory(Protocol):
    """RaftCore's constructor, or a test's subclass of it (e.g. a deliberately broken core)."""

    def __call__(
        self,
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState,
        conf: ConfState,
        entries: Sequence[Entry],
        snapshot: SnapshotMeta | None,
        applied: int,
    ) -> Any: ...


def default_core_factory() -> CoreFactory:
    from hzp2p.raft.core import RaftCore  # imported late: the sim has no import-time core dep

    factory: CoreFactory = RaftCore
    return factory


def load_core(spec: str) -> CoreFactory:
    """Resolve "package.module:Class" to a core class (for --core and replays)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--core wants module:Class, got {spec!r}")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError:
        # A console script does not put the working directory on sys.path; specs such
        # as tests.sim.broken_cores:Class are relative to the repository root.
        if os.getcwd() in sys.path:
            raise
        sys.path.append(os.getcwd())
        obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    assert callable(obj)
    factory: CoreFactory = obj
    return factory


class NodeHost(Protocol):
    """What a node needs from the simulation around it."""

    loop: EventLoop
    checkers: Checkers

    def send(self, msg: Message) -> None: ...
    def trace(self, *item: object) -> None: ...
    def on_applied(self, node: NodeId, entry: Entry, outcome: ApplyOutcome | None) -> None: ...
    def on_conf_applied(self, node: NodeId, index: int, conf: ConfState) -> None: ...
    def on_read_state(self, node: NodeId, rs: ReadState) -> None: ...
    def on_crash(self, node: NodeId) -> None: ...
    def check_snapshot(self, node: NodeId, snap: Snapshot) -> None: ...


class SimNode:
    """A core plus its durable store, state machine and virtual disk."""

    def __init__(
        self,
        node_id: NodeId,
        config: RaftConfig,
        rng: random.Random,
        host: NodeHost,
        store: DurableStore,
        core_factory: CoreFactory,
        sm_factory: StateMachineFactory,
        compact_every: int = 0,
    ) -> None:
        assert config.node_id == node_id
        self.node_id = node_id
        self.config = config
        self.rng = rng
        self.host = host
        self.store = store
        self._core_factory = core_factory
        self._sm_factory = sm_factory
        self.core: Any = None
        self.sm: StateMachine | None = None
        self.up = False
        self.removed = False
        self.incarnation = 0
        self.applied = 0
        self.pending: Ready | None = None
        self.disk_min_ms = 1
        self.disk_max_ms = 4
        self.tick_phase_ms = rng.randrange(TICK_MS)
        self.role = Role.FOLLOWER
        self.term = 0
        self.restarts = 0
        self.compact_every = compact_every  # entries applied between snapshots; 0 = never
        self.compactions = 0
        self.snapshots_installed = 0
        self.conf = store.base_conf  # the membership after the last applied entry
        self._register_snapshot: Snapshot | None = None
        self._cheap_view = False
        self.watchers: dict[int, list[Any]] = {}  # log index -> clients waiting for it
        self._pending_reads: list[ReadState] = []

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        assert not self.up and not self.removed
        st = self.store
        self.core = self._core_factory(
            self.config,
            derive_rng(self.rng),
            hard_state=st.hard_state,
            conf=st.base_conf,
            entries=tuple(st.entries),
            snapshot=st.snapshot.meta if st.snapshot is not None else None,
            applied=st.applied_base,
        )
        core_type = type(self.core)
        self._cheap_view = isinstance(getattr(core_type, "role", None), property) and isinstance(
            getattr(core_type, "term", None), property
        )
        sm = self._sm_factory()
        if st.snapshot is not None:
            sm.restore(st.snapshot.data)
            compact = getattr(self.core, "compact", None)
            if compact is not None:  # register the data so this node can serve it as leader
                compact(st.snapshot.meta.index, st.snapshot.data, st.snapshot.meta.conf)
        self.sm = sm
        self.conf = st.base_conf
        self.applied = st.applied_base
        self.host.checkers.apply.on_restart(self.node_id, st.applied_base)
        self.up = True
        self.pending = None
        self.incarnation += 1
        self.host.trace("start", self.node_id, f"term={st.hard_state.term} last={st.last_index}")
        self.host.loop.after(self.tick_phase_ms, self._on_tick, self.incarnation)
        self._drain()

    def crash(self) -> None:
        """Lose everything volatile: the core, the state machine, the in-flight persist."""
        if not self.up:
            return
        self.up = False
        self.incarnation += 1
        self.core = None
        self.sm = None
        self.pending = None
        self._register_snapshot = None
        self.role = Role.FOLLOWER
        self.watchers.clear()
        self._pending_reads.clear()
        self.restarts += 1
        self.host.trace("crash", self.node_id, "")
        self.host.on_crash(self.node_id)

    # --- inputs -------------------------------------------------------------------

    def _on_tick(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.up:
            return
        self.core.tick()
        self._drain()
        self.host.loop.after(TICK_MS, self._on_tick, incarnation)

    def receive(self, msg: Message) -> None:
        if not self.up:
            return
        self.core.step(msg)
        self._drain()

    def propose(self, data: bytes) -> tuple[int, int]:
        """Propose on this node; returns (index, term). Raises NotLeader / ProposalDropped."""
        assert self.up
        index: int = self.core.propose(data)
        term: int = self.core.status().term
        self._drain()
        return index, term

    def propose_conf_change(self, change: ConfChange) -> int:
        assert self.up
        index: int = self.core.propose_conf_change(change)
        self._drain()
        return index

    def transfer_leadership(self, target: NodeId) -> None:
        assert self.up
        self.core.transfer_leadership(target)
        self._drain()

    def read_index(self, context: bytes) -> None:
        assert self.up
        self.core.read_index(context)
        self._drain()

    # --- the Ready contract ---------------------------------------------------------

    def _disk_delay_ms(self) -> int:
        return self.rng.randint(self.disk_min_ms, self.disk_max_ms)

    def _drain(self) -> None:
        """Handle every Ready the core has (until one needs a persist), then look at its role."""
        self._drain_readies()
        if self.up:
            self._observe()

    def _drain_readies(self) -> None:
        core = self.core
        host = self.host
        for _ in range(MAX_READY_PER_DRAIN):
            if not self.up or self.pending is not None or not core.has_ready():
                return
            rd: Ready = core.ready()
            for m in rd.messages:  # step 1: independent of this Ready's durability
                host.send(m)
            if rd.must_sync:
                self.pending = rd
                host.loop.after(self._disk_delay_ms(), self._persist_done, self.incarnation)
                return
            self._finish(rd)
        raise AssertionError(
            f"node {self.node_id}: more than {MAX_READY_PER_DRAIN} Readies in a row"
        )

    def _persist_done(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return  # the node crashed while this write was in flight: it never happened
        rd = self.pending
        assert rd is not None and self.up
        self.pending = None
        removed = self.store.persist(rd)  # step 2 is now durable
        if removed:
            self.host.trace("truncate", self.node_id, f"from={removed[0].index} n={len(removed)}")
        self.host.checkers.log.on_persist(self.node_id, self.store, removed, rd)
        if rd.snapshot is not None:
            self._install(rd)
        self._finish(rd)
        self._drain()

    def _finish(self, rd: Ready) -> None:
        host = self.host
        for m in rd.persisted_messages:  # step 3: only after step 2 is durable
            host.send(m)
        if rd.committed_entries:  # step 4
            self._apply(rd.committed_entries)
        if rd.read_states:  # step 5
            self._pending_reads.extend(rd.read_states)
        if self._pending_reads:
            self._serve_reads()
        self.core.advance(rd)  # step 6
        snap = self._register_snapshot
        if snap is not None:
            self._register_snapshot = None
            compact = getattr(self.core, "compact", None)
            if compact is not None:  # so this node can send it on if it becomes leader
                # ValueError: a newer snapshot arrived meanwhile; that one gets registered.
                with contextlib.suppress(ValueError):
                    compact(snap.meta.index, snap.data, snap.meta.conf)
        if self.compact_every and self.applied - self.store.applied_base >= self.compact_every:
            self._compact()

    def _install(self, rd: Ready) -> None:
        """A snapshot from the leader is durable: it replaces the state machine."""
        snap = rd.snapshot
        assert snap is not None and self.sm is not None
        meta = snap.meta
        self.sm.restore(snap.data)
        self.applied = meta.index
        self.conf = meta.conf
        self.snapshots_installed += 1
        self.host.checkers.apply.on_restart(self.node_id, meta.index)
        self.host.check_snapshot(self.node_id, snap)
        self.host.trace("install-snapshot", self.node_id, f"index={meta.index} term={meta.term}")
        self._register_snapshot = snap  # hand the data to the core once this Ready is done

    def _compact(self) -> None:
        """Snapshot the state machine at the applied index and drop the log up to it."""
        compact = getattr(self.core, "compact", None)
        assert self.sm is not None
        if compact is None:
            return
        data = self.sm.snapshot()
        try:
            meta = compact(self.applied, data, self.conf)
        except ValueError:
            # The core already installed a newer snapshot from the leader that this
            # driver has not been handed yet (it waits behind our in-flight persist).
            return
        assert meta.index == self.applied
        dropped = self.store.compact(Snapshot(meta, data))
        self.host.checkers.log.on_compact(self.node_id, dropped)
        self.compactions += 1
        self.host.trace("compact", self.node_id, f"index={meta.index} dropped={dropped}")

    def _apply(self, entries: Sequence[Entry]) -> None:
        sm = self.sm
        assert sm is not None
        host = self.host
        checker = host.checkers.apply
        for e in entries:
            outcome: ApplyOutcome | None = None
            if e.kind == EntryKind.CONF_CHANGE:
                conf = self.core.apply_conf_change(ConfChange.decode(e.data))
                self.conf = conf
                host.on_conf_applied(self.node_id, e.index, conf)
            elif e.kind == EntryKind.NORMAL:
                outcome = sm.apply(e)
            checker.on_apply(self.node_id, e, outcome, self.store)
            self.applied = e.index
            if e.index in self.watchers:
                host.on_applied(self.node_id, e, outcome)

    def _serve_reads(self) -> None:
        keep: list[ReadState] = []
        for rs in self._pending_reads:
            if rs.index <= self.applied:
                self.host.on_read_state(self.node_id, rs)
            else:
                keep.append(rs)
        self._pending_reads = keep

    def _observe(self) -> None:
        """After every step: record a new leader (election safety, leader completeness)."""
        core = self.core
        if self._cheap_view:  # RaftCore's read-only properties; status() is the fallback
            role: Role = core.role
            term: int = core.term
        else:
            st = core.status()
            role, term = st.role, st.term
        if role != self.role or term != self.term:
            if role == Role.LEADER:
                self.host.checkers.election.on_leader(self.node_id, term)
                self.host.checkers.log.check_leader_completeness(self.node_id, term, self.store)
            if role != self.role:
                self.host.trace("role", self.node_id, f"{role.value} term={term}")
            self.role = role
            self.term = term
