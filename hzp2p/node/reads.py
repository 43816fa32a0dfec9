"""Linearizable reads from any node: ReadIndex on the leader, forwarded from followers.

It owns the read barrier behind `linearizable: true`. On the leader it is the
core's ReadIndex (thesis §6.4) followed by a wait for the local applied
index. A follower asks the leader for a read index over the transport (net
ReadIndexRequest, answered by ReadIndexResponse; like etcd's forwarded
MsgReadIndex), then waits until it has applied that index itself, so the read it then serves
locally reflects every write committed before the read began. With no leader
known, or a leader that cannot confirm its leadership, the caller gets
NotLeader (with the leader id when known) or a timeout.
"""

from __future__ import annotations

import itertools

import structlog
import trio

from hzp2p.net.schemas import ReadIndexRequest, ReadIndexResponse
from hzp2p.net.transport import Transport
from hzp2p.node.applier import Applier
from hzp2p.node.driver import RaftDriver
from hzp2p.raft.errors import NotLeader, ProposalDropped
from hzp2p.raft.types import NodeId

log = structlog.get_logger("hzp2p.node.reads")

READ_MESSAGES = (ReadIndexRequest, ReadIndexResponse)
"""The net message kinds this service handles (route them to `on_message`)."""
MAX_PENDING = 1024
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
        NotLeader, ProposalDropped, trio.TooSlowError)."""
        if self.driver.is_leader():
            return await self.driver.read_index(timeout_s)
        leader = self.driver.leader_id
        if not leader:
            raise NotLeader(0, "no leader known")
        if len(self._pending) >= MAX_PENDING:
            raise ProposalDropped(f"{MAX_PENDING} forwarded reads already pending")
        ctx = b"f%d:%d" % (self.node_id, next(self._seq))
        ev = trio.Event()
        slot: list[int] = []
        self._pending[ctx] = (leader, ev, slot)
        try:
            with trio.fail_after(timeout_s):
                if not self.transport.send_nowait(leader, ReadIndexRequest(ctx)):
                    raise NotLeader(leader, "the leader is unreachable")
                await ev.wait()
                if not slot:
                    raise NotLeader(self.driver.leader_id, "the leader could not confirm")
                index = slot[0]
                await self.applier.wait_applied(index)
                return index
        finally:
            self._pending.pop(ctx, None)

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
