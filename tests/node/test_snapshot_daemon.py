"""Snapshots in the daemon (hzp2p.node.snapshots) on the simulated network, in virtual time:
a bad snapshot is refused and never installed; a crash between storing a snapshot and
installing its state is recovered at the next start; a restarted node serves its stored
snapshot; a slow snapshot transfer does not hold up the other followers, and a transfer
cut off mid-way resumes where it stopped; a follower whose log matches a snapshot keeps its
suffix; a wiped node stops with a clear error."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from snapshot_helpers import THRESHOLD, Cluster, caught_up, report, wait_for, wait_leader

from hzp2p.net.simnet import LinkFaults
from hzp2p.node.snapshot_format import decode_snapshot, encode_snapshot, read_state_snapshot
from hzp2p.node.snapshots import NodeDataLost
from hzp2p.raft.messages import InstallSnapshot
from hzp2p.raft.types import HardState, Snapshot, SnapshotMeta


async def test_a_bad_snapshot_is_refused_and_never_installed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Cluster(21)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        leader = c.nodes[lead]
        await c.fill(leader, 3 * THRESHOLD)
        core = leader.driver.core
        good = core._snapshot
        assert good is not None and core.log.first_index() > 1
        # The leader serves a snapshot whose state was tampered with (one value changed).
        s = decode_snapshot(good.data, good.meta.index)
        k0, v0 = s.pairs[-1]
        bad_pairs = (*s.pairs[:-1], (k0, v0 + b"x"))
        bad = type(s)(s.index, s.conf, s.height, s.block_hash, s.state_digest, s.tip_block,
                      bad_pairs)
        core._snapshot = Snapshot(good.meta, encode_snapshot(bad))
        learner = await c.add_learner(nursery, leader)
        await wait_for("the learner to refuse it", lambda: learner.snapshots.refused >= 2)
        assert learner.snapshots.installed == 0
        assert "digest" in learner.snapshots.last_refusal
        assert c.stores[4].snapshot() is None and c.stores[4].applied_index() == 0
        assert learner.error is None, "a bad snapshot must not crash the node"
        # The leader serves the genuine one again: the learner installs it and catches up.
        core._snapshot = good
        await wait_for("the learner to catch up", lambda: caught_up(learner, leader))
        assert learner.snapshots.installed == 1
        for n in c.nodes.values():
            n.crash()
    assert learner.digest() == leader.digest()


async def test_crash_between_storing_and_installing_is_recovered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Cluster(22)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        await c.fill(c.nodes[lead], 2 * THRESHOLD)
        for n in c.nodes.values():
            n.crash()
    src = c.stores[lead]
    state = read_state_snapshot(src)
    meta = SnapshotMeta(state.index, src.term(state.index), state.conf)
    # Node 4's store got the snapshot (Ready step 2) but the node died before install_state.
    dst = c.stores[4]
    from hzp2p.node.applier import bootstrap
    from hzp2p.storage import AsyncStorage

    await bootstrap(AsyncStorage.memory(dst), c.genesis)
    dst.save_ready((), HardState(meta.term, 0, meta.index), Snapshot(meta, encode_snapshot(state)))
    assert dst.applied_index() == 0
    async with trio.open_nursery() as nursery:
        n4 = await c.start(nursery, 4)
        assert c.stores[4].applied_index() == meta.index
        assert n4.applier.head.block_hash == state.block_hash
        assert n4.driver.core._snapshot is not None  # registered: it can serve it
        n4.crash()
    assert n4.digest() == state.state_digest


async def test_a_restarted_leader_serves_its_stored_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Cluster(23)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        await c.fill(c.nodes[lead], 3 * THRESHOLD)
        for n in c.nodes.values():
            n.crash()
    async with trio.open_nursery() as nursery:
        for k in (1, 2, 3):
            n = await c.start(nursery, k)
            assert n.driver.core._snapshot is not None and n.driver.core.log.first_index() > 1
        lead = await wait_leader(c.nodes, [1, 2, 3])
        leader = c.nodes[lead]
        learner = await c.add_learner(nursery, leader)
        await wait_for("the learner to catch up", lambda: caught_up(learner, leader))
        assert learner.snapshots.installed == 1
        for n in c.nodes.values():
            n.crash()
    assert learner.digest() == leader.digest()


async def test_a_slow_transfer_does_not_stall_others_and_resumes_after_a_cut(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Cluster(24, chunk_bytes=256)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        leader = c.nodes[lead]
        await c.fill(leader, 3 * THRESHOLD)
        snap = leader.driver.core._snapshot
        assert snap is not None
        n_chunks = -(-len(snap.data) // 256)
        assert n_chunks >= 10
        # A slow link to the newcomer: each chunk takes a 0.6 s round trip.
        slow = LinkFaults(min_delay_s=0.3, max_delay_s=0.3)
        c.net.set_faults(slow, lead, 4)
        c.net.set_faults(slow, 4, lead)
        learner = await c.add_learner(nursery, leader)
        await wait_for("a few chunks", lambda: len(c.sent) >= 4)
        # Meanwhile the voters keep committing at full speed (entries proposed straight to
        # the core: the block producer paces itself by the wall clock, not virtual time).
        for _ in range(10):
            t0 = trio.current_time()
            index = leader.driver.propose(b"")
            await leader.applier.wait_applied(index)
            assert trio.current_time() - t0 < 0.1, "a snapshot transfer held up replication"
            assert learner.snapshots.installed == 0
        tx = leader.stack.submit.sign("epi.report", report(9000), None)
        assert (await leader.stack.submit.submit(tx, 30))["status"] == "committed"
        # Cut the newcomer off mid-transfer, long enough for heartbeats to go unanswered.
        # (Wait for the transfer to have moved past its first chunk: the voters' commits above
        # take real CPU, and on a loaded machine the virtual clock may not have moved yet.)
        await wait_for("a chunk past the first", lambda: max(m.offset for _, m in c.sent) > 0)
        got = max(m.offset for _, m in c.sent)
        assert 0 < got < len(snap.data)
        c.net.partition([4], [1, 2, 3])
        await trio.sleep(3)
        cut_at = len(c.sent)
        c.net.heal()
        await wait_for("the newcomer to answer again", lambda: any(
            p.node_id == 4 and p.recent_active for p in leader.driver.core.status().progress))
        # Enough new entries for a compaction: it waits while the newcomer still needs the
        # entries, so the transfer is not restarted with a newer snapshot (hashicorp/raft#212).
        for _ in range(12):  # < 2 * THRESHOLD retained: compaction may only wait so long
            for _ in range(25):
                last = leader.driver.propose(b"")
            await leader.applier.wait_applied(last)
            if leader.snapshots.deferred:
                break
        assert leader.snapshots.deferred > 0 and learner.snapshots.installed == 0
        await wait_for("the learner to catch up", lambda: caught_up(learner, leader))
        after = [m for _, m in c.sent[cut_at:]]
        # Stop-and-wait: the leader had the chunk at `got` acknowledged before it sent it,
        # and the learner kept what it received, so nothing before it is sent again.
        assert after and min(m.offset for m in after) >= got, "the transfer restarted"
        assert after[-1].done
        assert {m.meta.index for _, m in c.sent} == {snap.meta.index}, "a second snapshot"
        assert learner.snapshots.installed == 1
        for n in c.nodes.values():
            n.crash()
    assert learner.digest() == leader.digest()


@pytest.mark.parametrize("writing", [False, True], ids=["idle", "writes-in-flight"])
async def test_a_wiped_node_stops_with_a_clear_error(
    autojump_clock: trio.testing.MockClock, writing: bool,
) -> None:
    """Fabric #3639: a voter whose data directory was deleted restarts under its old id. It
    must not panic the cluster, nor vote with a forgotten log: it stops with NodeDataLost
    and the other two keep committing. With writes in flight when it comes back, the
    leader's probe is refused below the match it recorded: it must wait for the heartbeat
    round, not re-send the same probe forever (an endless exchange in zero time, found
    when certificate-only blocks kept an entry in flight)."""
    c = Cluster(25)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        leader = c.nodes[lead]
        await c.fill(leader, THRESHOLD)
        victim = next(k for k in (1, 2, 3) if k != lead)
        await wait_for("the victim to catch up", lambda: caught_up(c.nodes[victim], leader))
        c.nodes[victim].crash()
        c.stores[victim] = c.store()  # rm -rf data_dir
        if writing:
            for _ in range(20):
                leader.driver.propose(b"")
        wiped = await c.start(nursery, victim)
        if writing:
            for _ in range(20):
                leader.driver.propose(b"")
        await wait_for("the wiped node to stop", lambda: wiped.error is not None, 10)
        assert isinstance(wiped.error, BaseExceptionGroup)
        lost = wiped.error.subgroup(NodeDataLost)
        assert lost is not None
        assert "remove it by vote and admit it anew" in str(lost.exceptions[0])
        for i in range(3):
            tx = leader.stack.submit.sign("epi.report", report(7000 + i), None)
            assert (await leader.stack.submit.submit(tx, 10))["status"] == "committed"
        assert leader.driver.is_leader()
        for n in c.nodes.values():
            n.crash()


@pytest.mark.parametrize("seed", [31, 32])
async def test_a_wiped_learner_with_a_new_leader_catches_up(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """The other outcome: after a leader change nobody remembers what the wiped node
    acknowledged, and it simply catches up (here through a snapshot)."""
    c = Cluster(seed)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        leader = c.nodes[lead]
        learner = await c.add_learner(nursery, leader)
        await c.fill(leader, 3 * THRESHOLD)
        await wait_for("the learner to catch up", lambda: caught_up(learner, leader))
        learner.crash()
        c.stores[4] = c.store()
        # A leader change: the new leader's progress for node 4 starts from scratch.
        leader.crash()
        others = [k for k in (1, 2, 3) if k != lead]
        new = c.nodes[await wait_leader(c.nodes, others)]
        await c.start(nursery, lead)
        learner = await c.start(nursery, 4)
        await wait_for("the wiped learner to catch up", lambda: caught_up(learner, new))
        assert learner.error is None and learner.snapshots.installed == 1
        for n in c.nodes.values():
            n.crash()
    assert learner.digest() == new.digest()


async def test_a_follower_whose_log_matches_keeps_its_suffix(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Raft Figure 13 rule 6 (hashicorp/raft#697) at the daemon level: a snapshot whose last
    entry the follower already holds (here a stale one, as a delayed or duplicated transfer
    would deliver it) only moves its commit index; the follower keeps its log suffix and
    its state, installs nothing, and applies its own entries."""
    c = Cluster(26)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        leader = c.nodes[lead]
        f = c.nodes[next(k for k in (1, 2, 3) if k != lead)]
        c.net.block(f.k, lead)  # its acknowledgements are lost: its commit index lags
        for _ in range(20):
            last = leader.driver.propose(b"")
        await leader.applier.wait_applied(last)
        await wait_for("the follower to hold the entries",
                       lambda: c.stores[f.k].last_index() >= last)
        lg = f.driver.core.log
        assert lg.committed < lg.last_index() == last
        first, applied = lg.first_index(), f.applier.applied_index
        point = lg.committed + 1  # beyond its commit index, with a suffix after it
        assert point < last and lg.term(point) == leader.driver.core.term
        meta = SnapshotMeta(point, leader.driver.core.term, leader.driver.core.conf)
        f.driver.core.step(InstallSnapshot(leader.driver.core.term, lead, f.k, meta, 0,
                                           b"not even a snapshot", True))
        f.driver.wake()
        await wait_for("the follower to apply up to the snapshot point",
                       lambda: f.applier.applied_index >= point)
        assert f.snapshots.installed == 0 and f.snapshots.refused == 0
        assert f.driver.core.log.first_index() == first  # nothing dropped
        assert c.stores[f.k].last_index() == last  # the suffix is kept
        stored = c.stores[f.k].snapshot()
        assert stored is None or stored.meta.index != meta.index  # nothing stored from it
        assert f.applier.applied_index > applied and f.driver.core.log.committed >= point
        c.net.heal()
        await wait_for("convergence", lambda: caught_up(f, leader))
        for n in c.nodes.values():
            n.crash()
    assert f.digest() == leader.digest()


@pytest.mark.parametrize("seed", [51, 52, 53])
async def test_a_learner_catches_up_over_a_lossy_reordering_network(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """Chunks and answers lost (10 %), duplicated (5 %) and reordered: the transfer still
    completes, once, and the learner ends with the same state."""
    lossy = LinkFaults(drop_rate=0.1, dup_rate=0.05, min_delay_s=0.001, max_delay_s=0.03)
    c = Cluster(seed, chunk_bytes=300, faults=lossy, reorder=True)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        leader = c.nodes[lead]
        await c.fill(leader, 3 * THRESHOLD)
        learner = await c.add_learner(nursery, leader)
        await wait_for("the learner to catch up", lambda: caught_up(learner, leader), 120)
        assert learner.snapshots.installed == 1 and learner.snapshots.refused == 0
        for n in c.nodes.values():
            n.crash()
    assert learner.digest() == leader.digest()
