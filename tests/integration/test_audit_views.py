"""The auditors' view on real daemons (issue 19): `admin tx` and `admin block` show the signer,
the payload with ciphertexts as sizes only, the verdict and the certificate; `admin refused`
lists refusals at admission and rejections in blocks, with reasons, by time and in pages."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


def admin(c: LocalCluster, k: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hzp2p.cli", "admin", "--config",
                           str(c.config(k)), *args], capture_output=True, text=True, timeout=60)


def admin_json(c: LocalCluster, k: int, *args: str) -> Any:
    r = admin(c, k, "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def report(rid: str, value: int = 1) -> dict[str, Any]:
    return {"report_id": rid, "region": "north", "metric": "cases", "value": value,
            "period": "2026-W47"}


def test_auditors_view_on_a_real_cluster(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "c", 3)
    try:
        c.start_all()
        c.wait_leader(20)
        # node 3 is a lab: a result with encrypted fields
        subject = SigningKey.generate().verify_key.encode().hex()
        lab = c.call(3, "lab_result", {
            "subject_key": subject, "test_id": "T-1", "result": "positive",
            "sample_ms": int(time.time() * 1000) - 1000, "fields": {"ct": 21, "note": "PCR"},
            "wait_s": 30}, timeout_s=40)
        assert lab["status"] == "committed", lab
        ok = c.submit(1, "epi.report", report("a1"), wait_s=30)
        dup = c.submit(2, "epi.report", report("a1", 2), wait_s=30)  # rejected in its block
        assert ok["status"] == "committed" and dup["status"] == "rejected", (ok, dup)
        bad = c.submit(1, "epi.report", {"report_id": "a2"}, wait_s=30)  # refused at admission
        assert bad["status"] == "rejected" and bad["height"] is None, bad

        # admin tx: signer, payload sizes, certificate (once the block is certified)
        def certified_tx() -> Any:
            t = admin_json(c, 1, "tx", lab["tx_hash"])
            return t if t.get("certificate") else None
        t = c.wait_for("the lab result's block certified", certified_tx, 60)
        assert t["status"] == "committed" and t["type"] == "lab.result"
        assert t["signer"]["inst_id"] == 3 and t["signer"]["current_key"] is True
        assert t["signer"]["name"] and len(t["signer"]["key"]) == 64
        rec = t["payload"]["record"]
        assert rec["ciphertext"].startswith("<") and rec["ciphertext"].endswith(" bytes>")
        assert all(v.endswith(" bytes>") for v in rec["sealed_keys"].values())
        assert t["payload"]["result"] == "positive"
        cert = t["certificate"]
        assert cert["voters"] == 3 and cert["quorum"] == 2 and len(cert["signers"]) >= 2
        assert cert["carried_in"] > t["height"]
        text = admin(c, 2, "tx", lab["tx_hash"])
        assert text.returncode == 0, text.stderr
        assert "(institution 3, key " in text.stdout and "ciphertext: <" in text.stdout
        assert "certificate: signed by " in text.stdout

        # admin block: the same per transaction, and the block's certificate
        b = admin_json(c, 1, "block", str(t["height"]))
        i = t["index"]
        assert b["tx_details"][i]["signer"]["inst_id"] == 3
        assert b["tx_details"][i]["payload"] == t["payload"]
        assert b["certificate"]["signer_ids"] == cert["signer_ids"]
        assert b["proposer_name"]
        text = admin(c, 1, "block", str(t["height"]))
        assert text.returncode == 0 and "certificate: signed by" in text.stdout, text
        carrier = admin_json(c, 1, "block", str(cert["carried_in"]))
        assert t["height"] in [x["height"] for x in carrier["carries_certificates"]]

        # admin refused: both kinds, newest first, with reasons; paged; by time
        on1 = admin_json(c, 1, "refused")
        got = {r["tx_hash"]: r for r in on1["refused"]}
        assert got[bad["tx_hash"]]["where"] == "admission" and got[bad["tx_hash"]]["problems"]
        assert got[dup["tx_hash"]]["where"] == "block"
        assert "report_id" in got[dup["tx_hash"]]["reason"]
        assert got[dup["tx_hash"]]["height"] == dup["height"]
        times = [r["at_ms"] for r in on1["refused"]]
        assert times == sorted(times, reverse=True)
        # node 2 did not refuse `bad` itself: refusals at admission are local
        on2 = {r["tx_hash"] for r in admin_json(c, 2, "refused")["refused"]}
        assert dup["tx_hash"] in on2
        first = admin_json(c, 1, "refused", "--limit", "1")
        assert len(first["refused"]) == 1 and first["next_after"]
        second = admin_json(c, 1, "refused", "--limit", "1", "--after", first["next_after"])
        assert len(second["refused"]) == 1
        assert second["refused"][0]["tx_hash"] != first["refused"][0]["tx_hash"]
        pages = [first["refused"][0]["tx_hash"], second["refused"][0]["tx_hash"]]
        assert pages == [r["tx_hash"] for r in on1["refused"][:2]]
        assert admin_json(c, 1, "refused", "--from", "2999-01-01")["refused"] == []
        assert admin_json(c, 1, "refused", "--to", "2000-01-01T00:00:00Z")["refused"] == []
        text = admin(c, 1, "refused")
        assert text.returncode == 0 and "at admission:" in text.stdout
        assert f"in block {dup['height']} #" in text.stdout
        usage = admin(c, 1, "refused", "--from", "yesterday")
        assert usage.returncode == 2 and "not a time" in usage.stderr
        assert admin(c, 1, "refused", "--after", "nonsense").returncode != 0
    finally:
        c.close()
