"""Forwarded linearizable reads: a follower's ReadIndexRequest, the leader's ReadIndexResponse."""

from __future__ import annotations

from typing import Any, cast

import trio

from hzp2p.net.schemas import ReadIndexRequest, ReadIndexResponse, default_registry
from hzp2p.node.reads import READ_MESSAGES, ReadService
from hzp2p.raft.errors import NotLeader

REG = default_registry()


class FakeDriver:
    def __init__(self, leader: bool, leader_id: int, index: int | None = 7) -> None:
        self.leader, self.leader_id, self.index = leader, leader_id, index

    def is_leader(self) -> bool:
        return self.leader

    async def read_state(self, ctx: bytes | None) -> int:
        if self.index is None:
            raise NotLeader(0, "stepped down")
        return self.index


class FakeApplier:
    def __init__(self, applied: int) -> None:
        self.applied_index = applied
        self.waited: list[int] = []

    async def wait_applied(self, index: int) -> None:
        self.waited.append(index)


class Wire:
    """Carries messages between ReadServices through the real codec, as the transport would."""

    def __init__(self) -> None:
        self.services: dict[int, ReadService] = {}
        self.sent: list[tuple[int, int, Any]] = []

    def endpoint(self, me: int) -> Any:
        wire = self

        class Endpoint:
            def send_nowait(self, dst: int, msg: Any) -> bool:
                (decoded,) = REG.decode_batch(REG.encode_batch([msg]))
                wire.sent.append((me, dst, decoded))
                assert isinstance(decoded, READ_MESSAGES)
                wire.services[dst].on_message(me, decoded)
                return True

        return Endpoint()


def make(wire: Wire, node_id: int, driver: FakeDriver) -> tuple[ReadService, FakeApplier]:
    applier = FakeApplier(0)
    svc = ReadService(node_id, cast(Any, driver), cast(Any, applier), wire.endpoint(node_id))
    wire.services[node_id] = svc
    return svc, applier


async def test_follower_read_is_answered_by_the_leader() -> None:
    wire = Wire()
    leader, _ = make(wire, 1, FakeDriver(True, 1, index=7))
    follower, f_applier = make(wire, 2, FakeDriver(False, 1))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader.serve_loop)
        assert await follower.barrier(2.0) == 7
        nursery.cancel_scope.cancel()
    assert f_applier.waited == [7]
    kinds = [(src, dst, type(msg)) for src, dst, msg in wire.sent]
    assert kinds == [(2, 1, ReadIndexRequest), (1, 2, ReadIndexResponse)]
    answer = wire.sent[1][2]
    assert answer.ok and answer.index == 7 and answer.ctx == wire.sent[0][2].ctx


async def test_leader_that_cannot_confirm_refuses() -> None:
    wire = Wire()
    leader, _ = make(wire, 1, FakeDriver(True, 1, index=None))
    follower, f_applier = make(wire, 2, FakeDriver(False, 1))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader.serve_loop)
        try:
            await follower.barrier(2.0)
        except NotLeader as exc:
            assert "could not confirm" in str(exc)
        else:
            raise AssertionError("expected NotLeader")
        nursery.cancel_scope.cancel()
    assert f_applier.waited == []
    assert wire.sent[-1][2] == ReadIndexResponse(wire.sent[0][2].ctx, 0, False)


def test_answers_from_anyone_but_the_asked_leader_are_refused() -> None:
    wire = Wire()
    follower, _ = make(wire, 2, FakeDriver(False, 1))
    follower.on_message(3, ReadIndexResponse(b"f2:1", 5, True))  # nothing pending
    assert follower.refused == 1
