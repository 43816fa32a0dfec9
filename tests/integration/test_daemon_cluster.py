"""Real `hzp2p run` processes on 127.0.0.1: election, submits through any node, crash and catch-up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from hzp2p.admin.protocol import AdminError
from hzp2p.client import Client
from hzp2p.ledger.genesis import load_genesis
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


def report(i: int, prefix: str = "r") -> dict[str, Any]:
    return {"report_id": f"{prefix}{i}", "region": "north", "metric": "cases", "value": i,
            "period": "2026-W47"}


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "c", 3)
    try:
        c.start_all()
        yield c
    finally:
        c.close()


def committed_once(c: LocalCluster, k: int, height: int) -> dict[str, int]:
    """tx hash -> times it appears with status committed in node k's chain."""
    seen: dict[str, int] = {}
    for h in range(1, height + 1):
        for tx in c.call(k, "block", {"height": h})["txs"]:
            if tx["status"] == "committed":
                seen[tx["tx_hash"]] = seen.get(tx["tx_hash"], 0) + 1
    return seen


def test_three_daemons_elect_accept_submits_anywhere_and_agree(cluster3: LocalCluster) -> None:
    c = cluster3
    leader = c.wait_leader(20)
    receipts = [c.submit(k, "epi.report", report(k)) for k in c.ids]
    assert [r["status"] for r in receipts] == ["committed"] * 3, receipts
    # The same request again (to the same node) is the same transaction, applied once.
    again = c.submit(1, "epi.report", report(1))
    assert again["tx_hash"] == receipts[0]["tx_hash"]
    assert (again["height"], again["index"]) == (receipts[0]["height"], receipts[0]["index"])
    height = c.wait_converged(15, min_height=max(r["height"] for r in receipts))
    chains = {k: c.chain(k, height) for k in c.ids}
    assert chains[1] == chains[2] == chains[3]
    for k in c.ids:
        st = c.status(k)
        assert st is not None and st["leader_id"] == leader
        assert c.call(k, "verify")["ok"] is True
        tx = c.call(k, "tx", {"tx_hash": receipts[1]["tx_hash"]})
        assert tx["status"] == "committed" and tx["type"] == "epi.report"
    assert all(n == 1 for n in committed_once(c, 2, height).values())
    # Linearizable reads through ReadIndex, on the leader and forwarded from a follower.
    follower = next(k for k in c.ids if k != leader)
    for k in (leader, follower):
        assert c.call(k, "tx", {"tx_hash": receipts[0]["tx_hash"], "linearizable": True})[
            "status"] == "committed"
    assert len(c.call(follower, "members", {"linearizable": True})["members"]) == 3
    # One signed transaction handed to two nodes is applied once; both report that commit.
    citizen = Client(SigningKey.generate(), load_genesis(c.root / "genesis.toml").chain_id)
    tx = citizen.tx("consent.revoke", {"grant_id": "none"}, int(time.time() * 1000))
    raw = {"tx": tx.encode().hex(), "wait_s": 10}
    first = c.call(1, "submit_raw", raw, timeout_s=15)
    second = c.call(2, "submit_raw", raw, timeout_s=15)
    assert first["tx_hash"] == second["tx_hash"] == tx.hash.hex()
    assert first["status"] == second["status"] and first["status"] in ("committed", "rejected")
    assert (first["height"], first["index"]) == (second["height"], second["index"])
    text = c.call(leader, "metrics")["text"]
    assert "hzp2p_txs_committed_total" in text and 'hzp2p_raft_role{role="leader"} 1' in text
    # Leader transfer: the target takes over; a follower refuses with the leader's id.
    with pytest.raises(AdminError) as exc:
        c.call(follower, "transfer_leader", {"node_id": follower})
    assert exc.value.code == "not_leader"
    assert c.call(leader, "transfer_leader", {"node_id": follower}) == {"target": follower}
    c.wait_for("the transfer", lambda: c.leader() == follower, 10)
    assert c.submit(leader, "epi.report", report(9))["status"] == "committed"


def test_leader_sigkill_restart_catches_up_without_loss(cluster3: LocalCluster) -> None:
    c = cluster3
    old = c.wait_leader(20)
    acked: dict[str, dict[str, Any]] = {}
    for i in range(5):
        r = c.submit(1 + i % 3, "epi.report", report(i, "before"))
        assert r["status"] == "committed", r
        acked[r["tx_hash"]] = r
    c.kill(old)
    survivors = [k for k in c.ids if k != old]
    new = c.wait_leader(20, among=survivors)
    assert new != old
    for i in range(5):
        r = c.submit(survivors[i % 2], "epi.report", report(i, "after"))
        assert r["status"] == "committed", r
        acked[r["tx_hash"]] = r
    c.start(old)
    height = c.wait_converged(30, min_height=max(r["height"] for r in acked.values()))
    chains = {k: c.chain(k, height) for k in c.ids}
    assert chains[1] == chains[2] == chains[3]
    counts = committed_once(c, old, height)
    for h, r in acked.items():
        assert counts.get(h) == 1, (h, r)
        on_old = c.call(old, "tx", {"tx_hash": h})
        assert (on_old["status"], on_old["height"], on_old["index"]) == (
            "committed", r["height"], r["index"])
    assert c.call(old, "verify")["ok"] is True
