"""Unit tests of the simulator's parts that need no Raft core: loop, network, store, state machine."""

from __future__ import annotations

import random

import pytest

from hzp2p.raft.messages import Heartbeat, Message
from hzp2p.raft.ready import Ready
from hzp2p.raft.types import ConfState, Entry, HardState
from hzp2p.sim.events import EventLoop, derive_rng
from hzp2p.sim.network import CALM_NET, NetProfile, Network, partition_links
from hzp2p.sim.statemachine import KVStateMachine, decode_request, encode_request
from hzp2p.sim.store import DurableStore


def _ready(entries: tuple[Entry, ...] = (), hs: HardState | None = None) -> Ready:
    return Ready(None, hs, entries, None, (), (), (), ())


def test_loop_orders_by_time_then_insertion() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.at(5, seen.append, "b")
    loop.at(1, seen.append, "a")
    loop.at(5, seen.append, "c")
    loop.after(3, seen.append, "x")
    assert loop.run_until(10) is False
    assert seen == ["a", "x", "b", "c"]
    assert loop.now_ms == 10 and loop.steps == 4


def test_loop_stops_early_and_refuses_the_past() -> None:
    loop = EventLoop()
    for t in range(10):
        loop.at(t, lambda: None)
    assert loop.run_until(100, after_step=lambda: loop.now_ms >= 3) is True
    assert loop.now_ms == 3
    with pytest.raises(AssertionError):
        loop.at(2, lambda: None)


def test_derived_rngs_are_deterministic() -> None:
    a, b = random.Random(7), random.Random(7)
    assert [derive_rng(a).random() for _ in range(3)] == [derive_rng(b).random() for _ in range(3)]


def _net(profile: NetProfile = CALM_NET, seed: int = 1) -> tuple[EventLoop, Network, list[Message]]:
    loop = EventLoop()
    got: list[Message] = []
    return loop, Network(loop, random.Random(seed), got.append, profile), got


def _hb(src: int, dst: int, commit: int = 0) -> Heartbeat:
    return Heartbeat(term=1, src=src, dst=dst, commit=commit)


def test_network_delivers_within_delay_bounds_and_reorders() -> None:
    loop, net, got = _net(NetProfile(min_delay_ms=1, max_delay_ms=50, reorder_prob=1.0))
    for i in range(200):
        net.send(_hb(1, 2, i))
    loop.run_until(50)
    assert len(got) == 200
    commits = [m.commit for m in got if isinstance(m, Heartbeat)]
    assert commits != sorted(commits), "random delays must reorder"


def test_links_are_fifo_unless_reordering() -> None:
    loop, net, got = _net(NetProfile(min_delay_ms=1, max_delay_ms=50, reorder_prob=0.0))
    for i in range(200):
        net.send(_hb(1, 2, i))
        net.send(_hb(3, 2, i))
    loop.run_until(10_000)
    for src in (1, 3):
        commits = [m.commit for m in got if isinstance(m, Heartbeat) and m.src == src]
        assert commits == list(range(200))


def test_network_drops_and_duplicates() -> None:
    loop, net, got = _net(NetProfile(drop_prob=0.5, dup_prob=0.5))
    for i in range(1000):
        net.send(_hb(1, 2, i))
    loop.run_until(1000)
    assert 0 < net.dropped < 1000 and net.duplicated > 0
    assert len(got) == net.delivered == 1000 - net.dropped + net.duplicated


def test_partitions_block_both_ways_one_way_one_way_and_heal() -> None:
    loop, net, got = _net()
    net.block(1, partition_links([[1], [2, 3]]))
    net.block(2, [(2, 3)])
    for src, dst in [(1, 2), (2, 1), (3, 1), (2, 3), (3, 2)]:
        net.send(_hb(src, dst))
    loop.run_until(100)
    assert [(m.src, m.dst) for m in got] == [(3, 2)]
    net.unblock(1)
    assert not net.is_blocked(1, 2) and net.is_blocked(2, 3)
    net.heal_all()
    assert not net.is_blocked(2, 3) and net.active_faults == 0


def test_messages_in_flight_die_with_the_link() -> None:
    loop, net, got = _net(NetProfile(min_delay_ms=10, max_delay_ms=10))
    net.send(_hb(1, 2))
    net.block(1, [(1, 2)])
    loop.run_until(100)
    assert got == [] and net.dropped == 1


def test_store_truncates_only_the_conflicting_suffix() -> None:
    st = DurableStore(base_conf=ConfState(frozenset({1})))
    es = tuple(Entry(term=1, index=i) for i in range(1, 6))
    assert st.persist(_ready(es, HardState(1, 1, 2))) == []
    assert st.last_index == 5 and st.hard_state.commit == 2
    removed = st.persist(
        _ready((Entry(term=2, index=4), Entry(term=2, index=5), Entry(term=2, index=6)))
    )
    assert [e.index for e in removed] == [4, 5]
    assert [e.term for e in st.entries] == [1, 1, 1, 2, 2, 2]
    assert st.hard_state == HardState(1, 1, 2)
    with pytest.raises(AssertionError):
        st.persist(_ready((Entry(term=2, index=9),)))


def test_kv_state_machine_dedupes_retries_and_restores() -> None:
    sm = KVStateMachine()
    a1 = Entry(term=1, index=1, data=encode_request(7, 1, 1, 3, b"v"))
    a2 = Entry(term=2, index=2, data=encode_request(7, 1, 2, 3, b"w"))
    assert decode_request(a2.data) == (7, 1, 2, 3, b"w")
    o1, o2 = sm.apply(a1), sm.apply(a2)
    assert o1 is not None and not o1.duplicate and o1.index == 1
    assert o2 is not None and o2.duplicate and o2.index == 1 and o2.request_id == (7, 1)
    assert sm.kv == {3: b"v"}
    other = KVStateMachine()
    other.restore(sm.snapshot())
    assert other.digest() == sm.digest()
    assert sm.apply(Entry(term=1, index=3, data=b"not a request")) is None
