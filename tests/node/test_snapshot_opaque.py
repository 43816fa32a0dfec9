"""Snapshots over opaque benchmark entries (hzp2p.node.opaque), on the simulated network in
virtual time: the applier moves the applied index past them in memory only, so the snapshot
manager must store that index before taking a snapshot. Without it every snapshot was taken at
the stale durable applied index, the log was never compacted past it, and a snapshot (a state
scan and an fsynced transaction) was taken again after every Ready."""

from __future__ import annotations

import trio
import trio.testing
from snapshot_helpers import THRESHOLD, Cluster, wait_for

from hzp2p.node.opaque import OPAQUE_MAGIC


async def test_opaque_entries_are_compacted_with_few_snapshots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Cluster(31)
    total = 10 * THRESHOLD
    async with trio.open_nursery() as nursery:
        leader = await c.start_voters(nursery)
        last = 0
        for i in range(total):
            last = leader.driver.propose(OPAQUE_MAGIC + i.to_bytes(4, "big"))
            if i % 50 == 49:
                await leader.applier.wait_applied(last)
        await wait_for("every node to apply", lambda: all(
            n.applier.applied_index >= last for n in c.nodes.values()))
        for n in c.nodes.values():
            n.crash()
    margin = THRESHOLD // 4
    for k, n in c.nodes.items():
        lg = n.driver.core.log
        store = c.stores[k]
        # The log was compacted well past the start, and stays bounded.
        assert lg.snapshot_index > total - THRESHOLD, (k, lg.snapshot_index)
        assert store.first_index() == lg.snapshot_index + 1
        assert n.retained_max <= THRESHOLD + margin, (k, n.retained_max)
        # One snapshot per (THRESHOLD - 2 * margin) entries or so, not one per Ready.
        assert n.snapshots.taken <= total // (THRESHOLD - 2 * margin) + 2, (k, n.snapshots.taken)
        snap = store.snapshot()
        assert snap is not None and snap.meta.index >= lg.snapshot_index
        assert store.applied_index() >= snap.meta.index
