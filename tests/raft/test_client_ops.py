"""The client-facing calls: bounds on proposals, leader transfer, ReadIndex, membership."""

from __future__ import annotations

import pytest

from hzp2p.raft.errors import ConfChangeInProgress, NotLeader, ProposalDropped
from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.messages import (
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from hzp2p.raft.types import ConfState, ReadState, Role
from raft.network import Network, drain, new_core

# ---------------------------------------------------------------- proposals


def test_follower_refuses_proposals_naming_the_leader() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    with pytest.raises(NotLeader) as exc:
        net.core(2).propose(b"x")
    assert exc.value.leader_id == 1
    with pytest.raises(NotLeader):
        net.core(2).read_index(b"r")


def test_uncommitted_bytes_bound() -> None:
    """etcd PR #10167: a leader without a quorum stops accepting proposals past
    max_uncommitted_bytes, and accepts again as entries commit."""
    net = Network((1, 2, 3), max_uncommitted_bytes=1000)
    net.elect(1)
    net.cut(1, 2)
    net.cut(1, 3)
    accepted = 0
    with pytest.raises(ProposalDropped, match="max_uncommitted_bytes"):
        for _ in range(100):
            net.core(1).propose(bytes(84))  # 100 bytes each with overhead
            accepted += 1
    assert accepted == 10
    net.heal()
    net.tick(2)
    assert len(net.applied_data(2)) == 10
    net.propose(1, bytes(84))  # room again once committed


# ---------------------------------------------------------------- leader transfer


def test_leader_transfer_catches_up_target_then_hands_over() -> None:
    """Thesis §3.10: the leader brings the target up to date, sends TimeoutNow, and the
    target wins at once even though the others are within their leader lease."""
    net = Network((1, 2, 3))
    net.elect(1)
    net.cut(1, 3)
    net.propose(1, b"a")
    net.heal()
    net.core(1).transfer_leadership(3)
    with pytest.raises(ProposalDropped, match="transfer"):
        net.core(1).propose(b"b")
    net.deliver()
    assert any(isinstance(m, TimeoutNow) and m.dst == 3 for m in net.sent)
    assert net.leader() == 3
    assert net.core(1).role is Role.FOLLOWER
    net.propose(3, b"c")
    net.tick(2)
    assert net.applied_data(1) == [b"a", b"c"]


def test_leader_transfer_aborts_after_election_timeout() -> None:
    net = Network((1, 2, 3), election_ticks=10)
    net.elect(1)
    net.isolate(3)
    net.core(1).transfer_leadership(3)
    net.tick(10, nodes=[1, 2])
    assert net.core(1).role is Role.LEADER
    assert net.core(1).status().lead_transferee == 0
    assert net.core(1).stats().transfers_aborted == 1
    net.propose(1, b"accepted-again")


def test_transfer_argument_checks() -> None:
    net = Network((1, 2, 3), learners=(4,))
    net.elect(1)
    with pytest.raises(ValueError):
        net.core(1).transfer_leadership(1)
    with pytest.raises(ValueError):
        net.core(1).transfer_leadership(4)  # a learner cannot lead
    with pytest.raises(NotLeader):
        net.core(2).transfer_leadership(3)


# ---------------------------------------------------------------- ReadIndex


def test_read_index_confirms_leadership_with_a_heartbeat_round() -> None:
    """Thesis §6.4: record the commit index, confirm leadership by a quorum of heartbeat
    acknowledgements carrying the read's context, then release the read."""
    net = Network((1, 2, 3))
    net.elect(1)
    net.propose(1, b"a")
    commit = net.core(1).status().commit
    net.sent.clear()
    net.core(1).read_index(b"ctx-1")
    net.deliver()
    assert any(isinstance(m, Heartbeat) and m.context == b"ctx-1" for m in net.sent)
    assert net.nodes[1].read_states == [ReadState(commit, b"ctx-1")]


def test_read_index_needs_a_quorum() -> None:
    """A leader cut off from its followers serves no read (Jepsen etcd#741)."""
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(1)
    net.core(1).read_index(b"stale?")
    net.tick(3, nodes=[1])
    assert net.nodes[1].read_states == []


def test_new_leader_serves_no_read_before_own_term_commit() -> None:
    """Thesis §6.4: a new leader first commits an entry of its own term (its no-op); reads
    that arrive earlier wait for it."""
    core = new_core(voters=(1, 2, 3), pre_vote=False)
    while core.role is not Role.CANDIDATE:
        core.tick()

    core.step(RequestVoteResponse(core.term, 2, 1, granted=True))
    assert core.role is Role.LEADER
    core.read_index(b"early")
    out = drain(core)
    assert out.read_states == []
    assert not any(isinstance(m, Heartbeat) and m.context for m in out.all_messages())
    noop_index = core.status().last_index
    core.step(AppendEntriesResponse(core.term, 2, 1, success=True, match_index=noop_index))
    out = drain(core)
    hb = next(m for m in out.of(Heartbeat) if m.context == b"early")
    core.step(HeartbeatResponse(core.term, hb.dst, 1, b"early"))
    assert drain(core).read_states == [ReadState(noop_index, b"early")]


def test_single_voter_answers_reads_at_once() -> None:
    net = Network((1,), learners=(2,))
    net.elect(1)
    net.tick(1)
    net.core(1).read_index(b"solo")
    net.deliver()
    assert net.nodes[1].read_states == [ReadState(net.core(1).status().commit, b"solo")]


def test_pending_reads_are_bounded() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(1)
    with pytest.raises(ProposalDropped, match="reads already pending"):
        for i in range(5000):
            net.core(1).read_index(i.to_bytes(4, "big"))


# ---------------------------------------------------------------- membership


def test_learners_replicate_but_never_vote_or_campaign() -> None:
    """Learners get the log but count toward no quorum and never campaign."""
    net = Network((1, 2), learners=(3,))
    net.elect(1)
    net.propose(1, b"a")
    assert net.applied_data(3) == [b"a"]
    assert net.core(3).role is Role.LEARNER
    net.crash(2)
    net.tick(100)
    assert net.leader() is None  # 1 lost its quorum; 3 is no substitute for 2
    assert net.core(3).stats().pre_campaigns == 0 and net.core(3).stats().campaigns == 0
    assert not any(isinstance(m, RequestVote) and m.dst == 3 for m in net.sent)


def test_one_conf_change_at_a_time() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    core = net.core(1)
    core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
    with pytest.raises(ConfChangeInProgress):
        core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 5))
    net.deliver()
    net.tick(1)
    assert net.core(2).conf == ConfState(frozenset({1, 2, 3}), frozenset({4}))
    core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 5))
    with pytest.raises(ValueError):
        net.deliver()
        core.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, 9))


def test_new_leader_treats_unapplied_conf_change_as_pending() -> None:
    """No conf change until everything up to the new leader's no-op is applied (covers an
    inherited, unapplied CONF_CHANGE and the single-server-change safety rule)."""
    core = new_core(voters=(1,))
    while core.role is not Role.LEADER:
        core.tick()
    with pytest.raises(ConfChangeInProgress):
        core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 2))
    drain(core)
    core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 2))


def test_add_learner_promote_and_remove_the_leader() -> None:
    net = Network((1, 2, 3), seed=6)
    net.elect(1)
    net.propose(1, b"before")
    net.core(1).propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
    net.deliver()
    net.add_node(4, ConfState(frozenset({1, 2, 3}), frozenset({4})))
    net.tick(3)
    assert net.applied_data(4) == [b"before"]
    net.core(1).propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, 4))
    net.tick(3)
    assert net.core(4).conf.voters == {1, 2, 3, 4}
    net.core(1).propose_conf_change(ConfChange(ConfChangeKind.REMOVE, 1))
    net.tick(3)
    assert net.core(1).role is not Role.LEADER  # a removed leader steps down
    removed_campaigns = net.core(1).stats().pre_campaigns + net.core(1).stats().campaigns
    net.run_until(lambda: net.leader() in (2, 3, 4), max_ticks=100)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"after")
    net.tick(40)
    assert net.applied_data(4) == [b"before", b"after"]
    st = net.core(1).stats()
    assert st.pre_campaigns + st.campaigns == removed_campaigns  # a removed node stays quiet
    net.check_safety()


def test_removed_voter_shrinks_quorum() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    net.crash(3)
    net.core(1).propose_conf_change(ConfChange(ConfChangeKind.REMOVE, 3))
    net.tick(2)
    assert net.core(1).conf.voters == {1, 2}
    net.crash(2)
    net.core(1).propose(b"needs-2")
    net.tick(2)
    assert net.core(1).status().commit < net.core(1).status().last_index
    net.start(2)
    net.tick(3)
    assert net.applied_data(2) == [b"needs-2"]


def test_node_that_missed_a_conf_change_accepts_the_leader_it_admitted() -> None:
    """docs/sim-findings.md #1: node 3 misses the changes that admit and promote node 5,
    then 5 becomes leader. 3 must accept 5's appends (not drop them as from an unknown
    sender), or it never learns the configuration that names 5."""
    net = Network((1, 2, 3), seed=5)
    net.elect(1)
    net.isolate(3)
    net.core(1).propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 5))
    net.tick(2)
    net.add_node(5, ConfState(frozenset({1, 2, 3}), frozenset({5})))
    net.isolate(3)  # again, now that 5 exists
    net.tick(3)
    net.core(1).propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, 5))
    net.tick(3)
    net.core(1).transfer_leadership(5)
    net.deliver()
    assert net.leader() == 5
    assert 5 not in net.core(3).conf.members
    net.heal()
    net.propose(5, b"from-5")
    net.tick(5)
    assert net.applied_data(3)[-1] == b"from-5"
    assert net.core(3).conf.voters == {1, 2, 3, 5}
    assert net.core(3).stats().dropped_unknown_sender == 0
