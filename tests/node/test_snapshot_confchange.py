"""A pending Raft membership change survives a leader restart (Quorum #1191: changes stuck
"pending"): governance admits node 4, the leader proposes the ConfChange, its followers get
the entry but the leader never hears back, and the leader is restarted. The change completes
exactly once under the next leader, the daemon's reconcile step starts no second one, and the
restarted node applies the same single change. Run on NodeStacks over the simulated network,
with the daemon's own reconcile code (hzp2p.node.daemon.Node._reconcile_conf)."""

from __future__ import annotations

import types

import nacl.signing
import trio
import trio.testing
from snapshot_helpers import Cluster, SnapNode, wait_for, wait_leader

from hzp2p.node.daemon import Node
from hzp2p.raft.membership import ConfChange
from hzp2p.raft.types import EntryKind


async def reconcile(n: SnapNode) -> None:
    fake = types.SimpleNamespace(storage=n.stack.storage, driver=n.driver,
                                 genesis=n.stack.genesis)
    await Node._reconcile_conf(fake)  # type: ignore[arg-type]


def conf_changes(store: object) -> list[ConfChange]:
    entries = store.entries(store.first_index(), store.last_index() + 1)  # type: ignore[attr-defined]
    return [ConfChange.decode(e.data) for e in entries if e.kind is EntryKind.CONF_CHANGE]


async def test_a_pending_conf_change_survives_a_leader_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Cluster(41)
    async with trio.open_nursery() as nursery:
        lead = (await c.start_voters(nursery)).k
        # Governance: authority 1 proposes admitting an institution, authority 2 approves.
        keys = [bytes(nacl.signing.SigningKey(bytes([i]) * 32).verify_key).hex() for i in (7, 8)]
        admit = {"action": "admit", "name": "Clinic", "roles": ["hospital"],
                 "signing_key": keys[0], "node_key": keys[1], "address": "127.0.0.1:9"}
        for k, tx_type, payload in ((1, "member.propose", admit),
                                    (2, "member.vote", {"proposal_id": 1, "approve": True})):
            sub = c.nodes[k].stack.submit
            r = await sub.submit(sub.sign(tx_type, payload, None), 30)
            assert r["status"] == "committed", r
        leader = c.nodes[lead]
        await wait_for("the leader to apply the vote", leader.driver.idle_leader)
        # Followers receive the leader's entries, but their answers never arrive.
        others = [k for k in (1, 2, 3) if k != lead]
        for k in others:
            c.net.block(k, lead)
        await reconcile(leader)
        pending = leader.driver.core.log.last_index()
        await wait_for("the entry to reach the followers",
                       lambda: all(c.stores[k].last_index() >= pending for k in others))
        assert leader.driver.core.log.committed < pending  # proposed, not committed
        assert conf_changes(c.stores[others[0]])  # the followers hold it
        # Restart the leader mid-change.
        leader.crash()
        c.net.heal()
        new = c.nodes[await wait_leader(c.nodes, others)]
        await wait_for("the change to apply", lambda: 4 in new.driver.core.conf.learners)
        for _ in range(5):  # the membership loop would run every 0.5 s: nothing more to do
            await reconcile(new)
            await trio.sleep(0.5)
        restarted = await c.start(nursery, lead)
        await wait_for("the restarted node to catch up",
                       lambda: restarted.applier.applied_index >= new.applier.applied_index)
        for n in c.nodes.values():
            assert n.driver.core.conf.learners == frozenset({4}), n.k
            assert n.driver.core.conf.voters == frozenset({1, 2, 3}), n.k
        for n in c.nodes.values():
            n.crash()
    for k in (1, 2, 3):
        assert [(cc.kind.name, cc.node_id) for cc in conf_changes(c.stores[k])] == [
            ("ADD_LEARNER", 4)], k
