"""First end-to-end checks of the core through the scripted harness."""

from __future__ import annotations

from hzp2p.raft.types import Role
from raft.network import Network


def test_three_nodes_elect_and_replicate() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    assert net.core(1).role is Role.LEADER
    idx = net.propose(1, b"hello")
    net.tick(2)
    for nid in (1, 2, 3):
        assert net.applied_data(nid) == [b"hello"], nid
        assert net.core(nid).status().commit == idx
    net.check_safety()


def test_cluster_elects_on_its_own() -> None:
    net = Network((1, 2, 3, 4, 5), seed=7)
    net.run_until(lambda: net.leader() is not None, max_ticks=100)
    lead = net.leader()
    assert lead is not None
    net.propose(lead, b"x")
    net.tick(3)
    for nid in net.nodes:
        assert net.applied_data(nid) == [b"x"]


def test_one_node_cluster_commits_only_after_advance() -> None:
    net = Network((1,))
    net.elect(1)
    core = net.core(1)
    idx = core.propose(b"solo")
    rd = core.ready()
    assert [e.index for e in rd.entries] == [idx]
    assert all(e.index < idx for e in rd.committed_entries)
    assert core.status().commit < idx
    core.advance(rd)
    assert core.status().commit == idx
    rd2 = core.ready()
    assert [e.data for e in rd2.committed_entries] == [b"solo"]
    core.advance(rd2)


def test_leader_isolated_then_heals() -> None:
    net = Network((1, 2, 3), seed=3)
    net.elect(1)
    net.propose(1, b"a")
    net.isolate(1)
    net.run_until(lambda: net.leader() not in (None, 1), max_ticks=200)
    new = net.leader()
    assert new is not None
    net.propose(new, b"b")
    net.heal()
    net.run_until(lambda: all(net.applied_data(n) == [b"a", b"b"] for n in net.nodes), 200)
    assert net.core(1).role is not Role.LEADER or net.core(1).term > net.core(new).term
    net.check_safety()
