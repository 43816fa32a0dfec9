"""Issue 22: another local process floods a real daemon's admin socket (200 idle connections,
garbage frames, oversized frames, half frames) while well-behaved clients submit, through the
async client and through `hzp2p admin submit`: not one well-behaved request fails, and the
daemon counts what it refused in its metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from hzp2p.admin.client import open_admin_client
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

FLOODER = Path(__file__).with_name("jepsen_flooder.py")
ASYNC_SUBMITS = 200
ASYNC_CLIENTS = 8
CLI_SUBMITS = 24
CLI_CLIENTS = 3
WAIT_S = 10.0


def payload(tag: str, i: int) -> dict[str, Any]:
    return {"report_id": f"flood-{tag}-{i}", "region": "r", "metric": "cases", "value": i,
            "period": "p"}


async def well_behaved(c: LocalCluster, failures: list[str], acked: list[str]) -> None:
    sock = c.sockets[1]
    todo_async = iter(range(ASYNC_SUBMITS))
    todo_cli = iter(range(CLI_SUBMITS))

    async def async_client() -> None:
        for i in todo_async:
            try:
                async with open_admin_client(sock, connect_timeout_s=WAIT_S) as client:
                    r = await client.call(
                        "submit", {"type": "epi.report", "payload": payload("a", i),
                                   "wait_s": WAIT_S}, timeout_s=WAIT_S + 5)
            except Exception as exc:  # any failure of a well-behaved request is the finding
                failures.append(f"async {i}: {type(exc).__name__}: {exc}")
                continue
            if r["status"] != "committed":
                failures.append(f"async {i}: {r}")
            else:
                acked.append(r["tx_hash"])

    async def cli_client() -> None:
        for i in todo_cli:
            argv = [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(1)),
                    "--json", "submit", "epi.report", "--payload", json.dumps(payload("c", i)),
                    "--wait", str(WAIT_S)]
            done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                          check=False)
            if done.returncode != 0:
                failures.append(f"cli {i}: exit {done.returncode}: {done.stderr.decode().strip()}")
                continue
            r = json.loads(done.stdout)
            if r["status"] != "committed":
                failures.append(f"cli {i}: {r}")
            else:
                acked.append(r["tx_hash"])

    async with trio.open_nursery() as nursery:
        for _ in range(ASYNC_CLIENTS):
            nursery.start_soon(async_client)
        for _ in range(CLI_CLIENTS):
            nursery.start_soon(cli_client)


def refusals(metrics_text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("hzp2p_admin_refusals_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('reason="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def test_flooded_admin_socket_keeps_serving_well_behaved_clients(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 1) as c:
        c.start_all()
        c.wait_leader(30)
        flooder = subprocess.Popen(
            [sys.executable, str(FLOODER), c.sockets[1], "600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            # Let the flood take every slot it can before the well-behaved clients start.
            c.wait_for("the flood to fill the socket", lambda: refusals(
                c.call(1, "metrics", timeout_s=WAIT_S)["text"]).get("evicted_idle", 0) > 50, 30)
            failures: list[str] = []
            acked: list[str] = []
            trio.run(well_behaved, c, failures, acked)
        finally:
            flooder.kill()  # by pid: the one process this test started
            flooder.wait(timeout=10)
        assert failures == [], f"{len(failures)} well-behaved requests failed: {failures[:5]}"
        assert len(set(acked)) == ASYNC_SUBMITS + CLI_SUBMITS
        counted = refusals(c.call(1, "metrics")["text"])
        assert counted.get("evicted_idle", 0) > 0, counted
        assert counted.get("oversized_frame", 0) > 0, counted
        assert counted.get("bad_requests", 0) > 0, counted
        assert c.call(1, "verify", timeout_s=60)["ok"] is True
