"""The per-entry hot path: Entry as a value, propose_many's batch, the cheap log checks,
and the leader handing every follower in step the same entries tuple (packed once)."""

from __future__ import annotations

import pickle
import random

import pytest

from hzp2p.raft.config import RaftConfig
from hzp2p.raft.core import RaftCore
from hzp2p.raft.log import RaftLog
from hzp2p.raft.messages import AppendEntries
from hzp2p.raft.types import ConfState, Entry, EntryKind
from hzp2p.raft.validate import entries_follow as follow
from raft.network import Network


def test_entry_is_a_value() -> None:
    a = Entry(3, 7, EntryKind.NORMAL, b"x")
    assert a == Entry(3, 7, data=b"x") and hash(a) == hash(Entry(3, 7, data=b"x"))
    assert a != Entry(3, 7, EntryKind.NOOP, b"x") and a != Entry(4, 7, data=b"x")
    assert a != (3, 7, EntryKind.NORMAL, b"x")  # not a tuple: equal only to an Entry
    assert a.replace(term=4) == Entry(4, 7, data=b"x") and a.term == 3
    assert pickle.loads(pickle.dumps(a)) == a
    assert repr(a) == "Entry(term=3, index=7, kind=<EntryKind.NORMAL: 0>, data=b'x')"
    assert a.size_bytes() == 17
    with pytest.raises(AttributeError):
        a.extra = 1  # type: ignore[attr-defined]  # slots: no stray attributes


@pytest.mark.parametrize("pad", [0, 20], ids=["short-loop", "long-in-C"])
def test_entries_follow_checks_type_order_and_terms(pad: int) -> None:
    # `pad` entries before index 11 put the same cases on the long (map/list) path.
    head = tuple(Entry(2, 11 - pad + i) for i in range(pad))

    def entries_follow(es: tuple[object, ...], prev: int, prev_term: int, term: int) -> bool:
        return follow((*head, *es), prev - pad, prev_term, term)  # type: ignore[arg-type]

    good = (Entry(2, 11), Entry(2, 12), Entry(3, 13))
    assert entries_follow(good, 10, 2, 3)
    assert follow((), 10, 2, 3)
    assert not entries_follow(good, 9, 2, 3)  # does not continue prev_index
    assert not entries_follow(good, 10, 3, 3)  # first term below prev_term
    assert not entries_follow(good, 10, 2, 2)  # a term above the message's term
    assert not entries_follow((Entry(2, 11), Entry(2, 13)), 10, 2, 3)  # a gap
    assert not entries_follow((Entry(3, 11), Entry(2, 12)), 10, 2, 3)  # terms go back
    assert not entries_follow((Entry(2, 11), (2, 12)), 10, 2, 3)
    zeros = tuple(Entry(0, 11 + i) for i in range(pad))
    assert not follow((*zeros, Entry(True, 11 + pad)), 10, 0, 3)  # a bool is not a term
    assert follow((*zeros, Entry(1, 11 + pad)), 10, 0, 3)


def test_log_append_refuses_what_does_not_continue_it() -> None:
    log = RaftLog(None, [Entry(1, 1), Entry(1, 2)], 0, 0)
    with pytest.raises(AssertionError):
        log.append([Entry(1, 4)])
    with pytest.raises(AssertionError):
        log.append([Entry(1, 3), Entry(1, 5)])
    with pytest.raises(AssertionError):
        log.append([Entry(2, 3), Entry(1, 4)])
    log.append([Entry(2, 3), Entry(2, 4)])
    assert log.last_index() == 4 and log.last_term() == 2


def test_entries_from_respects_max_bytes_and_sizes_by_term() -> None:
    log = RaftLog(None, [Entry(1, i, data=bytes(84)) for i in range(1, 11)], 0, 0)
    assert len(log.entries_from(1, 100, 10_000) or []) == 10
    assert [e.index for e in log.entries_from(3, 100, 250) or []] == [3, 4]
    assert [e.index for e in log.entries_from(3, 100, 1) or []] == [3]  # at least one
    log.append([Entry(2, 11, data=bytes(4))])
    assert log.entries_size(1, 12, 2) == 20
    assert log.entries_size(1, 12, 1) == 1000
    assert log.entries_size(1, 11, 2) == 0


def test_propose_many_copies_non_bytes_and_counts_sizes() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    first, last = net.core(1).propose_many([bytearray(b"ab"), memoryview(b"cd"), b"ef"])
    entries = net.core(1).log.slice(first, last + 1)
    assert [e.data for e in entries] == [b"ab", b"cd", b"ef"]
    assert all(type(e.data) is bytes and e.kind is EntryKind.NORMAL for e in entries)
    net.tick(2)
    assert net.applied_data(3)[-3:] == [b"ab", b"cd", b"ef"]


def test_followers_in_step_get_the_same_entries_tuple() -> None:
    cores = {i: RaftCore(RaftConfig(i), random.Random(i), conf=ConfState(frozenset({1, 2, 3})))
             for i in (1, 2, 3)}
    for _ in range(100):  # deliver everything until node 1 leads and both follow in step
        for core in cores.values():
            core.tick()
        for _ in range(20):
            for core in cores.values():
                if core.has_ready():
                    rd = core.ready()
                    core.advance(rd)
                    for msg in (*rd.messages, *rd.persisted_messages):
                        cores[msg.dst].step(msg)
        if any(c.leader_id for c in cores.values()):
            break
    leader = next(c for c in cores.values() if c.leader_id == c.node_id)
    leader.propose_many([b"a", b"b", b"c"])
    appends = [m for m in leader.ready().messages if isinstance(m, AppendEntries)]
    assert len(appends) == 2 and {m.dst for m in appends} == set(cores) - {leader.node_id}
    assert appends[0].entries is appends[1].entries
    assert [e.data for e in appends[0].entries] == [b"a", b"b", b"c"]
