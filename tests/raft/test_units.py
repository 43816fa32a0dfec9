"""Unit tests of the core's building blocks, and a property test that peer input never
makes the core raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.raft.log import RaftLog
from hzp2p.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from hzp2p.raft.progress import Inflights, Progress, ProgressState
from hzp2p.raft.quorum import VoteResult, committed_index, has_quorum, vote_result
from hzp2p.raft.read_only import ReadOnly
from hzp2p.raft.types import ConfState, Entry, Role, SnapshotMeta
from raft.network import drain, entries_of, new_core


def test_inflights_bounded_and_freed_in_order() -> None:
    inf = Inflights(3)
    for i in (5, 7, 9):
        inf.add(i)
    assert inf.full()
    inf.free_le(7)
    assert len(inf) == 1 and not inf.full()
    inf.free_first_one()
    assert len(inf) == 0


def test_progress_probe_backoff_is_clamped_and_ignores_stale() -> None:
    pr = Progress(11, 4, is_learner=False)
    pr.match = 3
    assert not pr.maybe_decr_to(5, 1)  # not a reply to our probe (next-1 = 10)
    assert pr.maybe_decr_to(10, 1)
    assert pr.next == 4  # never at or below match
    pr.become_replicate()
    pr.sent_entries(8)
    assert pr.next == 9 and len(pr.inflights) == 1
    assert not pr.maybe_decr_to(3, 1)  # rejection at or below match is stale
    assert pr.maybe_update(8) and pr.match == 8
    assert pr.state is ProgressState.REPLICATE


def test_quorum_math() -> None:
    voters = {1, 2, 3, 4, 5}
    assert committed_index(voters, {1: 9, 2: 7, 3: 5, 4: 1, 5: 0, 6: 100}) == 5
    assert vote_result(voters, {1: True, 2: True, 3: True}) is VoteResult.WON
    assert vote_result(voters, {1: True, 2: False, 3: False, 4: False}) is VoteResult.LOST
    assert vote_result(voters, {1: True, 9: True, 8: True}) is VoteResult.PENDING
    assert has_quorum({1, 2, 3}, {1, 3}) and not has_quorum({1, 2, 3}, {1, 7})


def test_read_only_releases_in_order() -> None:
    ro = ReadOnly(4)
    ro.add(5, b"a", 1)
    ro.add(6, b"b", 1)
    assert ro.recv_ack(2, b"b") == {1, 2}
    assert [r.context for r in ro.advance(b"b")] == [b"a", b"b"]
    assert len(ro) == 0 and ro.recv_ack(2, b"zzz") is None


def test_log_terms_conflicts_and_marks() -> None:
    log = RaftLog(SnapshotMeta(2, 1, ConfState()), entries_of(1, 1, 2, 2, 3), 3, 2)
    assert (log.first_index(), log.last_index(), log.term(2), log.term(1)) == (3, 5, 1, None)
    assert log.find_conflict([Entry(2, 3), Entry(2, 4), Entry(4, 5)]) == 5
    assert log.first_index_of_term_at(4) == 3
    assert log.last_index_of_term_at_or_below(2, 5) == 4
    log.handed_out = log.persisted = 5
    log.truncate_and_append([Entry(4, 5)])
    assert log.persisted == 4 and log.handed_out == 4
    assert log.unstable_entries() == [Entry(4, 5)]
    assert log.is_up_to_date(4, 5) and not log.is_up_to_date(3, 9)


nat = st.integers(min_value=-1, max_value=12)
small = st.integers(min_value=0, max_value=4)
entry = st.builds(Entry, term=nat, index=nat, data=st.binary(max_size=4))
conf = ConfState(frozenset({1, 2, 3}))
meta = st.builds(SnapshotMeta, index=nat, term=nat, conf=st.just(conf))
message: st.SearchStrategy[Message] = st.one_of(
    st.builds(RequestVote, nat, small, small, nat, nat, st.booleans(), st.booleans()),
    st.builds(RequestVoteResponse, nat, small, small, st.booleans(), st.booleans()),
    st.builds(
        AppendEntries, nat, small, small, nat, nat, st.lists(entry, max_size=3).map(tuple), nat
    ),
    st.builds(AppendEntriesResponse, nat, small, small, st.booleans(), nat, nat, nat, nat),
    st.builds(Heartbeat, nat, small, small, nat, st.binary(max_size=2)),
    st.builds(HeartbeatResponse, nat, small, small, st.binary(max_size=2)),
    st.builds(TimeoutNow, nat, small, small),
    st.builds(InstallSnapshot, nat, small, small, meta, nat, st.binary(max_size=3), st.booleans()),
    st.builds(InstallSnapshotResponse, nat, small, small, nat, nat, nat, st.booleans()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(message, max_size=30), st.sampled_from(["follower", "candidate", "leader"]))
def test_peer_input_never_raises(msgs: list[Message], role: str) -> None:
    """Whatever arrives from peers, the core drops what it cannot use, never raises, and
    keeps its own invariants (the asserts inside the core and the ones below)."""
    core = new_core(voters=(1, 2, 3), pre_vote=False, check_quorum=False)
    if role != "follower":
        while core.role is not Role.CANDIDATE:
            core.tick()
    if role == "leader":
        core.step(RequestVoteResponse(core.term, 2, 1, granted=True))
        core.propose(b"x")
    drain(core)
    for i, m in enumerate(msgs):
        core.step(m)
        if i % 3 == 0:
            core.tick()
        drain(core)
        s = core.status()
        assert s.applied <= s.commit <= s.last_index
        assert s.persisted_index <= s.last_index
