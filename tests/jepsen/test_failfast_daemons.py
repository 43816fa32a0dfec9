"""Issue 22, fail fast with real daemons: a node left without a quorum answers a submit with
`no_quorum` (naming the node and the last leader) within about an election timeout instead
of waiting out --wait; once a quorum is back the same CLI command commits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

WAIT_S = 10.0


def cli_submit(c: LocalCluster, k: int, report_id: str) -> tuple[int, dict[str, object], str, float]:
    payload = {"report_id": report_id, "region": "r", "metric": "cases", "value": 1, "period": "p"}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(k)), "--json",
         "submit", "epi.report", "--payload", json.dumps(payload), "--wait", str(WAIT_S)],
        capture_output=True, check=False, timeout=WAIT_S + 30,
    )
    took = time.monotonic() - start
    return done.returncode, json.loads(done.stdout or b"{}"), done.stderr.decode(), took


def test_a_node_without_quorum_fails_fast_and_says_why(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 3) as c:
        c.start_all()
        leader = c.wait_up(30)
        term = c.status(leader)["term"]  # type: ignore[index]
        survivor = next(k for k in c.ids if k != leader)
        code, receipt, _, _ = cli_submit(c, survivor, "ff-0")
        assert code == 0 and receipt["status"] == "committed"
        for k in c.ids:
            if k != survivor:
                c.kill(k)
        time.sleep(1.0)  # the survivor's election timeout (0.5-1 s) passes: it knows no leader
        code, out, err, took = cli_submit(c, survivor, "ff-1")
        assert code == 1, (out, err)
        error = out["error"]
        assert isinstance(error, dict) and error["code"] == "no_quorum"
        assert f"no quorum reachable from node {survivor}" in error["message"]
        assert f"last leader {leader} at term {term}" in error["message"]
        assert error["retry_tx"]
        # An election timeout is 0.5 s here; the CLI's own start-up is most of this bound.
        assert took < WAIT_S / 2, took
        print(f"\nno_quorum answered in {took:.2f} s (CLI start-up included; --wait {WAIT_S:g})")
        # a batch: what the node signed comes back pending with the words and the signed
        # transaction (for --fallback), not after the whole --wait
        batch = tmp_path / "batch.jsonl"
        batch.write_text("".join(json.dumps({"type": "epi.report", "payload": {
            "report_id": f"ffm-{i}", "region": "r", "metric": "cases", "value": 1,
            "period": "p"}}) + "\n" for i in range(3)))
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(survivor)),
             "--json", "submit-many", "--file", str(batch), "--wait", str(WAIT_S)],
            capture_output=True, check=False, timeout=WAIT_S + 30)
        took = time.monotonic() - start
        got = json.loads(done.stdout or b"{}")
        assert done.returncode == 1 and got["pending"] == 3, (got, done.stderr)
        assert all(r["no_quorum"] and r["retry_tx"] and
                   f"no quorum reachable from node {survivor}" in r["reason"]
                   for r in got["receipts"])
        assert took < WAIT_S / 2, took
        # a linearizable read: the same condition, named, not a timeout
        done = subprocess.run(
            [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(survivor)),
             "--json", "members", "--linearizable"],
            capture_output=True, check=False, timeout=WAIT_S + 30)
        assert done.returncode == 1 and b"no_quorum" in done.stdout + done.stderr, done
        for k in c.ids:
            if k != survivor:
                c.start(k)
        c.wait_up(30)
        code, receipt, err, _ = cli_submit(c, survivor, "ff-1")
        assert code == 0 and receipt["status"] == "committed", err
