"""Catch-up through a snapshot with real daemons (issue 7): three daemons with a small
`raft.snapshot_threshold_entries` compact their SQLite logs; an institution admitted
afterwards receives the leader's snapshot over TCP, verifies and installs it, and ends with
the same state and head as everyone else; the others' logs stay under the threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

THRESHOLD = 40


def report(i: int) -> dict[str, object]:
    return {"report_id": f"cd{i}", "region": "r", "metric": "m", "value": i, "period": "p"}


def set_threshold(config: Path) -> None:
    text = config.read_text(encoding="utf-8")
    if "[raft]\n" in text:
        text = text.replace("[raft]\n", f"[raft]\nsnapshot_threshold_entries = {THRESHOLD}\n", 1)
    else:
        text += f"\n[raft]\nsnapshot_threshold_entries = {THRESHOLD}\n"
    config.write_text(text, encoding="utf-8")


def test_a_learner_admitted_after_compaction_installs_a_snapshot(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 3) as c:
        for k in c.ids:
            set_threshold(c.config(k))
        c.start_all()
        leader = c.wait_leader(20)
        for i in range(3 * THRESHOLD):
            assert c.submit(leader, "epi.report", report(i))["status"] == "committed"
        st = c.status(leader)
        assert st is not None and st["log_first_index"] > THRESHOLD
        assert st["snapshots"]["compactions"] >= 1
        # Admit node 4 by vote, then start it.
        files = c.prepare_node(4)
        set_threshold(files.config)
        signing, node = c.verify_keys_hex(4)
        r = c.call(1, "add_learner", {"name": "Late Lab", "roles": ["lab"],
                                      "signing_key": signing, "node_key": node,
                                      "address": files.address, "wait_s": 10}, timeout_s=15)
        assert r["status"] == "committed"
        vote = {"proposal_id": r["proposal_id"], "approve": True}
        assert c.submit(2, "member.vote", vote)["status"] == "committed"
        c.start(4)
        c.wait_for("node 4 to install a snapshot",
                   lambda: (s := c.status(4)) is not None and s["snapshots"]["installed"] >= 1,
                   30)
        c.wait_converged(30)  # the snapshot may predate node 4's own admission: catch up
        r = c.submit(4, "epi.report", report(10_000))
        assert r["status"] == "committed", r
        height = c.wait_converged(30)
        assert c.status(4)["snapshots"]["refused"] == 0  # type: ignore[index]
        text = c.call(4, "metrics")["text"]
        assert 'hzp2p_snapshots_total{event="installed"} 1' in text, text
        assert "hzp2p_log_compactions_total" in c.call(1, "metrics")["text"]
        everything = {"prefix": "-", "limit": 10_000}
        states = {k: c.call(k, "state_scan", everything)["items"] for k in c.ids}
        assert all(s == states[1] for s in states.values())
        assert len(states[1]) > 3 * THRESHOLD  # every report is in the state
        for k in (1, 2, 3):
            s = c.status(k)
            assert s is not None
            assert s["commit_index"] - s["log_first_index"] + 1 <= THRESHOLD, (k, s)
            assert c.call(k, "verify", timeout_s=60)["ok"] is True
        # Node 4 holds the blocks after its snapshot, not the ones before it.
        assert c.call(4, "block", {"height": height})["hash"] == c.call(1, "block", {
            "height": height})["hash"]
        # ...and verifies its snapshot and every block after it (not "blocks missing").
        v = c.call(4, "verify", {"integrity": True}, timeout_s=60)
        assert v["ok"] is True and v["snapshot_height"] is not None, v
        assert v["from_height"] == v["snapshot_height"] + 1 <= v["height"], v
