"""Elections beyond the paper's basics: pre-vote (thesis §9.6), check-quorum, leader
stickiness, and the corner cases other systems shipped bugs in."""

from __future__ import annotations

import pytest

from hzp2p.raft.core import RaftCore
from hzp2p.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    RequestVote,
    RequestVoteResponse,
)
from hzp2p.raft.types import HardState, Role
from raft.network import Disk, Network, drain, entries_of, new_core


def heard_from_leader(core: RaftCore, leader: int = 2) -> None:
    core.step(Heartbeat(core.term or 1, leader, core.node_id, 0))
    drain(core)


def test_pre_candidate_does_not_bump_term() -> None:
    """Thesis §9.6: a pre-candidate asks whether it *could* win before it increments its
    term; an isolated node therefore keeps its term however long it is cut off."""
    net = Network((1, 2, 3))
    net.elect(1)
    term = net.core(3).term
    net.isolate(3)
    net.tick(100)
    assert net.core(3).term == term
    assert net.nodes[3].disk.hard_state.term == term
    assert net.core(3).stats().pre_campaigns > 3
    assert net.core(3).stats().campaigns == 0


def test_pre_vote_granted_only_with_up_to_date_log_and_no_live_leader() -> None:
    """Thesis §9.6: grant a pre-vote iff the candidate's log is up to date and we have not
    heard from a leader within the election timeout; a grant echoes the request's term."""
    core = new_core(disk=Disk(HardState(2), entries_of(1, 2)), check_quorum=False)
    core.step(RequestVote(3, 2, 1, 2, 2, pre_vote=True))
    core.step(RequestVote(3, 3, 1, 1, 1, pre_vote=True))  # log behind
    (ok, behind) = drain(core).of(RequestVoteResponse)
    assert ok.granted and ok.pre_vote and ok.term == 3
    assert not behind.granted and behind.term == 2
    heard_from_leader(core)
    core.step(RequestVote(3, 3, 1, 2, 2, pre_vote=True))
    (live,) = drain(core).of(RequestVoteResponse)
    assert not live.granted
    assert core.term == 2 and core.status().vote == 0  # pre-votes change nothing durable


def test_higher_term_pre_vote_does_not_bump_term() -> None:
    """A pre-vote request carries the term the sender would campaign in; it must not move
    the receiver's term (only a real vote or a leader's message does)."""
    core = new_core(disk=Disk(HardState(2)))
    core.step(RequestVote(9, 2, 1, 0, 0, pre_vote=True))
    drain(core)
    assert core.term == 2


def test_leader_lease_ignores_disruptive_vote_requests() -> None:
    """Check-quorum stickiness (etcd#9333): a node that heard from a live leader within the
    minimum election timeout ignores (pre-)vote requests, unless it is a leader transfer."""
    core = new_core(disk=Disk(HardState(2)))
    heard_from_leader(core)
    core.step(RequestVote(5, 3, 1, 0, 0))
    core.step(RequestVote(5, 3, 1, 0, 0, pre_vote=True))
    out = drain(core)
    assert out.of(RequestVoteResponse) == []
    assert core.term == 2 and core.leader_id == 2
    assert core.stats().dropped_in_lease == 2
    core.step(RequestVote(5, 3, 1, 0, 0, transfer=True))
    (resp,) = drain(core).of(RequestVoteResponse)
    assert resp.granted and core.term == 5


def test_granting_votes_never_refreshes_leader_contact() -> None:
    """hashicorp/raft#609: granting a (pre-)vote is not hearing from a leader. A node
    showered with pre-vote requests still times out and campaigns itself."""
    core = new_core(voters=(1, 2, 3), check_quorum=False, election_ticks=10)
    campaigned = False
    for _ in range(40):
        core.step(RequestVote(core.term + 1, 3, 1, 0, 0, pre_vote=True))
        core.tick()
        drain(core)
        if core.role is not Role.FOLLOWER:
            campaigned = True
            break
    assert campaigned
    # and a granted pre-vote does not stop a later one from another node
    core2 = new_core(voters=(1, 2, 3), check_quorum=False)
    core2.step(RequestVote(1, 2, 1, 0, 0, pre_vote=True))
    core2.step(RequestVote(1, 3, 1, 0, 0, pre_vote=True))
    assert [m.granted for m in drain(core2).of(RequestVoteResponse)] == [True, True]


def test_rejected_pre_vote_from_higher_term_moves_pre_candidate_to_that_term() -> None:
    """etcd#8243: a voter answers a lower-term pre-vote with its own term; the
    pre-candidate then adopts that term, so its next pre-vote can succeed."""
    core = new_core(disk=Disk(HardState(1), entries_of(1, 1, 1)))
    while core.role is not Role.PRE_CANDIDATE:
        core.tick()
    drain(core)
    core.step(RequestVoteResponse(4, 2, 1, granted=False, pre_vote=True))
    assert core.role is Role.FOLLOWER and core.term == 4


def test_lower_term_pre_vote_is_answered_with_our_term() -> None:
    """The voter side of etcd#8243: a pre-vote whose term is below ours gets a rejection
    carrying our term instead of silence."""
    core = new_core(disk=Disk(HardState(5)))
    core.step(RequestVote(3, 2, 1, 9, 3, pre_vote=True))
    (resp,) = drain(core).of(RequestVoteResponse)
    assert not resp.granted and resp.term == 5 and resp.pre_vote


def test_node_with_smaller_term_but_longer_log_completes_election() -> None:
    """etcd#8243/#10355: node 2 has the highest term but a short log, nodes 1 and 3 hold
    the longest log at a lower term. Pre-vote must not stall: a leader emerges and it is
    one of the nodes with the complete log."""
    disks = {
        1: Disk(HardState(1), entries_of(1, 1, 1)),
        2: Disk(HardState(3), entries_of(1)),
        3: Disk(HardState(1), entries_of(1, 1, 1)),
    }
    net = Network((1, 2, 3), disks=disks, seed=5)
    net.run_until(lambda: net.leader() is not None, max_ticks=300)
    assert net.leader() in (1, 3)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"after")
    net.tick(3)
    assert all(net.applied_data(n)[-1] == b"after" for n in (1, 2, 3))


def test_partitioned_node_rejoining_does_not_disrupt_leader() -> None:
    """etcd#9333 with pre-vote on: a node cut off for many election timeouts keeps
    pre-campaigning but never raises its term, so on rejoining it does not depose a healthy
    leader; it just catches up."""
    net = Network((1, 2, 3), seed=2)
    net.elect(1)
    term = net.core(1).term
    net.isolate(3)
    net.tick(80)
    net.propose(1, b"while-away")
    net.heal()
    net.tick(30)
    assert net.leader() == 1 and net.core(1).term == term
    assert net.applied_data(3) == [b"while-away"]


def test_rejoining_node_with_really_higher_term_converges() -> None:
    """A node that comes back with a higher term (say it ran without pre-vote) cannot
    lower its term: the cluster moves to its term with one election and converges, and
    it cannot win that election with its stale log."""
    net = Network((1, 2, 3), seed=4)
    net.elect(1)
    net.propose(1, b"a")
    net.crash(3)
    net.propose(1, b"b")
    hs = net.nodes[3].disk.hard_state
    net.nodes[3].disk.hard_state = HardState(net.core(1).term + 5, 0, hs.commit)
    net.start(3)
    net.run_until(
        lambda: net.leader() is not None and net.core(net.leader() or 1).term >= net.core(3).term,
        max_ticks=300,
    )
    assert net.leader() in (1, 2)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"c")
    net.tick(3)
    for n in (1, 2, 3):
        assert net.applied_data(n) == [b"a", b"b", b"c"]


def test_pre_vote_lets_a_real_election_through_after_leader_dies() -> None:
    """Pre-vote must not block a needed election: once the leader is gone and the lease
    runs out, the others elect a new leader and keep committing."""
    net = Network((1, 2, 3, 4, 5), seed=9)
    net.elect(1)
    net.propose(1, b"a")
    net.crash(1)
    net.run_until(lambda: net.leader() is not None, max_ticks=100)
    lead = net.leader()
    assert lead is not None and lead != 1
    net.propose(lead, b"b")
    net.tick(2)
    for n in (2, 3, 4, 5):
        assert net.applied_data(n) == [b"a", b"b"]


def test_check_quorum_leader_steps_down_when_cut_off() -> None:
    """Check-quorum: "a leader that has not heard from a quorum of voters within an election
    timeout steps down"; a follower counts as active only when it responded."""
    net = Network((1, 2, 3), election_ticks=10)
    net.elect(1)
    net.cut(2, 1, one_way=True)  # 1 still reaches everyone, but hears nobody
    net.cut(3, 1, one_way=True)
    net.tick(21, nodes=[1])
    assert net.core(1).role is Role.FOLLOWER
    assert net.core(1).stats().check_quorum_step_downs == 1


def test_check_quorum_keeps_leader_with_quorum() -> None:
    """With one follower of two answering, the leader of three still has a quorum."""
    net = Network((1, 2, 3))
    net.elect(1)
    net.isolate(3)
    net.tick(50, nodes=[1, 2])
    assert net.core(1).role is Role.LEADER


def test_leader_with_stalled_disk_steps_down() -> None:
    """hashicorp/raft#683: a leader whose driver never finishes a write stops sending and
    stops counting itself; it steps down and the others elect a new leader."""
    net = Network((1, 2, 3), seed=1)
    net.elect(1)
    net.stall_disk(1)
    net.core(1).propose(b"never-durable-here")
    net.run_until(lambda: net.core(1).role is not Role.LEADER, max_ticks=60)
    net.run_until(lambda: net.leader() in (2, 3), max_ticks=100)


def test_stale_leader_learns_newer_term_from_append_response() -> None:
    """A deposed leader's appends are answered with the newer term so it steps down."""
    core = new_core(disk=Disk(HardState(5)))
    core.step(AppendEntries(3, 2, 1, 0, 0, (), 0))
    (resp,) = drain(core).of(AppendEntriesResponse)
    assert resp.term == 5 and not resp.success and resp.reject_index == 0


@pytest.mark.parametrize("pre_vote", [True, False])
def test_no_two_leaders_in_a_term_under_flapping_link(pre_vote: bool) -> None:
    """A link that flaps every few ticks: elections may happen, but never two leaders in
    one term (checked by the harness), and every node converges once it stops."""
    net = Network((1, 2, 3), seed=11, pre_vote=pre_vote)
    net.elect(1)
    for i in range(30):
        if i % 2 == 0:
            net.cut(1, 2)
        else:
            net.heal()
        net.tick(7)
        lead = net.leader()
        if lead is not None:
            net.core(lead).propose(f"p{i}".encode())
    net.heal()
    net.tick(40)
    lead = net.leader()
    assert lead is not None
    assert net.applied_data(1) == net.applied_data(2) == net.applied_data(3)
    net.check_safety()


class VotesBlindly(RaftCore):
    """A broken core that grants votes without the §5.4.1 up-to-date check."""

    def _is_log_up_to_date(self, last_log_term: int, last_log_index: int) -> bool:
        return True


def stale_candidate_scenario(core_cls: type[RaftCore]) -> Network:
    net = Network((1, 2, 3), core_cls=core_cls, seed=1)
    net.elect(1)
    net.cut(1, 3)
    net.propose(1, b"committed")
    net.tick(1, nodes=[1])
    assert net.applied_data(1) == [b"committed"]
    net.crash(1)
    net.heal()
    net.tick(25, nodes=[2])  # let 2's lease expire without letting it campaign first
    net.elect(3)
    net.tick(3)
    return net


def test_election_restriction_protects_committed_entries() -> None:
    """§5.4.1: "the voter denies its vote if its own log is more up-to-date than that of
    the candidate" -- so 3, which missed a committed entry, cannot win."""
    net = Network((1, 2, 3), seed=1)
    net.elect(1)
    net.cut(1, 3)
    net.propose(1, b"committed")
    net.crash(1)
    net.heal()
    net.tick(60, nodes=[3])
    assert net.core(3).role is not Role.LEADER


def test_broken_vote_check_loses_a_committed_entry() -> None:
    """With the up-to-date check planted out, 3 wins and overwrites the committed entry;
    the harness sees two different entries applied at one index."""
    with pytest.raises(AssertionError, match="but another node applied"):
        net = stale_candidate_scenario(VotesBlindly)
        net.propose(3, b"overwrite")
        net.start(1)
        net.tick(10)


def test_etcd_8243_isolated_low_term_node_and_leader_crash() -> None:
    """etcd#8243: C (3) was cut off and kept a low term while A (1) and B (2) moved to a
    higher one; B, the leader, crashes just as C comes back. A and C must still elect."""
    net = Network((1, 2, 3), seed=8)
    net.elect(1)
    net.isolate(3)
    for target in (2, 1, 2):  # leader transfers raise A's and B's terms
        lead = net.leader()
        assert lead is not None
        net.core(lead).transfer_leadership(target)
        net.deliver()
    assert net.leader() == 2 and net.core(3).term < net.core(1).term
    net.crash(2)
    net.heal()
    net.run_until(lambda: net.leader() in (1, 3), max_ticks=200)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"ok")
    net.tick(3)
    assert net.applied_data(1)[-1:] == net.applied_data(3)[-1:] == [b"ok"]
