"""The daemon's driver, applier, producer and submit path on a simulated network, in virtual
time: no processes, seeded faults (message loss, delay, partitions, restarts)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
import trio
import trio.testing

from hzp2p.contracts.engine import load_contracts
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.genesis import Genesis, NodeSecrets, make_local_genesis
from hzp2p.ledger.mempool import Mempool
from hzp2p.ledgernode.tracker import TxState
from hzp2p.net.schemas import ForwardSubmit
from hzp2p.net.simnet import LinkFaults, SimNetwork, SimTransport
from hzp2p.node.stack import NodeStack
from hzp2p.raft.config import RaftConfig
from hzp2p.storage import AsyncStorage, MemoryStorage


class SimNode:
    """One node: the daemon's NodeStack over the in-memory store and a SimTransport."""

    def __init__(self, k: int, genesis: Genesis, secrets: NodeSecrets, net: SimNetwork,
                 store: MemoryStorage) -> None:
        self.k, self.net, self.store = k, net, store
        self.genesis, self.secrets = genesis, secrets
        self.stack = NodeStack(
            node_id=k, genesis=genesis, signing_key=secrets.signing_key(),
            node_key=secrets.node_key(),
            raft_config=RaftConfig(node_id=k, election_ticks=10, heartbeat_ticks=2),
            tick_ms=50, builder=BlockBuilder(200, 512 * 1024, 20), mempool=Mempool(),
            rng=random.Random(k),
        )
        self.scope: trio.CancelScope | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def transport() -> SimTransport:
            return self.net.transport(self.k)

        await self.stack.open(AsyncStorage.memory(self.store), transport)
        self.driver, self.applier, self.submit = (
            self.stack.driver, self.stack.applier, self.stack.submit)
        with trio.CancelScope() as self.scope:
            await self.stack.run(task_status=task_status)

    def crash(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    def restarted(self) -> SimNode:
        """A fresh stack over the same store: a restart after `crash`."""
        return SimNode(self.k, self.genesis, self.secrets, self.net, self.store)


def report(i: int) -> dict[str, Any]:
    return {"report_id": f"sim-{i}", "region": "r", "metric": "m", "value": i, "period": "p"}


async def wait_leader(nodes: dict[int, SimNode], among: list[int]) -> int:
    with trio.fail_after(30):
        while True:
            leaders = [k for k in among if nodes[k].driver.is_leader()]
            if len(leaders) == 1:
                return leaders[0]
            await trio.sleep(0.05)


def sim_cluster(
    seed: int, faults: LinkFaults | None = None, rng: random.Random | None = None
) -> tuple[SimNetwork, dict[int, MemoryStorage], dict[int, SimNode]]:
    """Three daemon stacks of a seeded local genesis over one simulated network (not started)."""
    load_contracts()
    genesis, secrets = make_local_genesis(3, seed=seed)
    net = SimNetwork(rng or random.Random(seed), default_faults=faults)
    stores = {k: MemoryStorage(genesis.chain_id.encode(), genesis.hash) for k in (1, 2, 3)}
    nodes = {k: SimNode(k, genesis, secrets[k], net, stores[k]) for k in (1, 2, 3)}
    return net, stores, nodes


@pytest.mark.parametrize("seed", [6, 7, 8, 9])
async def test_submits_survive_loss_partition_and_restart(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    rng = random.Random(seed)
    net, stores, nodes = sim_cluster(
        seed, LinkFaults(drop_rate=0.05, min_delay_s=0.001, max_delay_s=0.01), rng)
    acked: dict[str, dict[str, object]] = {}
    async with trio.open_nursery() as nursery:
        for n in nodes.values():
            await nursery.start(n.run)
        leader = await wait_leader(nodes, [1, 2, 3])

        async def client(ids: list[int], start: int) -> None:
            for i in range(start, start + 10):
                k = rng.choice(ids)
                node = nodes[k]
                tx = node.submit.sign("epi.report", report(i), None)
                r = await node.submit.submit(tx, 30)
                assert r["status"] == "committed", r
                acked[str(r["tx_hash"])] = r

        async with trio.open_nursery() as clients:
            for j in range(3):
                clients.start_soon(client, [1, 2, 3], j * 10)
        # Cut the leader off: the majority elects another and keeps committing.
        others = [k for k in (1, 2, 3) if k != leader]
        net.partition([leader], others)
        new = await wait_leader(nodes, others)
        assert new != leader
        await client(others, 100)
        net.heal()
        # Crash a follower (memory store keeps what was durable) and restart it.
        victim = others[0] if others[0] != new else others[1]
        nodes[victim].crash()
        await client([new], 200)
        nodes[victim] = nodes[victim].restarted()
        await nursery.start(nodes[victim].run)
        with trio.fail_after(30):
            while len({n.applier.head.block_hash for n in nodes.values()}) != 1:
                await trio.sleep(0.1)
        for n in nodes.values():
            n.crash()
    assert len(acked) == 50
    for store in stores.values():
        for h, r in acked.items():
            rec = store.tx(bytes.fromhex(h))
            assert rec is not None and rec.status == "applied"
            assert (rec.height, rec.position) == (r["height"], r["index"])


async def test_a_rejection_at_the_leader_reaches_the_origin(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A forwarded transaction the leader refuses comes back to the origin as a rejection
    with the leader's reason (so its submit answers at once instead of waiting out --wait)."""
    _, _, nodes = sim_cluster(11)
    async with trio.open_nursery() as nursery:
        for n in nodes.values():
            await nursery.start(n.run)
        leader = await wait_leader(nodes, [1, 2, 3])
        k = next(k for k in (1, 2, 3) if k != leader)
        origin = nodes[k].submit
        good = origin.sign("epi.report", report(1), None)
        forged = dataclasses.replace(good, signature=bytes(64), body=good.body, hash=good.hash)
        origin._requests[77] = forged.hash  # as _send_to_leader records a forward
        origin.tracker.received(forged.hash)  # as a waiting submit does
        origin.tracker.sent(forged.hash, queued=False)
        nodes[leader].submit.on_message(k, ForwardSubmit(77, forged.encode(), 0))
        with trio.fail_after(5):
            while origin.tracker.state(forged.hash) is not TxState.REFUSED:
                await trio.sleep(0.01)
        refused = origin.tracker.outcome(forged.hash)
        assert refused is not None and "signature" in (refused.reason or "")
        for n in nodes.values():
            n.crash()
