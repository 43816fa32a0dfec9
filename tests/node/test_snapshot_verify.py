"""`admin verify` on a node that caught up through a snapshot (the daemon's verify handler,
hzp2p.node.chain_audit), on the simulated network in virtual time: it verifies the stored
snapshot and every block after it, passes on a healthy node, and names the block when a
stored block after the snapshot, or the snapshot itself, is tampered with."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest
import trio
import trio.testing
from snapshot_helpers import THRESHOLD, Cluster, SnapNode, caught_up, wait_for, wait_leader

from hzp2p.node.handlers import Handlers
from hzp2p.node.snapshot_format import decode_snapshot, encode_snapshot
from hzp2p.raft.types import Snapshot


async def admin_verify(n: SnapNode, integrity: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = await Handlers(cast(Any, n.stack)).verify({"integrity": integrity})
    return out


def flipped(raw: bytes, pos: int) -> bytes:
    b = bytearray(raw)
    b[pos] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("after", [30, 2 * THRESHOLD])
async def test_verify_on_a_snapshot_installed_node(
    autojump_clock: trio.testing.MockClock, after: int
) -> None:
    """after=30: few blocks applied since installing the leader's snapshot; after=2T: the
    learner has since taken its own snapshots, and holds the blocks below the newest one
    back to the installed one (they are not replayed: their state is gone)."""
    c = Cluster(61)
    async with trio.open_nursery() as nursery:
        for k in (1, 2, 3):
            await c.start(nursery, k)
        leader = c.nodes[await wait_leader(c.nodes, [1, 2, 3])]
        await c.fill(leader, 3 * THRESHOLD)
        learner = await c.add_learner(nursery, leader)
        await wait_for("the learner to catch up", lambda: caught_up(learner, leader))
        assert learner.snapshots.installed == 1
        installed = c.stores[4].snapshot().meta.index  # type: ignore[union-attr]
        await c.fill(leader, after, blocks=4)  # blocks the learner applies itself
        await c.fill(leader, 6, blocks=3)  # and a few more, too few for another snapshot
        await wait_for("the learner to catch up again", lambda: caught_up(learner, leader))
        store = c.stores[4]
        stored = store.snapshot()
        assert stored is not None
        sh = decode_snapshot(stored.data, stored.meta.index).height
        height = learner.applier.head.height
        assert store.block_by_height(1) is None and sh > 0 and sh + 3 <= height
        if after >= THRESHOLD:  # its own snapshot: it holds the blocks just below it too
            assert stored.meta.index > installed and store.block_by_height(sh) is not None

        # Healthy: the snapshot and every block after it verify.
        r = await admin_verify(learner, integrity=True)
        assert r["ok"], r
        assert r["snapshot_height"] == sh and r["from_height"] == sh + 1
        assert r["height"] == height and r["blocks_checked"] == height - sh
        assert r["first_bad_height"] is None and r["reason"] is None
        # The leader holds the whole chain: from the genesis, as before.
        r = await admin_verify(leader)
        assert r["ok"] and r["snapshot_height"] is None and r["from_height"] == 1, r
        assert r["blocks_checked"] == leader.applier.head.height

        # A stored block after the snapshot tampered with: named.
        bad_h = sh + 2
        good = store._blocks[bad_h]
        store._blocks[bad_h] = dataclasses.replace(good, raw=flipped(good.raw, len(good.raw) // 2))
        r = await admin_verify(learner)
        assert not r["ok"] and r["first_bad_height"] == bad_h, r
        assert r["blocks_checked"] == bad_h - sh - 1 and r["snapshot_height"] == sh
        store._blocks[bad_h] = good
        # A verdict stored with a block after the snapshot changed: that block is named.
        rows = store._txs[sh + 1]
        store._txs[sh + 1] = [dataclasses.replace(rows[0], reason="forged"), *rows[1:]]
        r = await admin_verify(learner)
        assert not r["ok"] and r["first_bad_height"] == sh + 1 and "verdicts" in r["reason"], r
        store._txs[sh + 1] = rows
        # A stored block after the snapshot gone: reported missing.
        last = store._blocks.pop(height)
        r = await admin_verify(learner)
        assert not r["ok"] and "1 blocks after the snapshot" in r["reason"], r
        store._blocks[height] = last

        # The stored snapshot's state tampered with (one value): the snapshot is named.
        s = decode_snapshot(stored.data, stored.meta.index)
        k0, v0 = s.pairs[-1]
        bad = dataclasses.replace(s, pairs=(*s.pairs[:-1], (k0, v0 + b"x")))
        store._snap = Snapshot(stored.meta, encode_snapshot(bad))
        r = await admin_verify(learner)
        assert not r["ok"] and r["first_bad_height"] == sh and "digest" in r["reason"], r
        store._snap = stored
        assert (await admin_verify(learner))["ok"]
        for n in c.nodes.values():
            n.crash()
