"""End-to-end throughput of real daemons: `python -m hzp2p.tools.bench [--nodes N] [--txs T]`.

It owns one measurement: a fresh local cluster of real `hzp2p run` processes
(hzp2p.tools.localcluster) takes T signed `epi.report` submits through the
admin sockets of every node, from C concurrent callers pipelined over a few
connections per node, each waiting for its receipt. It reports committed
transactions per second, receipt latency p50/p99, blocks and transactions per
block. Everything is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from hzp2p.admin.client import open_admin_client
from hzp2p.tools.localcluster import LocalCluster

CALLS_PER_CONNECTION = 16


async def _load(c: LocalCluster, n_txs: int, concurrency: int) -> dict[str, Any]:
    todo = iter(range(n_txs))
    latencies_s: list[float] = []
    statuses: dict[str, int] = {}

    async def worker(client: Any) -> None:
        for i in todo:
            payload = {"report_id": f"bench-{i}", "region": "r", "metric": "m", "value": i,
                       "period": "p"}
            t0 = time.perf_counter()
            r = await client.call("submit", {"type": "epi.report", "payload": payload,
                                             "wait_s": 60}, timeout_s=70)
            latencies_s.append(time.perf_counter() - t0)
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1

    async def connection(k: int, calls: int) -> None:
        async with open_admin_client(c.sockets[k]) as client, trio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(worker, client)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        conns = max(1, concurrency // CALLS_PER_CONNECTION)
        for j in range(conns):
            nursery.start_soon(connection, c.ids[j % len(c.ids)],
                               min(CALLS_PER_CONNECTION, concurrency))
    elapsed_s = time.perf_counter() - t0
    lat = sorted(latencies_s)
    return {
        "txs": n_txs,
        "elapsed_s": round(elapsed_s, 3),
        "tx_per_s": round(n_txs / elapsed_s, 1),
        "latency_p50_ms": round(statistics.median(lat) * 1000, 1),
        "latency_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
        "statuses": statuses,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hzp2p.tools.bench", description=__doc__)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--txs", type=int, default=8000)
    p.add_argument("--concurrency", type=int, default=768)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.nodes < 1 or args.txs < 1 or args.concurrency < 1:
        p.error("--nodes, --txs and --concurrency must be positive")
    with tempfile.TemporaryDirectory(prefix="hzp2p-bench-") as d, \
            LocalCluster(Path(d) / "c", args.nodes) as c:
        c.start_all()
        c.wait_leader(30)
        result = trio.run(_load, c, args.txs, args.concurrency)
        height = c.wait_converged(60)
        result.update(nodes=args.nodes, concurrency=args.concurrency, blocks=height,
                      txs_per_block=round(args.txs / max(height, 1), 1))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['nodes']} daemons, {result['txs']} signed epi.report submits, "
              f"{result['concurrency']} concurrent callers: {result['tx_per_s']} tx/s committed, "
              f"receipt latency p50 {result['latency_p50_ms']} ms / p99 "
              f"{result['latency_p99_ms']} ms, {result['blocks']} blocks "
              f"(~{result['txs_per_block']} txs each), statuses {result['statuses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
