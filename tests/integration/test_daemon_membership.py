"""Membership with real daemons: a genesis learner replicates without voting; a new institution
is admitted by the authorities' vote, its daemon joins as a learner and catches up, and a
promotion makes it a voter."""

from __future__ import annotations

from pathlib import Path

import pytest

from hzp2p.node.localcluster import LocalCluster

pytestmark = pytest.mark.slow


def report(i: int) -> dict[str, object]:
    return {"report_id": f"m{i}", "region": "r", "metric": "m", "value": i, "period": "p"}


def test_learner_admission_by_vote_and_promotion(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 3, 1) as c:
        c.start_all()
        leader = c.wait_leader(20)
        assert c.submit(4, "epi.report", report(0))["status"] == "committed"  # via the learner
        c.wait_converged(15, min_height=1)
        st4 = c.status(4)
        assert st4 is not None and st4["role"] == "learner" and st4["leader_id"] == leader

        c.prepare_node(5)
        signing, node = c.verify_keys_hex(5)
        files = c.files[5]
        r = c.call(1, "add_learner", {"name": "Newcomer Hospital", "roles": ["hospital"],
                                      "signing_key": signing, "node_key": node,
                                      "address": files.address, "wait_s": 10}, timeout_s=15)
        assert r["status"] == "committed" and r["node_id"] is None  # one of two votes so far
        vote = c.submit(2, "member.vote", {"proposal_id": 1, "approve": True})
        assert vote["status"] == "committed"
        members = {m["inst_id"]: m for m in c.call(3, "members")["members"]}
        assert members[5]["signing_key"] == signing and members[5]["voter"] is False
        c.start(5)
        c.wait_for("node 5 to replicate as a learner",
                   lambda: (s := c.status(5)) is not None and s["role"] == "learner"
                   and s["leader_id"] == c.leader(), 20)
        assert c.submit(5, "epi.report", report(1))["status"] == "committed"

        r = c.call(1, "promote", {"node_id": 5, "wait_s": 10}, timeout_s=15)
        assert r["status"] == "committed"
        assert c.submit(2, "member.vote", {"proposal_id": 2, "approve": True})["status"] == (
            "committed")
        c.wait_for("node 5 to become a voter",
                   lambda: (s := c.status(5)) is not None and s["role"] in ("follower", "leader"),
                   20)
        # Remove the genesis learner: governance, then the Raft configuration follows.
        assert c.call(1, "remove", {"node_id": 4, "wait_s": 10}, timeout_s=15)["status"] == (
            "committed")
        assert c.submit(2, "member.vote", {"proposal_id": 3, "approve": True})["status"] == (
            "committed")

        def removed() -> bool:
            lead = c.leader([1, 2, 3, 5])
            return lead is not None and all(
                p["node_id"] != 4 for p in c.call(lead, "peers")["peers"])

        c.wait_for("node 4 to leave the configuration", removed, 20)
        c.stop(4)
        assert c.submit(5, "epi.report", report(2))["status"] == "committed"
        c.files.pop(4)
        height = c.wait_converged(20)
        chains = {k: c.chain(k, height) for k in c.ids}
        assert all(ch == chains[1] for ch in chains.values())
        assert all(c.call(k, "verify")["ok"] for k in c.ids)
