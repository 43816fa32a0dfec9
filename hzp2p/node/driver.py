"""The Raft driver: the Trio shell around the pure RaftCore, following hzp2p.raft.ready.

It owns every call into the core and the loops that feed it:

* the tick loop calls `core.tick()` every `tick_ms`;
* the inbound loop steps Raft messages from the transport into the core and
  hands application messages (forwarded submits, receipts) to a callback;
* the ready loop takes one Ready at a time: send `messages`; persist snapshot
  + entries + hard state in ONE storage transaction (one fsync); only then
  send `persisted_messages`; hand `committed_entries` to the apply task;
  serve `read_states`; `advance`. A leader's snapshot in a Ready is verified
  first and its state installed right after the write; between Readies the
  snapshot policy may compact the log (both in hzp2p.node.snapshots);
* the apply task (etcd-style asynchronous apply) applies committed entries
  (hzp2p.node.applier) in order, from a bounded channel: while block N
  executes, the ready loop already persists and acknowledges block N+1, so
  the leader's pipeline does not wait for the slowest follower's execution.
  When the channel is full the ready loop waits (backpressure). The entries it
  hands over are durable (they were persisted by this Ready or an earlier one).
  What depends on the applied index reads the applier's, which moves only
  after a block's atomic commit: ReadIndex reads wait for it, snapshots are
  taken of the stored state at it, `idle_leader` compares with it. A Ready
  that commits a CONF_CHANGE waits for it to be applied (to the core, in
  order) before `advance`, so the core's one-change-at-a-time rule still sees
  it; a Ready that installs a snapshot, and a core rebuilt after a refused
  one, wait until the apply task is idle;
* the pre-verifier (hzp2p.node.preverify; off unless `preverify`, i.e. the
  config's `ledger.early_signature_checks`, or PREVERIFY)
  checks a follower's incoming blocks' signatures on a worker thread as soon
  as a Ready hands them out to persist.

Group commit is natural: while one Ready's write is in flight the core keeps
accepting steps, ticks and proposals, and all of it goes into the next Ready.
A Ready's persist and sends are finished even when shutdown cancels the loop
(shielded, bounded); entries handed to the apply task but not applied yet are
simply applied again after a restart, from the stored applied index (each
block is committed atomically with it), exactly as after a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
import trio

from hzp2p.net.errors import LocalProtocolError
from hzp2p.net.transport import Transport
from hzp2p.node.applier import Applier, Predecoded
from hzp2p.node.logging import NodeLogContext
from hzp2p.node.preverify import Preverifier
from hzp2p.node.snapshot_format import BadSnapshot, StateSnapshot
from hzp2p.raft.core import RaftCore
from hzp2p.raft.errors import NotLeader, ProposalDropped
from hzp2p.raft.membership import ConfChange
from hzp2p.raft.messages import MESSAGE_TYPES, Message
from hzp2p.raft.ready import Ready
from hzp2p.raft.status import RaftStats, RaftStatus
from hzp2p.raft.types import ConfState, Entry, EntryKind, NodeId, Role, Snapshot
from hzp2p.storage import AsyncStorage

if TYPE_CHECKING:
    from hzp2p.node.snapshots import SnapshotManager

log = structlog.get_logger("hzp2p.node.driver")

READY_FINISH_TIMEOUT_S = 30.0
"""How long a shutdown waits for the Ready in hand to be persisted and applied."""
SNAPSHOT_INSTALL_TIMEOUT_S = 600.0
"""The same bound for a Ready that installs a snapshot (the whole state is rewritten)."""
MAX_PENDING_READS = 1024
APPLY_QUEUE_READIES = 4
"""Readies' worth of committed entries the apply task may lag behind the ready loop."""
PREVERIFY = False
"""Default for `RaftDriver(preverify=...)`. Off: on the shared 2-core machine, with three
daemons and the client busy, the worker thread's GIL hand-offs (two per signature) cost
more CPU than the overlap saved (docs/daemon.md, "Signatures are checked early")."""

AppHandler = Callable[[NodeId, Any], None]


class UnsupportedSnapshot(Exception):
    """The core handed out a snapshot to install and no SnapshotManager was given."""

    def __init__(self, index: int) -> None:
        super().__init__(f"asked to install a snapshot at index {index}: no snapshot manager")


def role_name(role: Role) -> str:
    """The admin/metrics name of a core role (pre-candidates show as candidates)."""
    if role is Role.PRE_CANDIDATE:
        return "candidate"
    return str(role.value)


class CoreView:
    """The narrow, read-only view of the core that the producer and the block pipeline
    get (hzp2p.ledgernode.pipeline.RaftView): the driver stays the core's only caller."""

    __slots__ = ("_driver",)

    def __init__(self, driver: RaftDriver) -> None:
        self._driver = driver

    def is_leader(self) -> bool:
        return self._driver.core.role is Role.LEADER

    def last_index(self) -> int:
        return self._driver.core.log.last_index()

    def current_term(self) -> int:
        return self._driver.core.term


class RaftDriver:
    """Drives one RaftCore; see the module docstring."""

    def __init__(
        self,
        core: RaftCore,
        storage: AsyncStorage,
        transport: Transport,
        applier: Applier,
        *,
        tick_ms: int,
        log_context: NodeLogContext | None = None,
        on_app_message: AppHandler | None = None,
        on_role_change: Callable[[Role, NodeId], None] | None = None,
        snapshots: SnapshotManager | None = None,
        preverify: bool | None = None,
    ) -> None:
        self.core = core
        self.snapshots = snapshots
        self.storage = storage
        self.transport = transport
        self.applier = applier
        self.tick_s = tick_ms / 1000.0
        self._ctx = log_context
        self._on_app = on_app_message
        self._on_role = on_role_change
        self._wake = trio.Event()
        self._reads: dict[bytes, tuple[trio.Event, list[int]]] = {}
        self._read_seq = 0
        self.readies = 0
        self.persist_ms_last = 0.0
        self.inbound_refused = 0
        self.send_failures = 0
        self.role = core.role
        self.leader_id = core.leader_id
        self.term = core.term
        self.last_leader = (core.leader_id, core.term)
        """(leader id, term) of the last leader this node knew; (0, 0) if none yet."""
        self.leaderless_since: float | None = None
        """Trio time since which this node knows no leader (None while it knows one, or
        before anyone looked: hzp2p.node.failfast starts the clock then)."""
        self.changed = trio.Event()
        """Set (and replaced) whenever role, leader or term changes."""
        self.raft = CoreView(self)
        on = PREVERIFY if preverify is None else preverify
        self.preverifier = Preverifier() if on else None
        self._apply_send, self._apply_recv = trio.open_memory_channel[tuple[Entry, ...]](
            APPLY_QUEUE_READIES)
        self._apply_queued = 0
        """Last index handed to the apply task (0: none yet)."""
        self._apply_idle = trio.Event()
        self._apply_idle.set()
        self.apply_full_waits = 0
        """Times the ready loop waited because the apply channel was full."""
        self.apply_drain_waits = 0
        """Times the ready loop waited for the apply task (conf change, snapshot)."""

    # ---------------------------------------------------------------- inputs
    def wake(self) -> None:
        self._wake.set()

    def propose(self, data: bytes) -> int:
        """Propose `data`; returns its log index. Raises NotLeader or ProposalDropped."""
        index = self.core.propose(data)
        self.wake()
        return index

    def propose_many(self, datas: list[bytes]) -> tuple[int, int]:
        """Propose several entries at once (all or none); returns (first, last) index."""
        first_last = self.core.propose_many(datas)
        self.wake()
        return first_last

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose a membership change; returns its log index. Raises NotLeader,
        ProposalDropped or ValueError (an invalid change for the current conf)."""
        index = self.core.propose_conf_change(change)
        self.wake()
        return index

    @property
    def conf(self) -> ConfState:
        """The membership the core holds (the applied one plus any change in flight)."""
        return self.core.conf

    @property
    def node_id(self) -> NodeId:
        return self.core.node_id

    @property
    def election_ticks(self) -> int:
        return self.core.config.election_ticks

    def status(self) -> RaftStatus:
        return self.core.status()

    def stats(self) -> RaftStats:
        return self.core.stats()

    async def read_index(self, timeout_s: float) -> int:
        """A linearizable read barrier on the leader (thesis §6.4): returns once this node has
        applied everything committed when the read was issued. Raises NotLeader,
        ProposalDropped, or trio.TooSlowError."""
        with trio.fail_after(timeout_s):
            index = await self.read_state(None)
            await self.applier.wait_applied(index)
        return index

    async def read_state(self, ctx: bytes | None) -> int:
        """Start a ReadIndex round (leader only) and return its read index once the leader has
        confirmed it with a quorum; the caller bounds the wait. `ctx` None: a fresh one."""
        if len(self._reads) >= MAX_PENDING_READS:
            raise ProposalDropped(f"{MAX_PENDING_READS} reads already pending")
        if ctx is None:
            self._read_seq += 1
            ctx = b"r%d:%d" % (self.core.node_id, self._read_seq)
        if ctx in self._reads:
            raise ProposalDropped("a read with this context is already pending")
        ev = trio.Event()
        slot: list[int] = []
        self.core.read_index(ctx)
        self._reads[ctx] = (ev, slot)
        self.wake()
        try:
            await ev.wait()
        finally:
            self._reads.pop(ctx, None)
        return slot[0]

    def transfer_leadership(self, target: NodeId) -> None:
        self.core.transfer_leadership(target)
        self.wake()

    # ---------------------------------------------------------------- loops
    async def tick_loop(self) -> None:
        next_t = trio.current_time()
        while True:
            next_t += self.tick_s
            await trio.sleep_until(next_t)
            now = trio.current_time()
            if now - next_t > 10 * self.tick_s:
                next_t = now  # we fell far behind (suspended?): do not burst ticks
            self.core.tick()
            self.wake()

    async def inbound_loop(self) -> None:
        while True:
            sender, msg = await self.transport.receive()
            if isinstance(msg, MESSAGE_TYPES):
                if self.snapshots is not None:
                    self.snapshots.check_leader_message(self.core, msg)  # NodeDataLost
                self.core.step(msg)
                self.wake()
            elif self._on_app is not None:
                try:
                    self._on_app(sender, msg)
                except LocalProtocolError as exc:  # a reply we cannot send: drop and count
                    self.send_failures += 1
                    log.warning("app_reply_refused", peer=sender, reason=str(exc))
            else:
                self.inbound_refused += 1

    async def ready_loop(self) -> None:
        """The ready loop, with the apply task and the pre-verifier beside it."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._apply_loop)
            if self.preverifier is not None:
                nursery.start_soon(self.preverifier.run)
            await self._ready_loop()

    async def _ready_loop(self) -> None:
        while True:
            self._wake = trio.Event()
            while self.core.has_ready():
                rd = self.core.ready()
                bound = READY_FINISH_TIMEOUT_S
                try:
                    state = None
                    if rd.snapshot is not None:
                        await self.drain_apply()  # nothing older may apply after the install
                        # Peer input, checked before anything is stored; the check (a full
                        # digest of the state) may take long, so it runs outside the bound.
                        state = await self._verify_snapshot(rd.snapshot)
                        bound = SNAPSHOT_INSTALL_TIMEOUT_S
                    with trio.CancelScope(shield=True):
                        with trio.move_on_after(bound) as scope:
                            await self._persist(rd, state)
                except BadSnapshot:
                    # Nothing of this Ready was persisted or acknowledged: forget it and
                    # rebuild the core from durable state (hzp2p.node.snapshots).
                    assert self.snapshots is not None
                    await self.drain_apply()
                    self.core = await self.snapshots.rebuild_core()
                    self._soft_state_changed()
                    continue
                if scope.cancelled_caught:
                    # Never advance past a Ready we could not persist (ready.py): without
                    # advance the core stops counting us and a leader steps down. Wait here
                    # (cancellable, so a shutdown still works) for an operator.
                    log.error("ready_stalled", timeout_s=bound)
                    await trio.sleep_forever()
                await self._finish(rd)
                if self.snapshots is not None:
                    await self.snapshots.after_ready(self.core)  # compaction policy
            await self._wake.wait()

    # ---------------------------------------------------------------- one Ready
    async def _verify_snapshot(self, snap: Snapshot) -> StateSnapshot:
        if self.snapshots is None:
            raise UnsupportedSnapshot(snap.meta.index)
        return await self.snapshots.verify(snap)  # BadSnapshot: ready_loop drops the Ready

    async def _persist(self, rd: Ready, state: StateSnapshot | None = None) -> None:
        """Steps 1-3 of the contract: send, persist (one fsync), send what needed it."""
        self.readies += 1
        if rd.soft_state is not None:
            self._soft_state_changed()
        if self.preverifier is not None and rd.entries and self.core.role is not Role.LEADER:
            self.preverifier.submit(rd.entries)  # a leader checked its own blocks' txs
        # 1. leader traffic may leave before our own copy is durable (thesis §10.2.1)
        self._send_all(rd.messages)
        # 2. one transaction, one fsync: snapshot, entries, hard state
        if rd.must_sync:
            t0 = time.perf_counter()
            # Urgent: ahead of queued block executions and queries (hzp2p/storage/dbthread).
            # A snapshot install keeps its place, after the apply queue it drained.
            await self.storage.save_ready(rd.entries, rd.hard_state, rd.snapshot,
                                          urgent=rd.snapshot is None)
            self.persist_ms_last = (time.perf_counter() - t0) * 1000
        if rd.snapshot is not None:
            # verified by ready_loop; the state goes in before anything acknowledges it
            assert self.snapshots is not None and state is not None
            await self.snapshots.install(rd.snapshot, state)
            if self.preverifier is not None:
                self.preverifier.forget_through(rd.snapshot.meta.index)
        if rd.hard_state is not None and rd.hard_state.term != self.term:
            self.term = rd.hard_state.term
            if self._ctx is not None:
                self._ctx.update(term=self.term)
            self._notify_change()
        # 3. only now: votes, append responses, anything asserting durable state
        self._send_all(rd.persisted_messages)

    async def _finish(self, rd: Ready) -> None:
        """Steps 4-6: hand the committed entries (durable now) to the apply task; serve
        reads (their callers wait for the applier's index); advance."""
        committed = rd.committed_entries
        if committed:
            await self._enqueue_apply(committed)
            if any(e.kind is EntryKind.CONF_CHANGE for e in committed):
                await self.drain_apply()  # the core must hold the new conf before advance
        for rs in rd.read_states:
            entry = self._reads.get(rs.context)
            if entry is not None:
                entry[1].append(rs.index)
                entry[0].set()
        self.core.advance(rd)

    # ---------------------------------------------------------------- applying
    async def _enqueue_apply(self, entries: tuple[Entry, ...]) -> None:
        self._apply_idle = trio.Event()
        self._apply_queued = entries[-1].index
        try:
            self._apply_send.send_nowait(entries)
        except trio.WouldBlock:
            self.apply_full_waits += 1
            await self._apply_send.send(entries)

    async def drain_apply(self) -> None:
        """Return once every entry handed to the apply task has been applied."""
        if not self._apply_idle.is_set():
            self.apply_drain_waits += 1
            await self._apply_idle.wait()

    async def _apply_loop(self) -> None:
        async for first in self._apply_recv:
            entries = list(first)
            while True:  # whatever else is queued goes in the same apply call
                try:
                    entries.extend(self._apply_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            pre = self.preverifier
            take: Predecoded | None = None if pre is None else pre.take
            # self.core at apply time: a core rebuilt meanwhile gets the conf change
            await self.applier.apply(self._apply_conf_change, entries, take)
            if pre is not None:
                pre.forget_through(entries[-1].index)
            if max(self.applier.applied_index, entries[-1].index) >= self._apply_queued:
                self._apply_idle.set()

    def _apply_conf_change(self, change: ConfChange) -> ConfState:
        return self.core.apply_conf_change(change)

    def _send_all(self, msgs: tuple[Message, ...]) -> None:
        for m in msgs:
            try:
                if not self.transport.send_nowait(m.dst, m):
                    self.send_failures += 1
            except LocalProtocolError as exc:
                self.send_failures += 1
                log.warning("send_refused", dst=m.dst, kind=type(m).__name__, reason=str(exc))

    def _soft_state_changed(self) -> None:
        role, lead = self.core.role, self.core.leader_id
        if role is self.role and lead == self.leader_id:
            return
        old = self.role
        self.role, self.leader_id = role, lead
        if lead:
            self.last_leader, self.leaderless_since = (lead, self.core.term), None
        elif self.leaderless_since is None:
            self.leaderless_since = trio.current_time()
        if self._ctx is not None:
            self._ctx.update(role=role_name(role), term=self.core.term)
        self.term = self.core.term
        if role is Role.LEADER and old is not Role.LEADER:
            log.info("became_leader", term=self.core.term)
        elif old is Role.LEADER and role is not Role.LEADER:
            log.info("lost_leadership", term=self.core.term, leader_id=lead)
        elif lead and role is not Role.LEADER:
            log.info("leader_known", leader_id=lead, term=self.core.term)
        if self._on_role is not None:
            self._on_role(role, lead)
        self._notify_change()

    def _notify_change(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    # ---------------------------------------------------------------- views
    def is_leader(self) -> bool:
        return self.core.role is Role.LEADER

    def idle_leader(self) -> bool:
        """Leader with every entry of its log applied (nothing in flight)."""
        return self.is_leader() and self.applier.applied_index >= self.raft.last_index()


def not_leader_hint(exc: NotLeader) -> str:
    if exc.leader_id:
        return f"node {exc.leader_id} is the leader; ask it, or retry without --linearizable"
    return "no leader is known yet (election in progress); retry shortly"
