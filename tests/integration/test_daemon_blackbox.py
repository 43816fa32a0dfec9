"""Black-box run (issue 6): 5 daemons take 2,000 epi.report submits from concurrent clients
through random nodes while the leader is killed twice; afterwards every acknowledged report is
in every node's chain exactly once and `verify` passes everywhere."""

from __future__ import annotations

import os
import random
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from hzp2p.admin.client import AdminClientError, open_admin_client
from hzp2p.admin.protocol import AdminError
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

N_REPORTS = int(os.environ.get("HZP2P_BLACKBOX_REPORTS", "2000"))
CLIENTS = 40
WAIT_S = 15.0


async def submit_one(c: LocalCluster, rng: random.Random, i: int) -> dict[str, Any]:
    """Submit report i through random live nodes until a node answers with a receipt."""
    payload = {"report_id": f"bb-{i}", "region": "r", "metric": "cases", "value": i,
               "period": "p"}
    with trio.fail_after(120):
        while True:
            k = rng.choice([n for n in c.ids if c.running(n)] or c.ids)
            try:
                async with open_admin_client(c.sockets[k]) as client:
                    r: dict[str, Any] = await client.call(
                        "submit", {"type": "epi.report", "payload": payload, "wait_s": WAIT_S},
                        timeout_s=WAIT_S + 5)
            except (AdminClientError, AdminError, OSError):
                await trio.sleep(0.2)
                continue
            if r["status"] == "committed" or (
                r["status"] == "rejected" and "already accepted" in (r["reason"] or "")
            ):
                return r
            await trio.sleep(0.1)  # pending (leader change) or refused: try again


async def run_load(c: LocalCluster, acked: dict[int, dict[str, Any]]) -> None:
    rng = random.Random(6)
    todo = iter(range(N_REPORTS))

    async def client() -> None:
        for i in todo:
            acked[i] = await submit_one(c, rng, i)

    async def chaos() -> None:
        for frac in (0.3, 0.65):
            while len(acked) < frac * N_REPORTS:
                await trio.sleep(0.05)
            leader = await trio.to_thread.run_sync(lambda: c.wait_leader(20))
            c.kill(leader)
            survivors = [k for k in c.ids if k != leader]
            await trio.to_thread.run_sync(partial(c.wait_leader, 20, among=survivors))
            c.start(leader)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(chaos)
        for _ in range(CLIENTS):
            nursery.start_soon(client)


def test_five_nodes_two_leader_kills_every_ack_once(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 5) as c:
        c.start_all()
        c.wait_leader(30)
        acked: dict[int, dict[str, Any]] = {}
        trio.run(run_load, c, acked)
        assert len(acked) == N_REPORTS
        known = {r["tx_hash"] for r in acked.values() if r["status"] == "committed"}
        height = c.wait_converged(60, min_height=max(
            r["height"] for r in acked.values() if r["status"] == "committed"))
        chains = {k: c.chain(k, height) for k in c.ids}
        assert all(ch == chains[1] for ch in chains.values())
        for k in c.ids:
            counts: dict[str, int] = {}
            reports = 0
            for h in range(1, height + 1):
                for tx in c.call(k, "block", {"height": h})["txs"]:
                    if tx["status"] == "committed":
                        counts[tx["tx_hash"]] = counts.get(tx["tx_hash"], 0) + 1
                        reports += tx["type"] == "epi.report"
            assert all(counts.get(h) == 1 for h in known), k
            assert reports == N_REPORTS, (k, reports)  # report ids are unique: each once
            assert c.call(k, "verify", timeout_s=60)["ok"] is True
