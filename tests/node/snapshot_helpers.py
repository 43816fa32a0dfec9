"""Helpers for the daemon snapshot tests: NodeStacks on the simulated network in virtual time,
with a configurable snapshot threshold and nodes that need not be in the genesis."""

from __future__ import annotations

import random
from typing import Any

import nacl.signing
import trio

from hzp2p.contracts.engine import load_contracts, recompute_digest
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.genesis import Genesis, NodeSecrets, make_local_genesis
from hzp2p.ledger.mempool import Mempool
from hzp2p.net.simnet import LinkFaults, SimNetwork, SimTransport
from hzp2p.node.stack import NodeStack
from hzp2p.raft.config import RaftConfig
from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.messages import InstallSnapshot
from hzp2p.storage import AsyncStorage, MemoryStorage


class SnapNode:
    """One node: the daemon's NodeStack over a MemoryStorage and a SimTransport."""

    def __init__(
        self, k: int, genesis: Genesis, secrets: NodeSecrets | None, net: SimNetwork,
        store: MemoryStorage, *, threshold: int, chunk_bytes: int = 256 << 10,
    ) -> None:
        self.k, self.net, self.store = k, net, store
        if secrets is not None:
            signing, node = secrets.signing_key(), secrets.node_key()
        else:
            signing = nacl.signing.SigningKey(bytes([k]) * 32)
            node = nacl.signing.SigningKey(bytes([k + 100]) * 32)
        self.stack = NodeStack(
            node_id=k, genesis=genesis, signing_key=signing, node_key=node,
            raft_config=RaftConfig(node_id=k, election_ticks=10, heartbeat_ticks=2,
                                   max_snapshot_chunk_bytes=chunk_bytes),
            tick_ms=50, builder=BlockBuilder(200, 512 * 1024, 20), mempool=Mempool(),
            rng=random.Random(k), snapshot_threshold_entries=threshold,
        )
        self.scope: trio.CancelScope | None = None
        self.retained_max = 0  # the largest retained log seen after any Ready
        self.error: BaseException | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def transport() -> SimTransport:
            return self.net.transport(self.k)

        await self.stack.open(AsyncStorage.memory(self.store), transport)
        self.driver, self.applier = self.stack.driver, self.stack.applier
        self.snapshots = self.stack.snapshots
        original = self.snapshots.after_ready

        async def after_ready(core: Any) -> None:
            await original(core)
            lg = core.log
            self.retained_max = max(self.retained_max, lg.last_index() - lg.snapshot_index)

        self.snapshots.after_ready = after_ready  # type: ignore[method-assign]
        with trio.CancelScope() as self.scope:
            try:
                await self.stack.run(task_status=task_status)
            except Exception as exc:
                self.error = exc

    def crash(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    def digest(self) -> bytes:
        return recompute_digest(self.store)


async def wait_for(what: str, cond: Any, timeout_s: float = 60) -> None:
    with trio.fail_after(timeout_s):
        while not cond():
            await trio.sleep(0.05)
    del what


async def wait_leader(nodes: dict[int, SnapNode], among: list[int]) -> int:
    with trio.fail_after(30):
        while True:
            leaders = [k for k in among if nodes[k].driver.is_leader()]
            if len(leaders) == 1:
                return leaders[0]
            await trio.sleep(0.05)


def report(i: int) -> dict[str, Any]:
    return {"report_id": f"snap-{i}", "region": "r", "metric": "m", "value": i, "period": "p"}


THRESHOLD = 200


class Cluster:
    def __init__(self, seed: int, *, chunk_bytes: int = 256 << 10,
                 faults: LinkFaults | None = None, reorder: bool = False) -> None:
        load_contracts()
        self.genesis: Genesis
        self.genesis, self.secrets = make_local_genesis(3, seed=seed)
        self.net = SimNetwork(random.Random(seed), default_faults=faults, reorder=reorder)
        self.chunk = chunk_bytes
        self.stores = {k: self.store() for k in (1, 2, 3, 4)}
        self.nodes: dict[int, SnapNode] = {}
        self.sent: list[tuple[int, Any]] = []  # (src, InstallSnapshot) as the voters send them

    def store(self) -> MemoryStorage:
        return MemoryStorage(self.genesis.chain_id.encode(), self.genesis.hash)

    async def start(self, nursery: trio.Nursery, k: int) -> SnapNode:
        secrets: NodeSecrets | None = self.secrets.get(k)
        n = self.nodes[k] = SnapNode(k, self.genesis, secrets, self.net, self.stores[k],
                                     threshold=THRESHOLD, chunk_bytes=self.chunk)
        await nursery.start(n.run)
        t = n.stack.transport
        orig = t.send_nowait

        def spy(dst: int, msg: Any) -> bool:
            if isinstance(msg, InstallSnapshot):
                self.sent.append((k, msg))
            return orig(dst, msg)

        t.send_nowait = spy  # type: ignore[method-assign]
        return n

    async def start_voters(self, nursery: trio.Nursery) -> SnapNode:
        """Start the three founding voters and return the leader they elect."""
        for k in (1, 2, 3):
            await self.start(nursery, k)
        return self.nodes[await wait_leader(self.nodes, [1, 2, 3])]

    async def fill(self, leader: SnapNode, entries: int, blocks: int = 3) -> None:
        """`entries` empty entries and a few real blocks through the leader."""
        for b in range(blocks):
            for _ in range(entries // blocks):
                last = leader.driver.propose(b"")
            tx = leader.stack.submit.sign("epi.report", report(b + 1000 * entries), None)
            assert (await leader.stack.submit.submit(tx, 30))["status"] == "committed"
            await leader.applier.wait_applied(last)

    async def add_learner(self, nursery: trio.Nursery, leader: SnapNode) -> SnapNode:
        leader.driver.core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
        leader.driver.wake()
        return await self.start(nursery, 4)


def caught_up(a: SnapNode, b: SnapNode) -> bool:
    return (a.applier.applied_index >= b.applier.applied_index
            and a.applier.head.block_hash == b.applier.head.block_hash)
