"""The Raft paper's rules (Figure 2, §5.1-5.4), one rule per test, quoted in the docstring.

Most tests drive a lone core with hand-made messages; pre-vote and
check-quorum are switched off where the paper's plain rule is under test.
"""

from __future__ import annotations

from hzp2p.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    RequestVote,
    RequestVoteResponse,
)
from hzp2p.raft.types import Entry, EntryKind, HardState, Role
from raft.network import Disk, Network, drain, entries_of, new_core

PLAIN = {"pre_vote": False, "check_quorum": False}


def make_leader(**config: object) -> tuple[Network, int]:
    net = Network((1, 2, 3), **config)
    net.elect(1)
    return net, 1


def test_higher_term_converts_to_follower() -> None:
    """Figure 2, all servers: "If RPC request or response contains term T > currentTerm:
    set currentTerm = T, convert to follower (§5.1)"."""
    net, lead = make_leader(**PLAIN)
    core = net.core(lead)
    term = core.term
    core.step(AppendEntriesResponse(term + 3, 2, 1, success=False, reject_index=1))
    assert core.role is Role.FOLLOWER
    assert core.term == term + 3


def test_apply_committed_entries_in_order() -> None:
    """Figure 2, all servers: "If commitIndex > lastApplied: increment lastApplied,
    apply log[lastApplied] to state machine (§5.3)"."""
    net, lead = make_leader()
    for i in range(5):
        net.core(lead).propose(f"c{i}".encode())
    net.deliver()
    net.tick(2)
    for nid in net.nodes:
        applied = net.nodes[nid].disk.applied
        assert [e.index for e in applied] == list(range(1, len(applied) + 1))
        assert net.applied_data(nid) == [f"c{i}".encode() for i in range(5)]


def test_follower_times_out_into_candidate() -> None:
    """Figure 2, followers: "If election timeout elapses without receiving AppendEntries
    RPC from current leader or granting vote to candidate: convert to candidate"; §5.2:
    "election timeouts are chosen randomly from a fixed interval"."""
    for seed in range(20):
        core = new_core(seed=seed, election_ticks=10, **PLAIN)
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
        assert core.role is Role.CANDIDATE
        assert 10 <= ticks < 20


def test_candidate_starts_election() -> None:
    """Figure 2, candidates: "On conversion to candidate, start election: increment
    currentTerm, vote for self, reset election timer, send RequestVote RPCs to all other
    servers"."""
    core = new_core(disk=Disk(HardState(term=4), entries_of(1, 4)), **PLAIN)
    for _ in range(20):
        core.tick()
        if core.role is Role.CANDIDATE:
            break
    out = drain(core)
    assert core.term == 5 and core.status().vote == 1
    votes = out.of(RequestVote)
    assert sorted(m.dst for m in votes) == [2, 3]
    assert all(m.term == 5 and m.last_log_index == 2 and m.last_log_term == 4 for m in votes)
    # they leave only after the vote for self is durable
    assert all(m in out.persisted_messages for m in votes)
    assert out.hard_states[-1] == HardState(5, 1, 0)


def test_majority_of_votes_makes_leader() -> None:
    """Figure 2, candidates: "If votes received from majority of servers: become leader"."""
    core = new_core(voters=(1, 2, 3, 4, 5), **PLAIN)
    while core.role is not Role.CANDIDATE:
        core.tick()
    drain(core)
    core.step(RequestVoteResponse(1, 2, 1, granted=True))
    assert core.role is Role.CANDIDATE
    core.step(RequestVoteResponse(1, 3, 1, granted=False))
    core.step(RequestVoteResponse(1, 4, 1, granted=True))
    assert core.role is Role.LEADER


def test_candidate_steps_down_for_new_leader() -> None:
    """Figure 2, candidates: "If AppendEntries RPC received from new leader: convert to
    follower"."""
    core = new_core(**PLAIN)
    while core.role is not Role.CANDIDATE:
        core.tick()
    core.step(AppendEntries(core.term, 2, 1, 0, 0, (), 0))
    assert core.role is Role.FOLLOWER and core.leader_id == 2


def test_candidate_restarts_election_on_timeout() -> None:
    """Figure 2, candidates: "If election timeout elapses: start new election"."""
    core = new_core(**PLAIN)
    while core.role is not Role.CANDIDATE:
        core.tick()
    term = core.term
    for _ in range(20):
        core.tick()
    assert core.role is Role.CANDIDATE and core.term > term


def test_leader_sends_initial_appends_and_heartbeats() -> None:
    """Figure 2, leaders: "Upon election: send initial empty AppendEntries RPCs (heartbeat)
    to each server; repeat during idle periods to prevent election timeouts (§5.2)"."""
    core = new_core(voters=(1, 2), **PLAIN)
    while core.role is not Role.CANDIDATE:
        core.tick()
    core.step(RequestVoteResponse(core.term, 2, 1, granted=True))
    out = drain(core)
    assert [m.dst for m in out.of(AppendEntries)] == [2]
    core.tick()
    out = drain(core)
    assert [m.dst for m in out.of(Heartbeat)] == [2]
    assert all(m in out.messages for m in out.of(Heartbeat))


def test_leader_appends_command_and_replicates() -> None:
    """Figure 2, leaders: "If command received from client: append entry to local log,
    respond after entry applied to state machine (§5.3)" and "If last log index >= nextIndex
    for a follower: send AppendEntries RPC with log entries starting at nextIndex"."""
    net, lead = make_leader()
    core = net.core(lead)
    index = core.propose(b"cmd")
    rd = core.ready()
    assert rd.entries[-1] == Entry(core.term, index, EntryKind.NORMAL, b"cmd")
    sent = [m for m in rd.messages if isinstance(m, AppendEntries)]
    assert {m.dst for m in sent} == {2, 3}
    assert all(m.entries[-1].index == index for m in sent)
    assert not rd.committed_entries or rd.committed_entries[-1].index < index
    disk = net.nodes[lead].disk
    disk.write(rd.entries)
    disk.hard_state = rd.hard_state or disk.hard_state
    disk.applied.extend(rd.committed_entries)
    core.advance(rd)
    net.queue.extend(rd.messages)
    net.deliver()
    assert net.applied_data(lead) == [b"cmd"]


def test_success_updates_match_and_next() -> None:
    """Figure 2, leaders: "If successful: update nextIndex and matchIndex for follower
    (§5.3)"."""
    net, lead = make_leader()
    net.propose(lead, b"a")
    peers = {p.node_id: p for p in net.core(lead).status().progress}
    last = net.core(lead).status().last_index
    assert peers[2].match == last and peers[2].next == last + 1


def test_rejection_decrements_next_and_retries() -> None:
    """Figure 2, leaders: "If AppendEntries fails because of log inconsistency: decrement
    nextIndex and retry (§5.3)"."""
    # Follower 2 holds a stale suffix of term 2; leader 1 has term-3 entries there.
    disks = {
        1: Disk(HardState(3), entries_of(1, 1, 3, 3)),
        2: Disk(HardState(2), entries_of(1, 1, 2, 2, 2, 2)),
        3: Disk(HardState(3), entries_of(1, 1, 3, 3)),
    }
    net = Network((1, 2, 3), disks=disks)
    net.elect(1)
    net.tick(2)
    assert net.nodes[2].disk.entries[:4] == net.nodes[1].disk.entries[:4]
    assert len(net.nodes[2].disk.entries) == len(net.nodes[1].disk.entries)
    net.check_safety()


def test_commit_rule_requires_majority_and_current_term() -> None:
    """Figure 2, leaders: "If there exists an N such that N > commitIndex, a majority of
    matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N"."""
    net, lead = make_leader()
    net.cut(1, 2)
    net.cut(1, 3)
    index = net.core(lead).propose(b"x")
    net.deliver()
    assert net.core(lead).status().commit < index  # only the leader holds it
    net.heal()
    net.tick(1)
    assert net.core(lead).status().commit == index


def test_append_rejected_for_stale_term() -> None:
    """AppendEntries receiver 1: "Reply false if term < currentTerm (§5.1)"."""
    core = new_core(disk=Disk(HardState(5)))
    core.step(AppendEntries(4, 2, 1, 0, 0, (Entry(4, 1),), 0))
    out = drain(core)
    (resp,) = out.of(AppendEntriesResponse)
    assert not resp.success and resp.term == 5
    assert core.status().last_index == 0


def test_append_rejected_without_matching_prev() -> None:
    """AppendEntries receiver 2: "Reply false if log doesn't contain an entry at
    prevLogIndex whose term matches prevLogTerm (§5.3)"."""
    core = new_core(disk=Disk(HardState(3), entries_of(1, 2)))
    core.step(AppendEntries(3, 2, 1, 2, 3, (Entry(3, 3),), 0))
    core.step(AppendEntries(3, 2, 1, 5, 3, (Entry(3, 6),), 0))
    out = drain(core)
    r1, r2 = out.of(AppendEntriesResponse)
    assert (
        not r1.success
        and r1.reject_index == 2
        and (r1.conflict_term, r1.conflict_index)
        == (
            2,
            2,
        )
    )
    assert not r2.success and r2.conflict_index == 3 and r2.conflict_term == 0
    assert core.status().last_index == 2


def test_conflicting_entry_and_followers_deleted() -> None:
    """AppendEntries receiver 3: "If an existing entry conflicts with a new one (same index
    but different terms), delete the existing entry and all that follow it (§5.3)"."""
    core = new_core(disk=Disk(HardState(2), entries_of(1, 2, 2, 2)))
    core.step(AppendEntries(3, 2, 1, 1, 1, (Entry(3, 2, data=b"new"),), 0))
    out = drain(core)
    assert [e.index for e in out.entries] == [2]
    assert core.status().last_index == 2 and core.log.term(2) == 3


def test_matching_entries_are_never_truncated() -> None:
    """AppendEntries receiver 4: "Append any new entries not already in the log" -- and
    entries already there are kept: a delayed, shorter append must not cut the log
    (raftos#26)."""
    core = new_core(disk=Disk(HardState(2), entries_of(1, 2, 2, 2)))
    old = entries_of(1, 2, 2, 2)
    core.step(AppendEntries(2, 2, 1, 1, 1, (old[1],), 0))  # stale, shorter than our log
    out = drain(core)
    assert out.entries == []
    assert core.status().last_index == 4
    (resp,) = out.of(AppendEntriesResponse)
    assert resp.success and resp.match_index == 2  # only what this message vouches for


def test_commit_is_min_of_leader_commit_and_last_new() -> None:
    """AppendEntries receiver 5: "If leaderCommit > commitIndex, set commitIndex =
    min(leaderCommit, index of last new entry)"."""
    core = new_core(disk=Disk(HardState(2), entries_of(1, 1, 1, 1, 1)))
    core.step(AppendEntries(3, 2, 1, 1, 1, (Entry(1, 2, data=b"e2t1"),), 9))
    assert core.status().commit == 2


def test_vote_rejected_for_stale_term() -> None:
    """RequestVote receiver 1: "Reply false if term < currentTerm (§5.1)"."""
    core = new_core(disk=Disk(HardState(5)), **PLAIN)
    core.step(RequestVote(4, 2, 1, 0, 0))
    out = drain(core)
    assert out.of(RequestVoteResponse) == [] or not out.of(RequestVoteResponse)[0].granted
    assert core.status().vote == 0


def test_vote_granted_once_per_term() -> None:
    """RequestVote receiver 2 / §5.2: "If votedFor is null or candidateId ... grant vote";
    "Each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis"."""
    core = new_core(**PLAIN)
    core.step(RequestVote(1, 2, 1, 0, 0))
    core.step(RequestVote(1, 3, 1, 0, 0))
    core.step(RequestVote(1, 2, 1, 0, 0))  # a retry by the same candidate
    out = drain(core)
    granted = [(m.dst, m.granted) for m in out.of(RequestVoteResponse)]
    assert granted == [(2, True), (3, False), (2, True)]
    assert out.hard_states[-1].vote == 2
    assert all(m in out.persisted_messages for m in out.of(RequestVoteResponse))


def test_vote_requires_up_to_date_log() -> None:
    """§5.4.1: "If the logs have last entries with different terms, then the log with the
    later term is more up-to-date. If the logs end with the same term, then whichever log
    is longer is more up-to-date."."""
    cases = [((3, 2), False), ((2, 5), False), ((2, 3), False), ((3, 3), True), ((4, 1), True)]
    for (last_term, last_index), want in [((1, 9), False), ((2, 2), False), *cases]:
        core = new_core(disk=Disk(HardState(3), entries_of(1, 2, 3)), **PLAIN)
        core.step(RequestVote(4, 2, 1, last_index, last_term))
        (resp,) = drain(core).of(RequestVoteResponse)
        assert resp.granted is want, (last_term, last_index)


def test_vote_cleared_only_when_term_advances() -> None:
    """§5.2: a server votes once per term; stepping down within the same term (raftos bug)
    must not clear the vote."""
    core = new_core(**PLAIN)
    core.step(RequestVote(1, 2, 1, 0, 0))
    core.step(AppendEntries(1, 3, 1, 0, 0, (), 0))  # a leader of term 1 (voted for by 3)
    core.step(RequestVote(1, 3, 1, 0, 0))
    assert core.status().vote == 2
    core.step(RequestVote(2, 3, 1, 0, 0))
    assert core.status().vote == 3 and core.term == 2


def test_no_commit_of_earlier_term_by_counting() -> None:
    """§5.4.2: "Raft never commits log entries from previous terms by counting replicas.
    Only log entries from the leader's current term are committed by counting replicas."."""
    core = new_core(disk=Disk(HardState(2), entries_of(1, 2)), **PLAIN)
    while core.role is not Role.CANDIDATE:
        core.tick()
    core.step(RequestVoteResponse(core.term, 2, 1, granted=True))
    drain(core)
    assert core.role is Role.LEADER
    # follower 2 matches up to 2 (term 2, an earlier term) but not the no-op at 3
    core.step(AppendEntriesResponse(core.term, 2, 1, success=True, match_index=2))
    assert core.status().commit == 0
    core.step(AppendEntriesResponse(core.term, 2, 1, success=True, match_index=3))
    assert core.status().commit == 3


def test_leader_counts_itself_only_for_durable_entries() -> None:
    """Thesis §10.2.1: the leader may send entries before its own write completes, but its
    own acknowledgement counts only once the write is durable (advance)."""
    core = new_core(voters=(1, 2, 3), **PLAIN)
    while core.role is not Role.CANDIDATE:
        core.tick()
    core.step(RequestVoteResponse(core.term, 2, 1, granted=True))
    noop = core.status().last_index
    core.step(AppendEntriesResponse(core.term, 2, 1, success=True, match_index=noop))
    drain(core)
    index = core.propose(b"x")
    rd = core.ready()  # the leader's own write is now in flight
    assert any(isinstance(m, AppendEntries) and m.entries for m in rd.messages)
    core.step(AppendEntriesResponse(core.term, 2, 1, success=True, match_index=index))
    assert core.status().commit < index  # only follower 2 durably holds it: 1 of 3
    core.advance(rd)
    assert core.status().commit == index  # now the leader's copy is durable too


def test_vote_survives_restart() -> None:
    """Figure 2, persistent state: "votedFor: candidateId that received vote in current
    term" is durable (PySyncObj #84): a restarted node does not vote twice in a term."""
    core = new_core(disk=Disk(HardState(5, 3, 0)), **PLAIN)
    assert core.status().vote == 3
    core.step(RequestVote(5, 2, 1, 0, 0))
    (resp,) = drain(core).of(RequestVoteResponse)
    assert not resp.granted
