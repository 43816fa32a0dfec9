"""Real daemons (issue 19): blocks get quorum certificates, `admin receipt` writes a receipt on one
node, and `hzp2p verify-receipt` checks it with only the genesis file once every daemon is stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hzp2p.admin.protocol import AdminError
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


def report(i: int, value: int | None = None) -> dict[str, Any]:
    return {"report_id": f"rc{i}", "region": "north", "metric": "cases",
            "value": i if value is None else value, "period": "2026-W47"}


def hzp2p(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hzp2p.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_receipts_from_one_node_verify_offline_with_the_genesis_only(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "c", 3)
    offline = tmp_path / "offline"
    offline.mkdir()
    try:
        c.start_all()
        c.wait_leader(20)
        ok = [c.submit(1 + i % 3, "epi.report", report(i), wait_s=30) for i in range(6)]
        assert all(r["status"] == "committed" for r in ok), ok
        # the same report_id again: accepted into a block, refused by the contract
        dup = c.submit(2, "epi.report", report(0, value=99), wait_s=30)
        assert dup["status"] == "rejected", dup

        def receipt(k: int, tx_hash: str, out: Path, *extra: str) -> dict[str, Any]:
            def ready() -> dict[str, Any] | None:
                r = hzp2p("admin", "--config", str(c.config(k)), "--json", "receipt", tx_hash,
                          "--out", str(out), *extra)
                if r.returncode == 0:
                    return dict(json.loads(r.stdout))
                # not certified yet, or the daemon too slow to answer on a loaded machine
                assert "not certified yet" in r.stderr or "time" in r.stderr, r.stderr
                return None
            return dict(c.wait_for("a certified receipt", ready, 60))

        got = receipt(3, ok[4]["tx_hash"], offline / "r.bin")
        assert got["height"] == ok[4]["height"] and got["verdict"] == "accepted"
        assert len(got["certified_by"]) >= 2 and got["voters"] == 3
        receipt(1, dup["tx_hash"], offline / "dup.b64", "--hash-only", "--base64")
        receipt(2, dup["tx_hash"], offline / "dup.qr", "--hash-only", "--compact")
        height = c.wait_converged(15)
        c.wait_for("every block with transactions certified", lambda: all(
            not c.call(k, "verify")["certificates"]["uncertified"] for k in c.ids), 60)
        for k in c.ids:
            v = c.call(k, "verify")
            assert v["ok"] is True, v
            assert v["certificates"]["certified"] >= height - 2, v
        with pytest.raises(AdminError, match="not_found"):
            c.call(1, "receipt", {"tx_hash": "00" * 32})
    finally:
        c.close()
    # Only the genesis and the receipts, no node running, in another directory.
    shutil.copy(c.root / "genesis.toml", offline / "genesis.toml")
    shutil.rmtree(c.root)
    r = hzp2p("verify-receipt", "r.bin", "--genesis", "genesis.toml", cwd=offline)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"transaction {ok[4]['tx_hash']}, verdict accepted, in block "
                               f"{ok[4]['height']} of chain ")
    assert "voters)" in r.stdout
    r = hzp2p("verify-receipt", "dup.b64", "--genesis", "genesis.toml", "--json", cwd=offline)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "rejected" and "report_id" in out["reason"]
    assert (offline / "dup.qr").read_text().startswith("HZR1:")
    r = hzp2p("verify-receipt", "dup.qr", "--genesis", "genesis.toml", "--json", cwd=offline)
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "rejected", r.stderr
    # one flipped byte: refused with the reason, exit 1
    data = bytearray((offline / "r.bin").read_bytes())
    data[len(data) // 2] ^= 0x40
    (offline / "bad.bin").write_bytes(bytes(data))
    r = hzp2p("verify-receipt", "bad.bin", "--genesis", "genesis.toml", cwd=offline)
    assert r.returncode == 1 and r.stderr.startswith("hzp2p verify-receipt: invalid: receipt ")
    r = hzp2p("verify-receipt", "missing.bin", "--genesis", "genesis.toml", cwd=offline)
    assert r.returncode == 2
