"""Log replication: batching bounds, fast back-off, probe/replicate flow control,
and robustness to duplicated, delayed, reordered and stale messages."""

from __future__ import annotations

import pytest

from hzp2p.raft.errors import ProposalDropped
from hzp2p.raft.messages import AppendEntries, AppendEntriesResponse
from hzp2p.raft.progress import ProgressState
from hzp2p.raft.types import Entry, HardState
from raft.network import Disk, Network, drain, entries_of, new_core


def progress_of(net: Network, lead: int, peer: int) -> tuple[int, int, ProgressState]:
    (p,) = [p for p in net.core(lead).status().progress if p.node_id == peer]
    return p.match, p.next, p.state


def test_appends_respect_entry_and_byte_bounds() -> None:
    """AppendEntries are batched within max_entries_per_msg and max_bytes_per_msg."""
    net = Network((1, 2), max_entries_per_msg=3, max_bytes_per_msg=200)
    net.elect(1)
    net.cut(1, 2)
    for i in range(10):
        net.core(1).propose(bytes(40 + i))
    net.deliver()
    net.heal()
    net.sent.clear()
    net.tick(5)
    appends = [m for m in net.sent if isinstance(m, AppendEntries) and m.entries]
    assert appends
    for m in appends:
        assert len(m.entries) <= 3
        assert len(m.entries) == 1 or sum(e.size_bytes() for e in m.entries) <= 200
    assert len(net.applied_data(2)) == 10


def test_proposal_bigger_than_a_message_is_dropped() -> None:
    """A proposal that could never fit in one message is refused with a clear reason."""
    net = Network((1,), max_bytes_per_msg=100)
    net.elect(1)
    with pytest.raises(ProposalDropped, match="max_bytes_per_msg"):
        net.core(1).propose(bytes(200))
    assert net.core(1).stats().proposals_dropped == 1


def test_fast_backoff_skips_a_whole_conflicting_term() -> None:
    """Conflict hints (thesis §5.3, etcd findConflictByTerm): one rejection per
    conflicting term, not one per entry."""
    disks = {
        1: Disk(HardState(3), entries_of(1, 1, 3, 3)),
        2: Disk(HardState(2), entries_of(1, 1, *([2] * 30))),
        3: Disk(HardState(3), entries_of(1, 1, 3, 3)),
    }
    net = Network((1, 2, 3), disks=disks)
    net.elect(1)
    net.tick(3)
    rejections = [
        m for m in net.sent if isinstance(m, AppendEntriesResponse) and m.src == 2 and not m.success
    ]
    assert 1 <= len(rejections) <= 3
    assert [e.term for e in net.nodes[2].disk.entries] == [1, 1, 3, 3, 4]


def test_follower_hint_for_short_log() -> None:
    """A follower whose log is too short answers with its last index + 1 and term 0."""
    core = new_core(disk=Disk(HardState(2), entries_of(1, 1)))
    core.step(AppendEntries(2, 2, 1, 7, 2, (), 0))
    (r,) = drain(core).of(AppendEntriesResponse)
    assert (r.reject_index, r.conflict_index, r.conflict_term) == (7, 3, 0)


def test_probe_then_replicate() -> None:
    """A new leader probes each follower (one append at a time) until one succeeds, then
    streams (replicate state)."""
    net = Network((1, 2, 3))
    net.elect(1)
    assert progress_of(net, 1, 2)[2] is ProgressState.REPLICATE
    net.isolate(2)
    net.propose(1, b"x")  # streamed to 2 optimistically (next moves past it)
    assert progress_of(net, 1, 2)[1:] == (3, ProgressState.REPLICATE)
    net.core(1).step(AppendEntriesResponse(net.core(1).term, 2, 1, False, 0, 2, 2, 0))
    assert progress_of(net, 1, 2) == (1, 2, ProgressState.PROBE)


def test_inflight_appends_are_bounded() -> None:
    """In replicate state at most max_inflight_msgs appends are unacknowledged."""
    net = Network((1, 2, 3), max_inflight_msgs=3)
    net.elect(1)
    net.cut(1, 2)
    net.sent.clear()
    for i in range(10):
        net.core(1).propose(f"p{i}".encode())
        net.deliver()
    to2 = [m for m in net.sent if isinstance(m, AppendEntries) and m.dst == 2 and m.entries]
    to3 = [m for m in net.sent if isinstance(m, AppendEntries) and m.dst == 3 and m.entries]
    assert len(to2) == 3
    assert len(to3) == 10
    net.heal()
    net.tick(5)
    assert net.applied_data(2) == [f"p{i}".encode() for i in range(10)]


def test_lost_appends_recovered_through_heartbeats() -> None:
    """Appends lost on the wire are resent once heartbeats show the follower behind."""
    net = Network((1, 2, 3))
    net.elect(1)
    net.drop = lambda m: isinstance(m, AppendEntries) and m.dst == 3
    net.propose(1, b"a")
    net.propose(1, b"b")
    net.drop = None
    net.tick(3)
    assert net.applied_data(3) == [b"a", b"b"]


def test_duplicated_and_reordered_messages_are_harmless() -> None:
    """§5.5: "Raft RPCs are idempotent"; with every message duplicated and the queue
    reordered, nothing committed is ever erased and all nodes converge."""
    net = Network((1, 2, 3, 4, 5), seed=3)
    net.duplicate = True
    net.reorder = True
    net.run_until(lambda: net.leader() is not None)
    for i in range(40):
        lead = net.leader()
        if lead is not None:
            net.core(lead).propose(f"x{i}".encode())
        net.tick(1)
    net.duplicate = net.reorder = False
    net.tick(20)
    datas = [net.applied_data(n) for n in net.nodes]
    assert all(d == datas[0] for d in datas)
    assert len(datas[0]) >= 30
    net.check_safety()


def test_delayed_old_append_does_not_truncate() -> None:
    """raftos#26: an old append delivered late must not cut entries it does not mention."""
    core = new_core(disk=Disk(HardState(2)))
    e = [Entry(2, i, data=f"d{i}".encode()) for i in range(1, 6)]
    late = AppendEntries(2, 2, 1, 0, 0, tuple(e[:2]), 0)
    core.step(AppendEntries(2, 2, 1, 0, 0, tuple(e), 4))
    drain(core)
    core.step(late)
    out = drain(core)
    assert out.entries == []
    assert core.status().last_index == 5 and core.status().commit == 4


def test_append_conflicting_with_committed_is_dropped() -> None:
    """Bad peer input never rewrites committed entries, and never raises."""
    core = new_core(disk=Disk(HardState(2, 0, 2), entries_of(1, 2, 2)))
    core.step(AppendEntries(3, 2, 1, 1, 1, (Entry(3, 2),), 0))
    assert core.log.term(2) == 2
    (r,) = drain(core).of(AppendEntriesResponse)
    assert r.success and r.match_index == 2  # "I already hold up to my commit index"


def test_stale_responses_are_ignored() -> None:
    """An old rejection or ack arriving after newer progress changes nothing."""
    net = Network((1, 2, 3))
    net.elect(1)
    for i in range(3):
        net.propose(1, f"s{i}".encode())
    before = progress_of(net, 1, 2)
    term = net.core(1).term
    net.core(1).step(AppendEntriesResponse(term, 2, 1, False, 0, 1, 1, 1))
    net.core(1).step(AppendEntriesResponse(term, 2, 1, True, 1))
    assert progress_of(net, 1, 2) == before


def test_invalid_messages_are_dropped_and_counted() -> None:
    """Never raise on peer input: misdirected, unknown-sender and malformed messages drop."""
    core = new_core()
    core.step(AppendEntries(1, 2, 9, 0, 0, (), 0))  # not for us
    core.step(AppendEntriesResponse(1, 7, 1, True, 1))  # an answer from a non-member
    core.step(AppendEntries(1, 2, 1, 0, 0, (Entry(1, 5),), 0))  # gap in batch
    core.step(AppendEntries(1, 2, 1, -1, 0, (), 0))  # negative index
    core.step(AppendEntriesResponse(1, 2, 1, True, 10**9))  # not leader: unexpected
    st = core.stats()
    assert st.dropped_wrong_dst == 1 and st.dropped_unknown_sender == 1
    assert st.dropped_invalid == 2
    assert st.messages_dropped == 5


def test_heartbeat_commit_is_capped_by_follower_match() -> None:
    """Commit reaches followers by appends and heartbeats; a heartbeat never announces a
    commit index beyond what that follower is known to hold (min(match, commit))."""
    from hzp2p.raft.messages import Heartbeat

    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"a")
    net.sent.clear()
    net.tick(1, nodes=[1])
    beats = {m.dst: m.commit for m in net.sent if isinstance(m, Heartbeat)}
    commit = net.core(1).status().commit
    match3 = progress_of(net, 1, 3)[0]
    assert beats == {2: commit, 3: min(match3, commit)}
    assert match3 < commit
