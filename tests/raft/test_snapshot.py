"""Compaction and InstallSnapshot: chunked, resumable, and Figure 13 rule 6/7."""

from __future__ import annotations

import pytest

from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.messages import InstallSnapshot, InstallSnapshotResponse
from hzp2p.raft.types import ConfState, HardState, SnapshotMeta
from raft.network import Disk, Network, drain, entries_of, new_core

CONF3 = ConfState(frozenset({1, 2, 3}))


def lagging_follower(chunk_bytes: int = 64) -> Network:
    net = Network((1, 2, 3), seed=3, max_snapshot_chunk_bytes=chunk_bytes)
    net.elect(1)
    net.propose(1, b"early")
    net.isolate(3)
    for i in range(20):
        net.propose(1, f"value-{i}".encode())
    net.compact(1)
    assert net.core(1).status().first_index > net.core(3).status().last_index + 1
    return net


def expected() -> list[bytes]:
    return [b"early"] + [f"value-{i}".encode() for i in range(20)]


def test_lagging_follower_catches_up_by_chunked_snapshot() -> None:
    net = lagging_follower()
    net.heal()
    net.tick(5)
    chunks = [m for m in net.sent if isinstance(m, InstallSnapshot) and m.dst == 3]
    assert len(chunks) > 3
    assert all(len(m.data) <= 64 for m in chunks)
    assert net.applied_data(3) == expected()
    assert net.snapshots_installed == 1
    net.propose(1, b"after")
    net.tick(2)
    assert net.applied_data(3) == [*expected(), b"after"]
    net.tick(20)
    assert net.snapshots_installed == 1  # no install loop (hashicorp/raft#212)
    net.check_safety()


def test_snapshot_transfer_survives_lost_and_duplicated_chunks() -> None:
    net = lagging_follower()
    lost: set[int] = set()

    def lose_each_chunk_once(m: object) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset not in lost:
            lost.add(m.offset)
            return True
        return False

    net.drop = lose_each_chunk_once
    net.duplicate = True
    net.heal()
    net.tick(40)
    assert net.applied_data(3) == expected()


def test_follower_restart_mid_transfer_restarts_cleanly() -> None:
    net = lagging_follower(chunk_bytes=16)
    net.heal()
    for _ in range(200):
        net.core(1).tick()
        net.deliver(max_messages=3, must_quiesce=False)  # stop part-way through the transfer
        if any(isinstance(m, InstallSnapshot) and m.offset > 0 for m in net.sent):
            break
    assert any(isinstance(m, InstallSnapshot) and m.offset > 0 for m in net.sent)
    assert net.snapshots_installed == 0
    net.queue.clear()
    net.restart(3)
    net.tick(30)
    assert net.applied_data(3) == expected()


def test_new_learner_bootstraps_from_snapshot() -> None:
    net = Network((1, 2, 3), seed=2)
    net.elect(1)
    for i in range(5):
        net.propose(1, f"v{i}".encode())
    net.core(1).propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
    net.tick(2)
    net.compact(1)
    net.add_node(4, ConfState(frozenset({1, 2, 3}), frozenset({4})))
    net.tick(5)
    assert net.applied_data(4) == [f"v{i}".encode() for i in range(5)]
    assert net.core(4).conf.learners == {4}


def test_leader_restarted_from_snapshot_can_still_send_it() -> None:
    net = lagging_follower()
    net.restart(1)
    net.heal()
    net.run_until(lambda: net.leader() is not None)
    net.tick(10)
    assert net.applied_data(3) == expected()


def test_snapshot_matching_our_log_keeps_the_suffix() -> None:
    """Figure 13 rule 6: "If existing log entry has same index and term as snapshot's last
    included entry, retain log entries following it and reply" (hashicorp/raft#697)."""
    core = new_core(disk=Disk(HardState(2, 0, 2), entries_of(1, 1, 1, 1, 1)))
    meta = SnapshotMeta(3, 1, CONF3)
    core.step(InstallSnapshot(2, 2, 1, meta, 0, b"state", True))
    rd = core.ready()
    assert rd.snapshot is None  # nothing to install: our log already has it
    (resp,) = [m for m in rd.persisted_messages if isinstance(m, InstallSnapshotResponse)]
    assert resp.match_index == 3
    core.advance(rd)
    st = core.status()
    assert st.last_index == 5 and st.commit == 3


def test_snapshot_replaces_a_conflicting_log() -> None:
    core = new_core(disk=Disk(HardState(2, 0, 1), entries_of(1, 2, 2)))
    meta = SnapshotMeta(5, 3, CONF3)
    core.step(InstallSnapshot(3, 2, 1, meta, 0, b"ab", False))
    core.step(InstallSnapshot(3, 2, 1, meta, 2, b"cd", True))
    rd = core.ready()
    assert rd.snapshot is not None and rd.snapshot.data == b"abcd"
    assert rd.hard_state is not None and rd.hard_state.commit == 5
    core.advance(rd)
    st = core.status()
    assert (st.first_index, st.last_index, st.commit, st.applied) == (6, 5, 5, 5)


def test_old_snapshot_is_ignored() -> None:
    core = new_core(disk=Disk(HardState(2, 0, 3), entries_of(1, 1, 1)))
    core.step(InstallSnapshot(2, 2, 1, SnapshotMeta(2, 1, CONF3), 0, b"x", True))
    out = drain(core)
    (resp,) = out.of(InstallSnapshotResponse)
    assert resp.match_index == 3
    assert core.status().last_index == 3


def test_compact_argument_checks() -> None:
    net = Network((1,))
    net.elect(1)
    net.propose(1, b"a")
    with pytest.raises(ValueError, match="applied"):
        net.core(1).compact(99, b"")
    index = net.compact(1)
    with pytest.raises(ValueError, match="already compacted"):
        net.core(1).compact(index - 1, b"")
