"""Crashes under load (etcd#14370): a one-node cluster never acknowledges a write it has not
made durable, so after SIGKILL and restart every acknowledged transaction is there; SIGTERM
under load still exits cleanly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from hzp2p.admin.client import AdminClientError, open_admin_client
from hzp2p.admin.protocol import AdminError
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


async def hammer(c: LocalCluster, k: int, acked: dict[str, dict[str, Any]], stop_after_s: float,
                 kill: Any) -> None:
    """Submit until the node dies; `kill()` runs after `stop_after_s`."""
    counter = iter(range(1_000_000))

    async def caller(client: Any) -> None:
        for i in counter:
            payload = {"report_id": f"crash-{i}", "region": "r", "metric": "m", "value": i,
                       "period": "p"}
            try:
                r = await client.call("submit", {"type": "epi.report", "payload": payload,
                                                 "wait_s": 10}, timeout_s=15)
            except (AdminClientError, AdminError, OSError):
                return
            if r["status"] == "committed":
                acked[r["tx_hash"]] = r

    with trio.move_on_after(30):
        async with open_admin_client(c.sockets[k]) as client, trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(caller, client)
            await trio.sleep(stop_after_s)
            kill()


@pytest.mark.parametrize("nodes", [1, 3])
def test_sigkill_under_load_loses_no_acknowledged_write(tmp_path: Path, nodes: int) -> None:
    with LocalCluster(tmp_path / "c", nodes) as c:
        c.start_all()
        leader = c.wait_leader(20)
        acked: dict[str, dict[str, Any]] = {}
        trio.run(hammer, c, leader, acked, 1.5, lambda: c.kill(leader))
        assert len(acked) > 10
        c.start(leader)
        c.wait_leader(20)
        height = c.wait_converged(30, min_height=max(r["height"] for r in acked.values()))
        for k in c.ids:
            for h, r in acked.items():
                got = c.call(k, "tx", {"tx_hash": h})
                assert (got["status"], got["height"], got["index"]) == (
                    "committed", r["height"], r["index"]), (k, h)
            assert c.call(k, "verify")["ok"] is True
        assert height >= 1


def test_sigterm_under_load_exits_cleanly(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 1) as c:
        c.start(1)
        c.wait_leader(20)
        acked: dict[str, dict[str, Any]] = {}
        codes: list[int | None] = []
        t0 = time.monotonic()
        trio.run(hammer, c, 1, acked, 1.0, lambda: codes.append(c.stop(1, timeout_s=15)))
        assert codes == [0] and time.monotonic() - t0 < 20
        c.start(1)
        c.wait_leader(20)
        for h in acked:
            assert c.call(1, "tx", {"tx_hash": h})["status"] == "committed"
