"""Catch-up through a snapshot (issue 7): a learner added after at least 100,000 committed
entries installs the leader's snapshot, reaches the same state digest, and every node's
retained log stays under the compaction threshold.

In-process and deterministic: the daemon's components (NodeStack: the real RaftCore,
driver, applier with the real ledger engine, producer, submit path, snapshot manager)
over MemoryStorage and the simulated network, in virtual time. Most entries are empty
Raft entries proposed straight to the leader's core (cheap to apply: the applier only
moves the applied index), interleaved with real signed blocks so the state digest is
the ledger's. HZP2P_CATCHUP_ENTRIES changes the count (default 100,000).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import trio
import trio.testing

from hzp2p.contracts.engine import load_contracts
from hzp2p.ledger.genesis import make_local_genesis
from hzp2p.net.simnet import SimNetwork
from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.storage import MemoryStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from snapshot_helpers import SnapNode, report, wait_for, wait_leader

ENTRIES = int(os.environ.get("HZP2P_CATCHUP_ENTRIES", "100000"))
THRESHOLD = 4000
BURST = 400
CHUNK = 1024  # snapshot chunk bytes: the transfer spans several chunks


async def test_learner_catches_up_through_a_snapshot_after_100k_entries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    load_contracts()
    genesis, secrets = make_local_genesis(3, seed=5)
    net = SimNetwork(random.Random(5))
    stores = {k: MemoryStorage(genesis.chain_id.encode(), genesis.hash) for k in (1, 2, 3, 4)}
    nodes = {k: SnapNode(k, genesis, secrets[k], net, stores[k], threshold=THRESHOLD,
                         chunk_bytes=CHUNK) for k in (1, 2, 3)}
    async with trio.open_nursery() as nursery:
        for n in nodes.values():
            await nursery.start(n.run)
        lead = await wait_leader(nodes, [1, 2, 3])
        leader = nodes[lead]
        submitted = 0
        i = 0
        while leader.driver.core.log.committed < ENTRIES:
            for _ in range(BURST):
                last = leader.driver.propose(b"")
            if i % 5 == 0:  # a real block now and then: the state (and digest) moves
                tx = leader.stack.submit.sign("epi.report", report(i), None)
                r = await leader.stack.submit.submit(tx, 30)
                assert r["status"] == "committed", r
                submitted += 1
            await leader.applier.wait_applied(last)
            i += 1
        assert leader.driver.is_leader(), "no election expected on a calm network"
        committed = leader.driver.core.log.committed
        assert committed >= ENTRIES
        first = leader.driver.core.log.first_index()
        assert first > ENTRIES - THRESHOLD, f"leader's log not compacted (first index {first})"

        # Admit the learner: the Raft change the governance loop would propose.
        leader.driver.core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
        leader.driver.wake()
        nodes[4] = SnapNode(4, genesis, None, net, stores[4], threshold=THRESHOLD,
                            chunk_bytes=CHUNK)
        await nursery.start(nodes[4].run)
        await wait_for("the learner to catch up",
                       lambda: nodes[4].applier.applied_index >= leader.applier.applied_index
                       and nodes[4].applier.head.block_hash == leader.applier.head.block_hash,
                       120)
        learner = nodes[4]
        assert learner.snapshots.installed >= 1, "the learner caught up without a snapshot"
        assert learner.snapshots.refused == 0
        # Entries after the snapshot came by log: a block after the install applies on top.
        tx = leader.stack.submit.sign("epi.report", report(10**6), None)
        r = await leader.stack.submit.submit(tx, 30)
        assert r["status"] == "committed", r
        await wait_for("the learner to apply the new block",
                       lambda: learner.applier.head.block_hash == leader.applier.head.block_hash)
        for n in nodes.values():
            n.crash()
    digests = {k: n.digest() for k, n in nodes.items()}
    assert len(set(digests.values())) == 1, digests
    heads = {n.applier.head.state_digest for n in nodes.values()}
    assert heads == {digests[1]}, "stored digest differs from the recomputed one"
    assert stores[4].tx(tx.hash) is not None
    for k, n in nodes.items():
        assert n.retained_max <= THRESHOLD, (k, n.retained_max)
    assert nodes[lead].snapshots.compactions >= ENTRIES // THRESHOLD
    assert submitted >= 10
