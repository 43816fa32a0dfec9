"""Key rotation on real daemons (issue 19): a voter's signing and node keys are rotated by a
governed transaction while the cluster runs; the rotated daemon switches without a
restart, keeps signing transactions, attestations and (as leader) blocks; receipts
from before and after the rotation verify offline with the genesis file alone; the
rotated node restarts on its new keys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from hzp2p.node.keys import load_signing_key, write_key_file
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


def hzp2p(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hzp2p.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def report(i: int) -> dict[str, Any]:
    return {"report_id": f"kr{i}", "region": "north", "metric": "cases", "value": i,
            "period": "2026-W49"}


def rotate(c: LocalCluster, target: int, proposer: int, voter: int) -> dict[str, Any]:
    """`rotate-keys --prepare` on the target, proposed by `proposer`, approved by `voter`."""
    prep = hzp2p("admin", "--config", str(c.config(target)), "--json", "rotate-keys",
                 "--prepare")
    assert prep.returncode == 0, prep.stderr
    keys = json.loads(prep.stdout)
    prop = hzp2p("admin", "--config", str(c.config(proposer)), "--json", "rotate-keys",
                 str(target), "--signing-key", keys["signing_key"], "--node-key",
                 keys["node_key"], "--wait", "30")
    assert prop.returncode == 0, prop.stderr
    pid = json.loads(prop.stdout)["proposal_id"]
    vote = c.call(voter, "vote", {"proposal_id": pid, "approve": True, "wait_s": 30},
                  timeout_s=40)
    assert vote["status"] == "committed" and vote["proposal"]["status"] == "approved", vote
    return dict(keys)


def receipt(c: LocalCluster, k: int, tx_hash: str, out: Path) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        r = hzp2p("admin", "--config", str(c.config(k)), "--json", "receipt", tx_hash,
                  "--out", str(out))
        if r.returncode == 0:
            return dict(json.loads(r.stdout))
        assert "not certified yet" in r.stderr or "time" in r.stderr, r.stderr
        return None
    return dict(c.wait_for("a certified receipt", ready, 60))


def test_rotating_voters_keys_keeps_the_cluster_and_receipts_working(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "c", 3)
    offline = tmp_path / "offline"
    offline.mkdir()
    d3 = c.files[3].directory
    try:
        c.start_all()
        leader = c.wait_leader(20)
        before = c.submit(3, "epi.report", report(0), wait_s=30)
        assert before["status"] == "committed", before
        old_signing = bytes(load_signing_key(d3 / "signing.key").verify_key).hex()

        # voter 3 (a lab) rotates: prepared on its machine, proposed and approved by authorities
        keys = rotate(c, 3, proposer=1, voter=2)
        members = {m["inst_id"]: m for m in c.call(2, "members")["members"]}
        assert members[3]["signing_key"] == keys["signing_key"] != old_signing
        assert members[3]["node_key"] == keys["node_key"]
        # the daemon switched by itself: files moved, no restart
        c.wait_for("node 3's key files moved", lambda: not (d3 / "signing.key.next").exists(), 20)
        assert bytes(load_signing_key(d3 / "signing.key").verify_key).hex() == keys["signing_key"]
        assert bytes(load_signing_key(d3 / "signing.key.old").verify_key).hex() == old_signing
        after = c.wait_for("node 3 signs with its new key", lambda: (
            r if (r := c.submit(3, "epi.report", report(1), wait_s=30))["status"] == "committed"
            else None), 60)
        # node 1 may apply that block a moment after node 3 heard "committed"
        c.wait_for("node 1 applies it", lambda: c.call(1, "status")["applied_index"]
                   >= c.call(3, "status")["applied_index"], 20)
        t = c.call(1, "tx", {"tx_hash": after["tx_hash"]})
        assert t["signer"]["key"] == keys["signing_key"] and t["signer"]["inst_id"] == 3
        t0 = c.call(1, "tx", {"tx_hash": before["tx_hash"]})
        assert t0["signer"]["key"] == old_signing and t0["signer"]["current_key"] is False

        # the leader rotates its own keys (it proposes, the other authority approves): the
        # blocks it signs after the rotation carry its new node key
        other = 2 if leader == 1 else 1
        if leader in (1, 2):
            prep = hzp2p("admin", "--config", str(c.config(leader)), "--json", "rotate-keys",
                         "--prepare", "--propose", "--wait", "30")
            assert prep.returncode == 0, prep.stderr
            pid = json.loads(prep.stdout)["proposal_id"]
            v = c.call(other, "vote", {"proposal_id": pid, "approve": True, "wait_s": 30},
                       timeout_s=40)
            assert v["proposal"]["status"] == "approved", v
        late = [c.submit(1 + i % 3, "epi.report", report(10 + i), wait_s=30) for i in range(3)]
        assert all(r["status"] == "committed" for r in late), late

        r_before = receipt(c, 1, before["tx_hash"], offline / "before.bin")
        r_after = receipt(c, 2, after["tx_hash"], offline / "after.bin")
        r_late = receipt(c, 3, late[-1]["tx_hash"], offline / "late.bin")
        assert r_after["voters"] == r_late["voters"] == 3 and r_before["verdict"] == "accepted"
        c.wait_for("every block certified, every chain verified", lambda: all(
            (v := c.call(k, "verify"))["ok"] and not v["certificates"]["uncertified"]
            for k in c.ids), 90)

        # node 3 restarts on its rotated keys and keeps working
        c.stop(3)
        c.start(3)
        c.wait_up(30, ids=[3])
        again = c.wait_for("node 3 back after its restart", lambda: (
            r if (r := c.submit(3, "epi.report", report(20), wait_s=30))["status"] == "committed"
            else None), 90)
        assert c.call(1, "tx", {"tx_hash": again["tx_hash"]})["signer"]["key"] == keys["signing_key"]
    finally:
        c.close()
    logs = "".join(c.log_path(k).read_text() for k in c.ids)
    assert logs.count('"keys_rotated"') == (2 if leader in (1, 2) else 1)
    assert '"block_refused"' not in logs  # no block signed with a key out of force
    # no node running: the genesis file and the receipts are enough
    shutil.copy(c.root / "genesis.toml", offline / "genesis.toml")
    shutil.rmtree(c.root)
    for name, tx in (("before.bin", before), ("after.bin", after), ("late.bin", late[-1])):
        r = hzp2p("verify-receipt", name, "--genesis", "genesis.toml", cwd=offline)
        assert r.returncode == 0, (name, r.stderr)
        assert r.stdout.startswith(f"transaction {tx['tx_hash']}, verdict accepted")


def test_a_rotation_to_keys_the_node_lacks_does_not_stop_the_cluster(tmp_path: Path) -> None:
    """Keys prepared elsewhere and never copied: the rotated daemon says so, stops proposing
    (handing leadership over if it led) and keeps following; the others go on. With the
    keys put in place as .next files, a restart switches it to them."""
    c = LocalCluster(tmp_path / "c", 3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d1 = c.files[1].directory
    try:
        c.start_all()
        c.wait_leader(20)
        new_s, new_n = SigningKey.generate(), SigningKey.generate()
        write_key_file(elsewhere / "signing.key.next", new_s)
        write_key_file(elsewhere / "node.key.next", new_n)
        prop = c.call(2, "rotate_keys", {"inst_id": 1, "signing_key": new_s.verify_key.encode().hex(),
                                         "node_key": new_n.verify_key.encode().hex(),
                                         "wait_s": 30}, timeout_s=40)
        assert prop["status"] == "committed", prop
        v = c.call(1, "vote", {"proposal_id": prop["proposal_id"], "approve": True,
                               "wait_s": 30}, timeout_s=40)
        assert v["proposal"]["status"] == "approved", v
        c.wait_for("node 1 reports the keys it lacks",
                   lambda: "rotated_keys_missing" in c.log_path(1).read_text(), 30)
        # the cluster goes on without node 1 proposing
        done = [c.submit(2 + i % 2, "epi.report", report(30 + i), wait_s=30) for i in range(3)]
        assert all(r["status"] == "committed" for r in done), done
        assert c.leader() in (2, 3)
        # the keys put in place: a restart switches to them, and node 1 signs again
        c.stop(1)
        for name in ("signing.key.next", "node.key.next"):
            shutil.copy(elsewhere / name, d1 / name)
        c.start(1)
        c.wait_up(30, ids=[1])
        r = c.wait_for("node 1 signs with its new key", lambda: (
            x if (x := c.submit(1, "epi.report", report(40), wait_s=30))["status"] == "committed"
            else None), 90)
        c.wait_for("node 2 applies it", lambda: c.call(2, "status")["applied_index"]
                   >= c.call(1, "status")["applied_index"], 20)
        t = c.call(2, "tx", {"tx_hash": r["tx_hash"]})
        assert t["signer"]["key"] == new_s.verify_key.encode().hex()
        assert bytes(load_signing_key(d1 / "node.key").verify_key) == new_n.verify_key.encode()
        c.wait_for("every chain verified", lambda: all(c.call(k, "verify")["ok"] for k in c.ids),
                   60)
    finally:
        c.close()
