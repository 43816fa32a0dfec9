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


class Deaf:
    """A leader that never answers (cut off, or a half-open connection)."""

    def send_nowait(self, dst: int, msg: Any) -> bool:
        return True


async def test_a_read_waiting_on_a_deposed_leader_starts_again_with_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Leader 1 never answers; when the follower learns of leader 3, the read goes there.
    wire = Wire()
    new_leader, _ = make(wire, 3, FakeDriver(True, 3, index=11))
    driver = FakeDriver(False, 1)
    follower, f_applier = make(wire, 2, driver)
    follower.transport = cast(Any, Deaf())
    result: list[int] = []

    async def read() -> None:
        result.append(await follower.barrier(5.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(new_leader.serve_loop)
        nursery.start_soon(read)
        await trio.sleep(1.0)
        assert not result and len(follower._pending) == 1
        follower.transport = wire.endpoint(2)
        driver.leader_id = 3
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert result == [11] and f_applier.waited == [11]
    assert not follower._pending


class Voters:
    voters = frozenset({1, 2, 3})


class Isolated:
    def connected_peers(self) -> list[int]:
        return []


class LeaderlessDriver(FakeDriver):
    """A node cut off with a minority: no leader known, no voter reachable (the driver's
    view hzp2p.node.failfast reads)."""

    def __init__(self) -> None:
        super().__init__(False, 0)
        self.node_id, self.election_ticks, self.tick_s = 2, 10, 0.1
        self.conf, self.transport = Voters(), Isolated()
        self.leaderless_since: float | None = None
        self.last_leader = (5, 7)


async def test_a_node_that_cannot_reach_a_quorum_answers_no_quorum_not_a_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from hzp2p.node.failfast import NoQuorum

    follower, _ = make(Wire(), 2, cast(Any, LeaderlessDriver()))
    t0 = trio.current_time()
    try:
        await follower.barrier(5.0)
    except NoQuorum as exc:
        assert exc.code == "no_quorum" and "last leader 5 at term 7" in exc.message
    else:
        raise AssertionError("expected NoQuorum")
    # Within about one election timeout (1 s here), well before the read's own 5 s.
    assert trio.current_time() - t0 < 2.0


async def test_a_leaderless_node_with_a_quorum_waits_for_the_election(
    autojump_clock: trio.testing.MockClock,
) -> None:
    driver = LeaderlessDriver()
    driver.transport = cast(Any, type("Connected", (), {"connected_peers": lambda self: [1, 3]})())
    wire = Wire()
    leader, _ = make(wire, 3, FakeDriver(True, 3, index=4))
    follower, _ = make(wire, 2, cast(Any, driver))
    result: list[int] = []

    async def read() -> None:
        result.append(await follower.barrier(5.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader.serve_loop)
        nursery.start_soon(read)
        await trio.sleep(1.5)  # longer than an election timeout: still waiting
        assert not result
        driver.leader_id = 3
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert result == [4]


class DeposedLeader(FakeDriver):
    """A leader whose ReadIndex round never completes: it has lost its quorum."""

    async def read_state(self, ctx: bytes | None) -> int:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_read_on_a_leader_that_steps_down_goes_to_the_next_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wire = Wire()
    new_leader, _ = make(wire, 3, FakeDriver(True, 3, index=9))
    driver = DeposedLeader(True, 2)
    old, _ = make(wire, 2, driver)
    result: list[int] = []

    async def read() -> None:
        result.append(await old.barrier(5.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(new_leader.serve_loop)
        nursery.start_soon(read)
        await trio.sleep(1.0)
        assert not result
        driver.leader, driver.leader_id = False, 3  # check-quorum stepped it down; 3 won
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert result == [9]
