"""Certification in the daemon (issue 19), three NodeStacks on a simulated network in virtual time:
voters attest applied blocks, the leader carries quorum certificates in later blocks, every
block with transactions gets certified within a few blocks, through message loss and a
leader change, and the whole chain's certificates pass the replay audit."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_daemon_sim import report, sim_cluster, wait_leader

from hzp2p.contracts.certify import CertAudit
from hzp2p.contracts.engine import load_contracts
from hzp2p.ledger.block import decode_block
from hzp2p.ledger.certificate import decode_certificate
from hzp2p.ledger.verify import verify_chain
from hzp2p.net.simnet import LinkFaults
from hzp2p.storage import MemoryStorage


def chain_of(store: MemoryStorage) -> list[bytes]:
    tip = store.tip()
    assert tip is not None
    return [r.raw for r in store.blocks(1, tip[0] + 1)]


def audit(genesis: object, raws: list[bytes], k: int) -> CertAudit:
    a = CertAudit(genesis)  # type: ignore[arg-type]
    rep = verify_chain(genesis, raws, observe=a.observe)  # type: ignore[arg-type]
    assert rep.ok, rep.reason
    return a


@pytest.mark.parametrize("seed", [3, 4])
async def test_blocks_are_certified_through_loss_and_a_leader_change(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    load_contracts()
    net, stores, nodes = sim_cluster(
        seed, LinkFaults(drop_rate=0.05, min_delay_s=0.001, max_delay_s=0.01))
    async with trio.open_nursery() as nursery:
        for n in nodes.values():
            await nursery.start(n.run)
        leader = await wait_leader(nodes, [1, 2, 3])
        for i in range(12):
            node = nodes[1 + i % 3]
            r = await node.submit.submit(node.submit.sign("epi.report", report(i), None), 30)
            assert r["status"] == "committed", r
        others = [k for k in (1, 2, 3) if k != leader]
        net.partition([leader], others)
        await wait_leader(nodes, others)
        for i in range(12, 20):
            node = nodes[others[i % 2]]
            r = await node.submit.submit(node.submit.sign("epi.report", report(i), None), 30)
            assert r["status"] == "committed", r
        net.heal()
        await trio.sleep(5)  # idle: pending certificates are carried, then nothing ticks
        for n in nodes.values():
            n.crash()
    g = nodes[1].genesis
    raws = chain_of(stores[1])
    assert all(chain_of(s) == raws for s in stores.values())
    a = audit(g, raws, k=4)
    s = a.summary(k=4)
    assert s.uncertified == [], s
    # every block with transactions is certified; only cert-only blocks may wait at the tip
    for h in s.pending:
        assert decode_block(raws[h - 1]).header.tx_count == 0
    assert s.max_lag <= 4, s
    # no two certificates for different blocks at one height
    seen: dict[int, bytes] = {}
    for raw in raws:
        for c in decode_block(raw).certs:
            cert = decode_certificate(c)
            assert seen.setdefault(cert.height, cert.block_hash) == cert.block_hash


async def test_certification_can_be_turned_off(autojump_clock: trio.testing.MockClock) -> None:
    load_contracts()
    _net, stores, nodes = sim_cluster(5)
    for n in nodes.values():
        n.stack.certify = False
    async with trio.open_nursery() as nursery:
        for n in nodes.values():
            await nursery.start(n.run)
        await wait_leader(nodes, [1, 2, 3])
        for i in range(5):
            r = await nodes[1].submit.submit(nodes[1].submit.sign("epi.report", report(i), None),
                                             30)
            assert r["status"] == "committed"
        await trio.sleep(3)
        for n in nodes.values():
            n.crash()
    raws = chain_of(stores[1])
    assert all(decode_block(r).header.version == 1 for r in raws)
