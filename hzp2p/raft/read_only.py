"""Pending ReadIndex requests on a leader (Raft thesis §6.4, etcd read_only.go).

A request records the commit index at the time it arrived, then waits until a
quorum of voters has acknowledged a heartbeat carrying its context (proving
this node was still leader after the request arrived). An acknowledgement of
a later context also confirms every earlier request, so they are released in
order. The queue is bounded; requests are dropped when leadership is lost.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from hzp2p.raft.types import NodeId


@dataclass(slots=True)
class ReadRequest:
    index: int
    context: bytes
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    def __init__(self, capacity: int) -> None:
        assert capacity > 0
        self.capacity = capacity
        self._pending: OrderedDict[bytes, ReadRequest] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.capacity

    def contains(self, context: bytes) -> bool:
        return context in self._pending

    def add(self, index: int, context: bytes, self_id: NodeId) -> None:
        assert not self.full()
        self._pending[context] = ReadRequest(index, context, {self_id})

    def recv_ack(self, src: NodeId, context: bytes) -> set[NodeId] | None:
        req = self._pending.get(context)
        if req is None:
            return None
        req.acks.add(src)
        return req.acks

    def advance(self, context: bytes) -> list[ReadRequest]:
        """Release the request for `context` and every earlier one, oldest first."""
        if context not in self._pending:
            return []
        out: list[ReadRequest] = []
        while self._pending:
            ctx, req = self._pending.popitem(last=False)
            out.append(req)
            if ctx == context:
                break
        return out

    def last_pending_context(self) -> bytes:
        return next(reversed(self._pending)) if self._pending else b""

    def reset(self) -> None:
        self._pending.clear()
