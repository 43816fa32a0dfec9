"""Membership with real daemons: a genesis learner replicates without voting; a new institution
is admitted by the authorities' vote, its daemon joins as a learner and catches up, and a
promotion makes it a voter. Issue 7: the same under a background writer with the leader killed
mid-change and a stopped voter removed (every acknowledged write in the chain exactly once, ids
never reused), and a voter whose data directory was wiped refuses to rejoin under its old id."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from hzp2p.admin.client import AdminClientError
from hzp2p.admin.protocol import AdminError
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


def report(i: int) -> dict[str, object]:
    return {"report_id": f"m{i}", "region": "r", "metric": "m", "value": i, "period": "p"}


def test_learner_admission_by_vote_and_promotion(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 3, 1) as c:
        c.start_all()
        leader = c.wait_leader(20)
        # The learner's admin socket may come up after the voters have elected a leader.
        c.wait_for("node 4 to follow the leader as a learner",
                   lambda: (s := c.status(4)) is not None and s["leader_id"] == leader, 20)
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


# --------------------------------------------------------------------------- issue 7, real daemons
class Writer:
    """A background submitter: one epi.report at a time through a random member, recording
    every acknowledged (committed) transaction and the phase it was acknowledged in."""

    def __init__(self, c: LocalCluster) -> None:
        self.c = c
        self.targets: list[int] = list(c.ids)
        self.phase = "start"
        self.acked: dict[str, str] = {}  # tx_hash -> phase
        self.stop = threading.Event()
        self.errors = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(7)
        i = 0
        while not self.stop.is_set():
            k = rng.choice(self.targets)
            i += 1
            try:
                r = self.c.submit(k, "epi.report", report(100_000 + i), wait_s=5)
            except (AdminClientError, AdminError, OSError):
                self.errors += 1
                time.sleep(0.1)
                continue
            if r["status"] == "committed":
                self.acked[r["tx_hash"]] = self.phase
            time.sleep(0.02)

    def acks_in(self, phase: str) -> int:
        return sum(1 for p in list(self.acked.values()) if p == phase)

    def wait_acks(self, phase: str, n: int = 3) -> None:
        self.c.wait_for(f"{n} writes acknowledged during {phase!r}",
                        lambda: self.acks_in(phase) >= n, 30)


def admin_cli(c: LocalCluster, k: int, *args: str) -> dict[str, Any]:
    """`hzp2p admin --config nodeK/config.toml ARGS --json`; exit status 0 expected."""
    out = subprocess.run(
        [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(k)), *args,
         "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def conf_changes_applied(c: LocalCluster, k: int, change: str, target: int) -> int:
    """How many times node k's log says it applied this Raft configuration change."""
    n = 0
    for line in c.log_path(k).read_text(encoding="utf-8", errors="replace").splitlines():
        if '"conf_change_applied"' not in line:
            continue
        rec = json.loads(line)
        if rec.get("change") == change and rec.get("target") == target:
            n += 1
    return n


def in_conf(c: LocalCluster, node: int, among: list[int]) -> bool | None:
    lead = c.leader(among)
    if lead is None:
        return None
    return any(p["node_id"] == node for p in c.call(lead, "peers")["peers"])


def test_admit_promote_remove_a_stopped_voter_under_writes(tmp_path: Path) -> None:
    """Issue 7: a 3-voter cluster admits a fourth institution as a learner (the leader is
    SIGKILLed and restarted right after the vote, mid-change: the change completes once and
    no second one starts), starts its daemon, promotes it, removes a voter that was killed
    first, and keeps accepting writes throughout: every acknowledged write is in the final
    chain exactly once. Governance never hands out an id twice."""
    with LocalCluster(tmp_path / "c", 3) as c:
        c.start_all()
        c.wait_leader(20)
        w = Writer(c)
        w.thread.start()
        try:
            w.wait_acks("start")
            # 1. admit node 4 by vote (1 proposes, 2 approves); kill the leader at once.
            w.phase = "admit"
            c.prepare_node(4)
            signing, node = c.verify_keys_hex(4)
            r = c.call(1, "add_learner", {"name": "Newcomer Clinic", "roles": ["hospital"],
                                          "signing_key": signing, "node_key": node,
                                          "address": c.files[4].address, "wait_s": 10},
                       timeout_s=15)
            assert r["status"] == "committed" and r["node_id"] is None
            assert r["proposal_id"] == 1
            assert c.submit(2, "member.vote", {"proposal_id": 1, "approve": True})["status"] == (
                "committed")
            leader = killed = c.wait_leader(20)
            c.kill(leader)
            w.targets = [k for k in (1, 2, 3) if k != leader]
            c.wait_leader(20, among=w.targets)
            c.start(leader)
            c.wait_for("the old leader to be back", lambda: c.status(leader) is not None, 20)
            w.targets = [1, 2, 3]
            c.wait_for("node 4 in the configuration",
                       lambda: in_conf(c, 4, [1, 2, 3]), 30)
            members = {m["inst_id"]: m for m in c.call(1, "members")["members"]}
            assert members[4]["signing_key"] == signing and members[4]["voter"] is False
            w.wait_acks("admit")
            # 2. its daemon starts and replicates as a learner
            w.phase = "learner"
            c.start(4)
            c.wait_for("node 4 to replicate as a learner",
                       lambda: (s := c.status(4)) is not None and s["role"] == "learner"
                       and s["leader_id"] == c.leader([1, 2, 3]), 30)
            w.targets = [1, 2, 3, 4]
            w.wait_acks("learner")
            # 3. promotion
            w.phase = "promote"
            r = c.call(1, "promote", {"node_id": 4, "wait_s": 10}, timeout_s=15)
            assert r["status"] == "committed" and r["proposal_id"] == 2
            assert c.submit(2, "member.vote", {"proposal_id": 2, "approve": True})["status"] == (
                "committed")
            c.wait_for("node 4 to become a voter",
                       lambda: (s := c.status(4)) is not None
                       and s["role"] in ("follower", "leader"), 30)
            w.wait_acks("promote")
            # 4. node 3 dies; it is removed while stopped (a quorum of 1, 2, 4 remains)
            w.phase = "remove"
            if c.leader([1, 2, 3, 4]) == 3:
                c.call(3, "transfer_leader", {"node_id": 1})
                c.wait_for("node 1 to lead", lambda: c.leader([1, 2, 3, 4]) == 1, 20)
            w.targets = [1, 2, 4]
            c.kill(3)
            # (through the `hzp2p admin` commands docs/membership.md gives operators)
            r = admin_cli(c, 1, "remove", "3", "--wait", "10")
            assert r["status"] == "committed" and r["proposal_id"] == 3
            r = admin_cli(c, 2, "submit", "member.vote", "--payload",
                          '{"proposal_id": 3, "approve": true}', "--wait", "10")
            assert r["status"] == "committed"
            c.wait_for("node 3 to leave the configuration",
                       lambda: in_conf(c, 3, [1, 2, 4]) is False, 30)
            w.wait_acks("remove")
            # 5. ids are never reused: the removed institution cannot come back under its
            # keys, and a newcomer gets a fresh id, not 3.
            s3, n3 = c.verify_keys_hex(3)
            again = c.call(1, "add_learner", {"name": "Lab again", "roles": ["lab"],
                                              "signing_key": s3, "node_key": n3,
                                              "address": c.files[3].address, "wait_s": 10},
                           timeout_s=15)
            assert again["status"] == "rejected" and "already belongs" in again["reason"]
            fresh = SigningKey.generate(), SigningKey.generate()
            r = c.call(1, "add_learner", {"name": "Second Newcomer", "roles": ["lab"],
                                          "signing_key": bytes(fresh[0].verify_key).hex(),
                                          "node_key": bytes(fresh[1].verify_key).hex(),
                                          "address": "127.0.0.1:9", "wait_s": 10},
                       timeout_s=15)
            assert r["status"] == "committed"
            assert c.submit(2, "member.vote", {"proposal_id": 4, "approve": True})["status"] == (
                "committed")
            ids = {m["inst_id"] for m in c.call(1, "members")["members"]}
            assert 5 in ids and max(ids) == 5
        finally:
            w.stop.set()
            w.thread.join(30)
        assert w.acks_in("start") and w.acks_in("admit") and w.acks_in("learner")
        assert w.acks_in("promote") and w.acks_in("remove")
        live = [1, 2, 4]
        height = c.wait_converged(30, ids=live)
        chains = {k: c.chain(k, height) for k in live}
        assert all(ch == chains[1] for ch in chains.values())
        counts: dict[str, int] = {}
        for h in range(1, height + 1):
            for tx in c.call(1, "block", {"height": h})["txs"]:
                if tx["status"] == "committed":
                    counts[tx["tx_hash"]] = counts.get(tx["tx_hash"], 0) + 1
        missing = [h for h in w.acked if counts.get(h) != 1]
        assert not missing, f"{len(missing)} acknowledged writes not in the chain exactly once"
        assert all(c.call(k, "verify", timeout_s=60)["ok"] for k in live)
        # The change the killed leader left pending completed once, and only once, everywhere
        # (the killed leader may have applied it just before it died, its log line lost).
        for k in live:
            n = conf_changes_applied(c, k, "add_learner", 4)
            assert n == 1 or (n == 0 and k == killed), (k, n)
            assert conf_changes_applied(c, k, "promote", 4) == 1, k
            assert conf_changes_applied(c, k, "remove", 3) == 1, k


def test_a_wiped_voter_restarting_under_its_old_id_stops_with_a_clear_error(
    tmp_path: Path,
) -> None:
    """Fabric #3639: a voter's data directory is deleted and the daemon restarted with the
    same id. The cluster must not panic; the node refuses to run (exit 1, one line on
    stderr naming the cure) instead of voting with a log it no longer has."""
    with LocalCluster(tmp_path / "c", 3) as c:
        c.start_all()
        leader = c.wait_leader(20)
        for i in range(3):
            assert c.submit(leader, "epi.report", report(500 + i))["status"] == "committed"
        victim = next(k for k in (1, 2, 3) if k != leader)
        c.wait_converged(15)
        c.kill(victim)
        shutil.rmtree(c.files[victim].directory / "data")
        (c.files[victim].directory / "data").mkdir()
        c.start(victim)
        c.wait_for("the wiped node to exit", lambda: not c.running(victim), 20)
        assert c.procs[victim].returncode == 1
        err = c.log_path(victim).read_text(encoding="utf-8").strip().splitlines()[-1]
        assert err.startswith("hzp2p run: ") and "data was lost" in err, err
        assert "admit it anew" in err
        assert c.leader([k for k in (1, 2, 3) if k != victim]) == leader
        assert c.submit(leader, "epi.report", report(600))["status"] == "committed"
