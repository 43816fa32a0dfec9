"""SubmitService.submit_many on the daemon's stack over a simulated network, in virtual time:
batches from any node commit through message loss and a leader change, every receipt matches
the stored verdict, and nothing is included twice."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_daemon_sim import report, sim_cluster, wait_leader

from hzp2p.ledger.tx import Transaction
from hzp2p.ledgernode.receipts import Refused
from hzp2p.net.simnet import LinkFaults


@pytest.mark.parametrize("seed", [3, 4])
async def test_batches_commit_through_loss_and_a_leader_change(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    net, stores, nodes = sim_cluster(
        seed, LinkFaults(drop_rate=0.05, min_delay_s=0.001, max_delay_s=0.01))
    receipts: dict[str, dict[str, object]] = {}

    async def batch(k: int, start: int, n: int, extra: list[Transaction | Refused] | None = None,
                    ) -> list[dict[str, object]]:
        svc = nodes[k].submit
        txs: list[Transaction | Refused] = [svc.sign("epi.report", report(i), None)
                                        for i in range(start, start + n)]
        got = await svc.submit_many(txs + (extra or []), 60)
        for r in got[:n]:
            assert r["status"] == "committed", f"{r}"
            receipts[str(r["tx_hash"])] = r
        return got

    async with trio.open_nursery() as nursery:
        for n in nodes.values():
            await nursery.start(n.run)
        leader = await wait_leader(nodes, [1, 2, 3])
        async with trio.open_nursery() as clients:
            for j, k in enumerate((1, 2, 3)):
                clients.start_soon(batch, k, 1000 * j, 120)
        # A batch in flight while the leader is cut off: it commits through the new leader.
        others = [k for k in (1, 2, 3) if k != leader]
        async with trio.open_nursery() as clients:
            clients.start_soon(batch, others[0], 5000, 150)
            await trio.sleep(0.01)
            net.partition([leader], others)
        new = await wait_leader(nodes, others)
        assert new != leader
        # Rejections stay with their items; the rest of the batch commits.
        tail = await batch(new, 7000, 20, [Refused("submit: unsignable payload"),
                                           nodes[new].submit.sign("no.such", report(1), None)])
        assert tail[20]["status"] == "rejected" and tail[20]["tx_hash"] is None
        assert tail[21]["status"] == "rejected" and "no.such" in str(tail[21]["reason"])
        # The same batch again: the same receipts, nothing new.
        again = await batch(new, 7000, 20)
        assert again == tail[:20]
        net.heal()
        with trio.fail_after(30):
            while len({n.applier.head.block_hash for n in nodes.values()}) != 1:
                await trio.sleep(0.1)
        for n in nodes.values():
            n.crash()
    assert len(receipts) == 3 * 120 + 150 + 20
    for store in stores.values():
        applied: dict[bytes, int] = {}
        height = 1
        while store.block_by_height(height) is not None:
            for t in store.block_txs(height):
                if t.status == "applied":
                    applied[t.tx_hash] = applied.get(t.tx_hash, 0) + 1
            height += 1
        assert all(n == 1 for n in applied.values())
        for h, r in receipts.items():
            rec = store.tx(bytes.fromhex(h))
            assert rec is not None and rec.status == "applied"
            assert (rec.height, rec.position) == (r["height"], r["index"])


async def test_a_batch_kicked_by_a_leader_change_is_still_woken_by_its_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """kick_all (leader change, snapshot) must not leave a waiting batch registered where
    block_applied no longer looks: it re-registers and returns when its block is applied, not
    a RETRY_S poll later; and a batch that stops waiting takes its registrations with it."""
    net, stores, nodes = sim_cluster(
        3, LinkFaults(drop_rate=0.0, min_delay_s=0.001, max_delay_s=0.002))
    async with trio.open_nursery() as nursery:
        for n in nodes.values():
            await nursery.start(n.run)
        leader = await wait_leader(nodes, [1, 2, 3])
        follower = next(k for k in (1, 2, 3) if k != leader)
        svc = nodes[follower].submit
        txs = [svc.sign("epi.report", report(i), None) for i in range(5)]
        done: dict[str, float] = {}

        async def go() -> None:
            got = await svc.submit_many(list(txs), 30)
            assert [r["status"] for r in got] == ["committed"] * 5
            done["at"] = trio.current_time()

        nursery.start_soon(go)
        await trio.testing.wait_all_tasks_blocked()
        assert all(t.hash in svc._kicks for t in txs)
        svc.kick_all()
        with trio.fail_after(10):
            while not all(stores[follower].tx(t.hash) for t in txs):
                await trio.sleep(0.001)
        stored_at = trio.current_time()
        with trio.fail_after(10):
            while "at" not in done:
                await trio.sleep(0.001)
        from hzp2p.node.submit import RETRY_S

        assert done["at"] - stored_at < RETRY_S / 10, (done["at"], stored_at)
        assert not any(t.hash in svc._kicks for t in txs)

        # A batch that gives up (nothing can reach the leader) leaves nothing registered.
        net.partition([follower], [k for k in (1, 2, 3) if k != follower])
        lost = [svc.sign("epi.report", report(i), None) for i in range(100, 103)]
        got = await svc.submit_many(lost, 2)
        assert [r["status"] for r in got] == ["pending"] * 3
        assert not any(t.hash in svc._kicks for t in lost)
        with trio.move_on_after(0.5):  # and one cancelled while it waits
            await svc.submit_many([svc.sign("epi.report", report(200), None)], 30)
        assert not svc._kicks
        nursery.cancel_scope.cancel()
