"""Scripted failure scenarios, plus a small seeded fuzz of the harness as a smoke test.

(The real fault simulator is hzp2p.sim; this only makes sure the core itself
survives the classic scripts.)
"""

from __future__ import annotations

import random

import pytest

from hzp2p.raft.errors import RaftError
from hzp2p.raft.messages import AppendEntries
from hzp2p.raft.types import Role
from raft.network import Network


def test_minority_partition() -> None:
    """The majority side elects a leader and commits; the minority leader commits nothing,
    steps down by check-quorum, and its uncommitted entries are replaced on healing."""
    net = Network((1, 2, 3, 4, 5), seed=1)
    net.elect(1)
    net.propose(1, b"base")
    for a in (1, 2):
        for b in (3, 4, 5):
            net.cut(a, b)
    net.core(1).propose(b"minority-only")
    net.run_until(lambda: net.leader() in (3, 4, 5), max_ticks=100)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"majority")
    net.tick(25)
    assert net.core(1).role is not Role.LEADER
    assert net.applied_data(1) == [b"base"]
    net.heal()
    net.tick(30)
    for n in net.nodes:
        assert net.applied_data(n) == [b"base", b"majority"], n
    net.check_safety()


def test_leader_crashes_mid_replication() -> None:
    """A leader crashes after its entry reached only one follower: that entry is on a
    majority, the follower holding it wins, and nothing acknowledged is lost."""
    net = Network((1, 2, 3), seed=2)
    net.elect(1)
    net.propose(1, b"acked")
    assert net.applied_data(1) == [b"acked"]
    net.drop = lambda m: isinstance(m, AppendEntries) and m.dst == 3
    net.core(1).propose(b"half-way")
    net.deliver()
    net.crash(1)
    net.drop = None
    net.run_until(lambda: net.leader() is not None, max_ticks=100)
    assert net.leader() == 2  # 3's log is behind: it cannot win
    net.tick(3)
    net.start(1)
    net.tick(20)
    for n in (1, 2, 3):
        assert net.applied_data(n) == [b"acked", b"half-way"]
    net.check_safety()


def test_follower_crash_and_restart_from_disk() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    net.propose(1, b"a")
    net.crash(3)
    net.propose(1, b"b")
    net.start(3)
    assert net.core(3).status().commit >= 1
    net.tick(3)
    assert net.applied_data(3) == [b"a", b"b"]


def test_whole_cluster_restart_keeps_term_vote_and_log() -> None:
    """PySyncObj #84: after a full restart the term and vote must come back from disk."""
    net = Network((1, 2, 3), seed=3)
    net.elect(1)
    net.propose(1, b"a")
    term = net.core(1).term
    for n in (1, 2, 3):
        net.restart(n)
        assert net.core(n).term == term
    net.run_until(lambda: net.leader() is not None)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"b")
    net.tick(2)
    for n in (1, 2, 3):
        assert net.applied_data(n) == [b"a", b"b"]


def fuzz_one(seed: int, voters: int, steps: int = 120) -> None:
    rng = random.Random(seed)
    ids = tuple(range(1, voters + 1))
    net = Network(ids, seed=seed, election_ticks=6, max_snapshot_chunk_bytes=64)
    proposed = 0
    for _ in range(steps):
        r = rng.random()
        if r < 0.05:
            net.heal()
            net.isolate(rng.choice(ids))
        elif r < 0.08:
            net.cut(rng.choice(ids), rng.choice(ids), one_way=True)
        elif r < 0.12:
            net.heal()
        elif r < 0.15:
            down = [n for n in ids if net.nodes[n].core is None]
            if down:
                net.start(rng.choice(down))
            elif len(net.alive()) > voters // 2 + 1:
                net.crash(rng.choice(ids))
        elif r < 0.18:
            victim = rng.choice(net.alive())
            if net.nodes[victim].disk.applied:
                net.compact(victim)
        net.duplicate = rng.random() < 0.2
        net.reorder = rng.random() < 0.3
        lead = net.leader()
        if lead is not None and rng.random() < 0.5:
            try:
                net.core(lead).propose(f"{seed}-{proposed}".encode())
                proposed += 1
            except RaftError:
                pass  # bounds and transfer refusals are fine here
        net.tick(1)
    net.heal()
    net.duplicate = net.reorder = False
    for n in ids:
        if net.nodes[n].core is None:
            net.start(n)
    net.run_until(lambda: net.leader() is not None, max_ticks=200)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"final")
    net.tick(30)
    datas = [net.applied_data(n) for n in ids]
    assert all(d == datas[0] for d in datas), seed
    assert datas[0][-1] == b"final"
    net.check_safety()


@pytest.mark.parametrize("voters", [3, 5])
def test_seeded_fuzz_smoke(voters: int) -> None:
    """Random partitions, crashes, restarts, duplication and reordering; then heal and
    require convergence. Safety is asserted by the harness on every Ready."""
    for seed in range(12):
        fuzz_one(seed, voters)


def test_one_node_crash_before_write_loses_only_unacknowledged() -> None:
    """etcd#14370: a one-node cluster that crashes before its write is durable has neither
    applied nor acknowledged the entry; after restart it is simply not there."""
    net = Network((1,))
    net.elect(1)
    net.propose(1, b"durable")
    net.core(1).propose(b"lost")
    net.crash_mid_write(1)
    net.start(1)
    net.run_until(lambda: net.leader() == 1)
    net.tick(2)
    assert net.applied_data(1) == [b"durable"]


def test_follower_crash_before_write_never_acknowledged() -> None:
    """Thesis §3.8: a follower's append response leaves only after the entries are
    durable, so a follower that crashes mid-write is never counted for them."""
    net = Network((1, 2, 3))
    net.elect(1)
    net.cut(1, 3)
    net.core(1).propose(b"x")
    # deliver the append to 2, then crash 2 before its write completes
    while not any(isinstance(m, AppendEntries) and m.dst == 2 for m in net.sent):
        net.deliver(max_messages=1, must_quiesce=False)
    net.crash_mid_write(2)
    net.deliver()
    assert net.core(1).status().commit < net.core(1).status().last_index
    assert net.nodes[2].disk.last_index() < net.core(1).status().last_index
