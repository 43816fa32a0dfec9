"""Snapshots in the daemon: taking them, compacting the log, installing a leader's, restarting.

It owns the node side of Raft §7 for the ledger (the core's side is
hzp2p.raft.snapshot_xfer; the bytes are hzp2p.node.snapshot_format):

* **Policy.** `raft.snapshot_threshold_entries` (T) bounds the retained log.
  Every node (leader or not) snapshots its state at its applied index once
  the log since the compaction point reaches T - 2M entries (M = the margin,
  T // 4 by default), stores it, and compacts its log up to that snapshot
  once M more entries are applied after it. So the log keeps at least the M
  most recent entries — a follower lagging by less than that catches up by
  log, not by snapshot — and stays under T while the unapplied tail is short.
  The core is given the snapshot data at compaction (`core.compact`), so a
  leader serves the snapshot its log is compacted to. While a live follower
  still needs the entries up to the next compaction point (it is receiving
  the current snapshot, or catching up by log after it), the leader's
  compaction waits, up to 2T retained entries: compacting would send it a
  newer snapshot from zero, and on a busy chain do so forever
  (hashicorp/raft#212).
* **Install** (a follower's Ready carries `snapshot`): decode and verify it
  first (state digest recomputed from the pairs against the claimed tip's,
  head and tip block consistent; `check_snapshot`). A bad one raises
  `BadSnapshot`: the driver drops that Ready without persisting or answering
  anything and rebuilds the core from durable state (`rebuild_core`); the
  refusal is counted and logged. A good one is stored by the Ready's
  `save_ready` (snapshot + log per Figure 13 rule 7), then the state is
  replaced with `install_state`. A crash between the two leaves
  `applied_index < snapshot index` on disk; `recover` reinstalls it from
  the stored snapshot at the next start.
* **Restart:** `build_core` rebuilds the core from storage and registers the
  stored snapshot's data with `core.compact`, so the node can serve it.
* **Lost data** (`check_leader_message`): a heartbeat whose commit index is
  beyond our log means this leader saw us acknowledge entries we no longer
  have — the data directory was wiped and the node restarted under its old id
  (Fabric #3639). Raft's safety rests on voters keeping what they
  acknowledged, so the node stops with `NodeDataLost`, one clear line,
  instead of voting with a forgotten log; the operator removes it and admits
  it anew under a new id.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import structlog
import trio
from prometheus_client import Counter

from hzp2p.ledger.genesis import Genesis
from hzp2p.node.applier import Applier
from hzp2p.node.metrics import MetricsRegistry
from hzp2p.node.snapshot_format import (
    BadSnapshot,
    StateSnapshot,
    check_snapshot,
    encode_snapshot,
    read_state_snapshot,
)
from hzp2p.raft.config import RaftConfig
from hzp2p.raft.core import RaftCore
from hzp2p.raft.messages import Heartbeat, Message
from hzp2p.raft.progress import ProgressState
from hzp2p.raft.types import Snapshot, SnapshotMeta
from hzp2p.storage import AsyncStorage, InitialState, StorageError, SyncStorage
from hzp2p.storage.errors import CorruptDatabase

log = structlog.get_logger("hzp2p.node.snapshots")

DEFAULT_THRESHOLD_ENTRIES = 10_000
VERIFY_IN_THREAD_BYTES = 1 << 20
"""Snapshots bigger than this are verified on a worker thread (the digest is a full scan)."""

STILL_NEEDED_WINDOW_S = 10.0
"""A follower heard from this recently that still needs entries holds off compaction."""
MAX_PEERS_TRACKED = 4096

__all__ = ["BadSnapshot", "NodeDataLost", "SnapshotManager", "register_metrics"]


class NodeDataLost(StorageError):
    """This node no longer holds entries it acknowledged (its data directory was lost)."""


class SnapshotManager:
    """See the module docstring. One per node; the driver calls it between Readies."""

    def __init__(
        self,
        storage: AsyncStorage,
        genesis: Genesis,
        applier: Applier,
        raft_config: RaftConfig,
        rng: random.Random,
        *,
        threshold_entries: int = DEFAULT_THRESHOLD_ENTRIES,
        margin_entries: int | None = None,
        on_installed: Callable[[], None] | None = None,
    ) -> None:
        if threshold_entries < 4:
            raise ValueError("snapshot_threshold_entries must be at least 4")
        self.storage = storage
        self.genesis = genesis
        self.applier = applier
        self.raft_config = raft_config
        self.rng = rng
        self.threshold = threshold_entries
        self.margin = margin_entries if margin_entries is not None else threshold_entries // 4
        assert self.margin >= 1 and 2 * self.margin < self.threshold, "margin out of range"
        self._on_installed = on_installed
        self._pending: Snapshot | None = None  # taken and stored, the log not yet compacted to it
        self._installed: Snapshot | None = None  # installed, to register with the core
        self.taken = 0
        self.compactions = 0
        self.installed = 0
        self.refused = 0
        self.deferred = 0  # compactions put off while a follower receives a snapshot
        self._heard: dict[int, float] = {}  # peer -> when we last got a Raft message from it
        self.last_refusal = ""

    # ---------------------------------------------------------------- start-up
    async def recover(self, init: InitialState) -> InitialState:
        """A crash between storing a leader's snapshot and installing its state: reinstall."""
        meta = init.snapshot_meta
        if meta is None or init.applied_index >= meta.index:
            return init
        snap = await self.storage.snapshot()
        assert snap is not None and snap.meta == meta
        try:
            state = await self._check(snap)
        except BadSnapshot as exc:  # we verified it before storing: the disk changed under us
            raise CorruptDatabase("node database", f"stored snapshot does not verify: {exc.reason}") from None
        await self._install_state(state)
        log.info("snapshot_reinstalled", index=meta.index, height=state.height)
        return await self.storage.load()

    async def build_core(self) -> RaftCore:
        """A RaftCore from durable state, with the stored snapshot's data registered."""
        init = await self.storage.load()
        core = RaftCore(
            self.raft_config,
            self.rng,
            hard_state=init.hard_state,
            conf=init.conf_state,
            entries=init.entries,
            snapshot=init.snapshot_meta,
            applied=init.applied_index,
        )
        if init.snapshot_meta is not None:
            snap = await self.storage.snapshot()
            assert snap is not None
            core.compact(snap.meta.index, snap.data, snap.meta.conf)
        return core

    async def rebuild_core(self) -> RaftCore:
        """After refusing a snapshot: forget what the core did in memory since the last
        durable state (nothing of it was persisted or acknowledged)."""
        self._installed = None
        return await self.build_core()

    # ---------------------------------------------------------------- install
    async def verify(self, snap: Snapshot) -> StateSnapshot:
        """Decode and verify a leader's snapshot; BadSnapshot (counted, logged) if it is bad."""
        try:
            return await self._check(snap)
        except BadSnapshot as exc:
            self.refused += 1
            self.last_refusal = exc.reason
            log.warning("snapshot_refused", index=snap.meta.index, reason=exc.reason,
                        bytes=len(snap.data))
            raise

    async def _check(self, snap: Snapshot) -> StateSnapshot:
        gh = self.genesis.hash
        if len(snap.data) > VERIFY_IN_THREAD_BYTES:
            return await trio.to_thread.run_sync(check_snapshot, snap, gh)
        return check_snapshot(snap, gh)

    async def install(self, snap: Snapshot, state: StateSnapshot) -> None:
        """The snapshot is durable (Ready step 2): replace the state with it."""
        await self._install_state(state)
        self._pending = None
        self._installed = snap
        self.installed += 1
        log.info("snapshot_installed", index=snap.meta.index, height=state.height,
                 pairs=len(state.pairs), bytes=len(snap.data))
        if self._on_installed is not None:
            self._on_installed()

    async def _install_state(self, state: StateSnapshot) -> None:
        await self.storage.install_state(state.pairs, state.index, state.conf, state.tip)
        await self.applier.load()
        # Wake anything waiting for an applied index the snapshot covers.
        self.applier._advance_applied(self.applier.applied_index)

    # ---------------------------------------------------------------- policy
    async def after_ready(self, core: RaftCore) -> None:
        """Between Readies: register an installed snapshot, compact, take the next one."""
        if self._installed is not None:
            snap, self._installed = self._installed, None
            if snap.meta.index >= core.log.snapshot_index and snap.meta.index <= core.log.applied:
                core.compact(snap.meta.index, snap.data, snap.meta.conf)
        lg = core.log
        p = self._pending
        if p is not None and p.meta.index <= lg.snapshot_index:
            self._pending = p = None  # overtaken by an installed snapshot
        if p is not None and lg.applied - p.meta.index >= self.margin:
            if (self._still_needed(core, p.meta.index)
                    and lg.last_index() - lg.snapshot_index < 2 * self.threshold):
                self.deferred += 1  # hashicorp/raft#212: keep the snapshot being sent
                return
            await self._compact(core, p)
        elif p is None and lg.applied - lg.snapshot_index >= self.threshold - 2 * self.margin:
            await self._take(core)

    def _still_needed(self, core: RaftCore, index: int) -> bool:
        """Leader: a live follower (heard from within STILL_NEEDED_WINDOW_S) still needs
        entries up to `index`: it is receiving our current snapshot, or catching up by log
        after one. Compacting now would send it a newer snapshot from zero, possibly forever
        on a busy chain."""
        now = trio.current_time()
        return any(
            p.node_id != core.node_id
            and now - self._heard.get(p.node_id, -math.inf) < STILL_NEEDED_WINDOW_S
            and (p.state is ProgressState.SNAPSHOT or p.match < index)
            for p in core.status().progress
        )

    async def _compact(self, core: RaftCore, p: Snapshot) -> None:
        try:
            core.compact(p.meta.index, p.data, p.meta.conf)
        except ValueError as exc:
            log.warning("compaction_skipped", index=p.meta.index, reason=str(exc))
            self._pending = None
            return
        await self.storage.compact(p.meta.index)
        self._pending = None
        self.compactions += 1
        log.info("log_compacted", index=p.meta.index, first_index=core.log.first_index(),
                 last_index=core.log.last_index())

    async def _take(self, core: RaftCore) -> None:
        applied = min(core.log.applied, self.applier.applied_index)
        state = await self.storage.call(lambda store: _state_at(store, applied))
        term = core.log.term(state.index)
        if term is None or state.index > core.log.applied:
            return  # the log moved under us (a snapshot installed); try after the next Ready
        if state.index <= core.log.snapshot_index:
            return  # nothing new to snapshot: storing it would only cost an fsync
        snap = Snapshot(SnapshotMeta(state.index, term, state.conf), encode_snapshot(state))
        await self.storage.save_snapshot(snap)
        self._pending = snap
        self.taken += 1
        log.info("snapshot_taken", index=state.index, height=state.height,
                 pairs=len(state.pairs), bytes=len(snap.data))

    # ---------------------------------------------------------------- lost data
    def check_leader_message(self, core: RaftCore, msg: Message) -> None:
        """Every Raft message before the core steps it: note when we last heard from its
        sender, and raise NodeDataLost if it shows this node acknowledged entries it no
        longer has."""
        if len(self._heard) < MAX_PEERS_TRACKED or msg.src in self._heard:
            self._heard[msg.src] = trio.current_time()
        if (
            isinstance(msg, Heartbeat)
            and msg.term >= core.term
            and msg.commit > core.log.last_index()
        ):
            log.error("data_lost", leader_id=msg.src, leader_commit=msg.commit,
                      last_index=core.log.last_index())
            raise NodeDataLost(
                f"node {core.node_id}'s data was lost: leader {msg.src} saw it acknowledge "
                f"entries up to {msg.commit}, it holds {core.log.last_index()}; a node must "
                "not rejoin under its old id after losing its data directory -- remove it by "
                "vote and admit it anew (hzp2p admin remove / add-learner)"
            )


def _state_at(store: SyncStorage, applied: int) -> StateSnapshot:
    """`read_state_snapshot` at `applied`, the index the applier has reached in memory.

    The applier may move the applied index past entries that change no state without
    storing it (a run of opaque benchmark entries, hzp2p.node.applier); the durable
    applied index then lags. A snapshot is taken at the durable one, so store `applied`
    first (bounded by the durable commit): otherwise the snapshot stays at the old index,
    the log is never compacted past it and a snapshot is taken again after every Ready.
    """
    upto = min(applied, store.hard_state().commit)
    if upto > store.applied_index():
        store.set_applied(upto)
    return read_state_snapshot(store)


def register_metrics(registry: MetricsRegistry, manager: SnapshotManager) -> None:
    """`hzp2p_snapshots_total{event=taken|installed|refused}`, compactions, and the log's
    compaction point, refreshed from `manager` before every render."""
    events = Counter(
        "hzp2p_snapshots_total", "Snapshots taken, installed and refused.", ["event"],
        registry=registry,
    )
    compactions = Counter("hzp2p_log_compactions_total", "Log compactions.", registry=registry)
    counted = {"taken": 0, "installed": 0, "refused": 0, "compactions": 0}

    def collect() -> None:
        now = {"taken": manager.taken, "installed": manager.installed,
               "refused": manager.refused, "compactions": manager.compactions}
        for key, value in now.items():
            delta = value - counted[key]
            if delta > 0:
                if key == "compactions":
                    compactions.inc(delta)
                else:
                    events.labels(event=key).inc(delta)
        counted.update(now)

    registry.add_collect_hook(collect)
