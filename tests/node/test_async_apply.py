"""The driver's asynchronous apply (hzp2p.node.driver) and early signature checks
(hzp2p.node.preverify), on the simulated network in virtual time.

A node's apply task is held at a gate (the real applier runs once the gate opens) to show
what the ready loop does meanwhile: a follower still persists and acknowledges appends, its
channel fills and then pushes back, a crash before apply loses nothing, reads and conf
changes wait for the apply they depend on, and a block with a bad signature is rejected
exactly as without the early check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import trio
import trio.testing
from snapshot_helpers import Cluster, SnapNode, caught_up, report, wait_for

from hzp2p.ledger import tx as txmod
from hzp2p.node import driver as driver_mod
from hzp2p.node.applier import Predecoded
from hzp2p.node.preverify import CheckJob, check_block
from hzp2p.raft.errors import RaftError
from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.types import Entry


def gate_apply(n: SnapNode) -> Callable[[], None]:
    """Hold `n`'s apply task before each batch until the returned function is called."""
    release = trio.Event()
    real = n.applier.apply

    async def held(core: Any, entries: Sequence[Entry], decoded: Predecoded | None = None) -> None:
        await release.wait()
        await real(core, entries, decoded)

    n.applier.apply = held  # type: ignore[method-assign]
    return release.set


async def settled(c: Cluster, leader: SnapNode) -> None:
    """Every running node has applied everything the leader has committed."""
    await wait_for("all applied", lambda: all(
        n.applier.applied_index >= leader.driver.core.log.committed
        for n in c.nodes.values() if n.scope is not None and not n.scope.cancel_called))


def followers(c: Cluster, leader: SnapNode) -> tuple[SnapNode, SnapNode]:
    f, o = (n for k, n in c.nodes.items() if k != leader.k)
    return f, o


async def test_a_follower_with_a_slow_apply_still_acknowledges(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With the other follower down, the leader can only commit with F's acknowledgements;
    F's apply is held, yet blocks commit: F persists and acknowledges them from the ready
    loop while its apply task waits. Then F applies them all, to the leader's state."""
    c = Cluster(41)
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        await settled(c, leader)
        f, o = followers(c, leader)
        o.crash()
        release = gate_apply(f)
        submit = leader.stack.submit
        for i in range(2):
            with trio.fail_after(30):
                r = await submit.submit(submit.sign("epi.report", report(i), None), 30)
            assert r["status"] == "committed"
        commit = leader.driver.core.log.committed
        assert f.driver.core.log.persisted >= commit  # F acknowledged them durably...
        assert f.applier.applied_index < commit  # ...and has applied none of them yet
        assert f.store.applied_index() < commit
        release()
        await wait_for("F applies", lambda: caught_up(f, leader))
        assert f.digest() == leader.digest()
        for n in (leader, f):
            n.crash()


async def test_a_full_apply_channel_stops_the_ready_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Backpressure: once F's apply channel is full, F's ready loop waits (F stops
    acknowledging, so with the other follower down nothing more commits); opening the gate
    lets everything through."""
    c = Cluster(42)
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        await settled(c, leader)
        f, o = followers(c, leader)
        o.crash()
        release = gate_apply(f)
        last = 0
        for _ in range(30):
            last = leader.driver.propose(b"")
            await trio.sleep(0.01)  # (a few ticks: well inside the election timeout)
            if f.driver.apply_full_waits:
                break
        assert f.driver.apply_full_waits == 1
        last = leader.driver.propose(b"")  # F persisted the one before, not this one
        await trio.sleep(0.1)
        assert leader.driver.core.log.committed < last
        persisted = f.driver.core.log.persisted
        await trio.sleep(0.1)
        assert f.driver.core.log.persisted == persisted  # F's ready loop is waiting
        release()
        await wait_for("F applies", lambda: f.applier.applied_index >= last)
        assert leader.applier.applied_index >= last
        for n in (leader, f):
            n.crash()


async def test_a_crash_between_persist_and_apply_resumes_from_the_stored_index(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Cluster(43)
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        await settled(c, leader)
        f, o = followers(c, leader)
        o.crash()
        gate_apply(f)  # never released: F crashes with committed entries it has not applied
        submit = leader.stack.submit
        for i in range(3):
            r = await submit.submit(submit.sign("epi.report", report(i), None), 30)
            assert r["status"] == "committed"
        commit = leader.driver.core.log.committed
        f.crash()
        await trio.sleep(1)
        store = c.stores[f.k]
        assert store.applied_index() < commit <= store.last_index()
        f2 = await c.start(nursery, f.k)
        await c.start(nursery, o.k)
        await wait_for("F applies after restart", lambda: caught_up(f2, leader))
        assert f2.applier.head.height == leader.applier.head.height
        assert f2.digest() == leader.digest()
        for n in c.nodes.values():
            n.crash()


async def test_a_read_waits_for_the_apply(autojump_clock: trio.testing.MockClock) -> None:
    """ReadIndex on the leader: the leader has committed an entry it has not applied; the
    read returns only after the apply task has applied it."""
    c = Cluster(44)
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        await settled(c, leader)
        release = gate_apply(leader)
        index = leader.driver.propose(b"")
        await wait_for("commit", lambda: leader.driver.core.log.committed >= index)
        got: list[int] = []

        async def read() -> None:
            got.append(await leader.driver.read_index(30))

        nursery.start_soon(read)
        await trio.sleep(2)
        assert not got and leader.applier.applied_index < index
        release()
        await wait_for("read", lambda: bool(got))
        assert got[0] >= index and leader.applier.applied_index >= got[0]
        for n in c.nodes.values():
            n.crash()


async def test_a_conf_change_is_applied_to_the_core_before_advance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A Ready that commits a CONF_CHANGE waits for the apply task before `advance`, so the
    core's one-change-at-a-time guard (applied index) never counts an unapplied change."""
    c = Cluster(45)
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        await settled(c, leader)
        release = gate_apply(leader)
        core = leader.driver.core
        core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
        leader.driver.wake()
        index = core.log.last_index()
        await wait_for("commit", lambda: core.log.committed >= index)
        await trio.sleep(1)
        assert core.log.applied < index and 4 not in core.conf.learners
        assert leader.driver.apply_drain_waits >= 1
        with pytest.raises(RaftError):
            core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 5))
        release()
        await wait_for("applied", lambda: core.log.applied >= index)
        assert 4 in core.conf.learners
        for n in c.nodes.values():
            n.crash()


async def test_a_bad_signature_is_rejected_with_the_early_check_on(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block carrying a transaction with a forged signature: the followers check it early
    (it is not cached) and reject it at apply with the same verdict as the leader; the good
    transaction beside it was checked early and is committed."""
    monkeypatch.setattr(driver_mod, "PREVERIFY", True)
    c = Cluster(46)
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        await settled(c, leader)
        submit = leader.stack.submit
        good = submit.sign("epi.report", report(1), None)
        other = submit.sign("epi.report", report(2), None)
        forged = dataclasses.replace(other, signature=bytes(64), body=other.body,
                                     hash=other.hash)
        leader.stack.mempool.add(forged)  # as a faulty leader would propose it
        r = await submit.submit(good, 30)
        assert r["status"] == "committed"
        await settled(c, leader)
        assert forged.hash + forged.signature not in txmod._VERIFIED
        for f in followers(c, leader):
            assert f.driver.preverifier is not None and f.driver.preverifier.submitted >= 1
            rec = await f.stack.storage.tx(forged.hash)
            assert rec is not None and rec.status != "applied" and "signature" in rec.reason
            ok = await f.stack.storage.tx(good.hash)
            assert ok is not None and ok.status == "applied"
            assert f.digest() == leader.digest()
        # The worker's check itself: the good signatures cached, the forged one not.
        rec = await leader.stack.storage.tx(forged.hash)
        assert rec is not None
        stored = await leader.stack.storage.block_by_height(rec.height)
        assert stored is not None
        txmod.clear_verified_cache()
        job = CheckJob(stored.raw)
        check_block(job)
        assert job.checked and job.block is not None
        assert forged.hash in {t.hash for t in job.block.txs}
        for t in job.block.txs:
            assert (t.hash + t.signature in txmod._VERIFIED) == (t.hash != forged.hash)
        txmod.clear_verified_cache()
        job = CheckJob(stored.raw)
        job.abandoned.set()
        check_block(job)
        assert not job.checked and not txmod._VERIFIED
        for n in c.nodes.values():
            n.crash()


async def test_blocks_committed_together_are_applied_in_one_transaction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Blocks that reach the apply task together are stored by one apply_blocks_with; a run
    holding a refused block (a stale copy of the block before it) falls back to block by
    block and refuses exactly that one, as every other node does."""
    c = Cluster(47)
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        await settled(c, leader)
        f, _ = followers(c, leader)
        release = gate_apply(f)
        first = leader.driver.propose(b"")  # the apply task holds this one at the gate
        await wait_for("F holds it", lambda: f.driver.core.log.committed >= first)
        submit = leader.stack.submit
        for i in range(2):
            r = await submit.submit(submit.sign("epi.report", report(10 + i), None), 30)
            assert r["status"] == "committed"
        release()
        await settled(c, leader)
        assert f.applier.batched_applies == 1 and f.applier.blocks_refused == 0
        assert f.applier.head == leader.applier.head

        release = gate_apply(f)
        first = leader.driver.propose(b"")
        await wait_for("F holds it", lambda: f.driver.core.log.committed >= first)
        r = await submit.submit(submit.sign("epi.report", report(20), None), 30)
        head = leader.applier.head
        stored = await leader.stack.storage.block_by_height(head.height)
        assert stored is not None
        leader.driver.propose(stored.raw)  # the same block again: stale, refused at apply
        await wait_for("leader refuses it", lambda: leader.applier.blocks_refused == 1)
        release()
        await settled(c, leader)
        assert f.applier.batched_applies == 1 and f.applier.blocks_refused == 1
        assert f.applier.head == leader.applier.head == head
        assert f.digest() == leader.digest()
        for n in c.nodes.values():
            n.crash()
