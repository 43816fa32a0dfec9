"""Linearizable reads from any node: ReadIndex on the leader, forwarded from followers.

It owns the read barrier behind `linearizable: true`. On the leader it is the
core's ReadIndex (thesis §6.4) followed by a wait for the local applied
index. A follower asks the leader for a read index over the transport (net
ReadIndexRequest, answered by ReadIndexResponse; like etcd's forwarded
MsgReadIndex), then waits until it has applied that index itself, so the read it then serves
locally reflects every write committed before the read began.

Faults (issue 22): a read that waits on a leader which is deposed, or becomes
unreachable, starts again with the next leader instead of waiting out its
timeout; a node that knows no leader waits for the election under the same rule as
a submit (hzp2p.node.failfast) and then answers NoQuorum, naming the condition. A
leader that refuses to confirm answers NotLeader (with the leader id when known); the
caller's timeout bounds the whole barrier.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import structlog
import trio

from hzp2p.net.schemas import ReadIndexRequest, ReadIndexResponse
from hzp2p.net.transport import Transport
from hzp2p.node import failfast
from hzp2p.node.applier import Applier
from hzp2p.node.driver import RaftDriver
from hzp2p.raft.errors import NotLeader, ProposalDropped
from hzp2p.raft.types import NodeId

log = structlog.get_logger("hzp2p.node.reads")

READ_MESSAGES = (ReadIndexRequest, ReadIndexResponse)
"""The net message kinds this service handles (route them to `on_message`)."""
MAX_PENDING = 1024
LEADER_POLL_S = 0.1
"""How often a waiting read looks whether the leader it waits on is still the leader."""
SERVE_QUEUE_LEN = 1024
LEADER_READ_TIMEOUT_S = 5.0


class ReadService:
    """See the module docstring."""

    def __init__(self, node_id: NodeId, driver: RaftDriver, applier: Applier,
                 transport: Transport) -> None:
        self.node_id = node_id
        self.driver = driver
        self.applier = applier
        self.transport = transport
        self._seq = itertools.count(1)
        self._pending: dict[bytes, tuple[NodeId, trio.Event, list[int]]] = {}
        self._serve_send, self._serve_recv = trio.open_memory_channel[tuple[NodeId, bytes]](
            SERVE_QUEUE_LEN)
        self.refused = 0

    async def barrier(self, timeout_s: float) -> int:
        """Return once this node has applied everything committed before the call (or raise
        NotLeader, NoQuorum, ProposalDropped, trio.TooSlowError)."""
        with trio.fail_after(timeout_s):
            while True:
                leader = self.driver.leader_id
                if self.driver.is_leader():
                    index = await self._unless_deposed(leader, self._on_leader)
                elif leader:
                    index = await self._forwarded(leader)
                else:
                    failfast.check(self.driver, self.node_id, None)
                    await trio.sleep(failfast.LEADERLESS_POLL_S)
                    continue
                if index is not None:
                    return index

    async def _on_leader(self) -> int:
        index = await self.driver.read_state(None)
        await self.applier.wait_applied(index)
        return index

    async def _unless_deposed(
        self, leader: NodeId, read: Callable[[], Awaitable[int]]
    ) -> int | None:
        """`read()`, unless `leader` stops being the leader first (then None: look again)."""
        out: list[int] = []

        async def run(scope: trio.CancelScope) -> None:
            out.append(await read())
            scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, nursery.cancel_scope)
                # The driver has no event for "the leader changed": look every poll.
                while True:
                    await trio.sleep(LEADER_POLL_S)
                    if self.driver.leader_id != leader:
                        nursery.cancel_scope.cancel()
                        break
        except BaseExceptionGroup as group:
            # One error of the read itself (NotLeader, ProposalDropped) goes to the caller
            # as it is; anything else (trio.Cancelled among it) propagates untouched.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise
        return out[0] if out else None

    async def _forwarded(self, leader: NodeId) -> int | None:
        """Ask `leader` for a read index; None if the leader changes before it answers."""
        if len(self._pending) >= MAX_PENDING:
            raise ProposalDropped(f"{MAX_PENDING} forwarded reads already pending")
        ctx = b"f%d:%d" % (self.node_id, next(self._seq))
        ev = trio.Event()
        slot: list[int] = []
        self._pending[ctx] = (leader, ev, slot)
        try:
            if not self.transport.send_nowait(leader, ReadIndexRequest(ctx)):
                # Unreachable from here: wait for the link or the election (or NoQuorum).
                await trio.sleep(LEADER_POLL_S)
                return None
            while not ev.is_set():
                if self.driver.leader_id != leader:
                    return None
                with trio.move_on_after(LEADER_POLL_S):
                    await ev.wait()
            if not slot:
                raise NotLeader(self.driver.leader_id, "the leader could not confirm")
        finally:
            self._pending.pop(ctx, None)
        await self.applier.wait_applied(slot[0])
        return slot[0]

    def on_message(self, sender: NodeId, msg: ReadIndexRequest | ReadIndexResponse) -> None:
        """READ_MESSAGES from the inbound loop (the codec has checked their fields)."""
        if isinstance(msg, ReadIndexRequest):
            try:
                self._serve_send.send_nowait((sender, msg.ctx))
            except trio.WouldBlock:
                self.transport.send_nowait(sender, ReadIndexResponse(msg.ctx))
            return
        entry = self._pending.get(msg.ctx)
        if entry is None or entry[0] != sender:
            self.refused += 1  # only the leader we asked may answer
            return
        if msg.ok:
            entry[2].append(msg.index)
        entry[1].set()

    async def serve_loop(self) -> None:
        """Leader side: answer forwarded read requests (each in its own bounded task)."""
        limiter = trio.CapacityLimiter(64)
        async with trio.open_nursery() as nursery:
            while True:
                sender, ctx = await self._serve_recv.receive()
                await limiter.acquire_on_behalf_of(ctx)
                nursery.start_soon(self._serve_one, sender, ctx, limiter)

    async def _serve_one(self, sender: NodeId, ctx: bytes, limiter: trio.CapacityLimiter) -> None:
        try:
            index: int | None = None
            with trio.move_on_after(LEADER_READ_TIMEOUT_S):
                try:
                    # The follower's own context, prefixed so it cannot collide with ours.
                    index = await self.driver.read_state(b"%d/" % sender + ctx)
                except (NotLeader, ProposalDropped, ValueError):
                    index = None
            if index is None:
                self.transport.send_nowait(sender, ReadIndexResponse(ctx))
            else:
                self.transport.send_nowait(sender, ReadIndexResponse(ctx, index, ok=True))
        finally:
            limiter.release_on_behalf_of(ctx)
