"""Data-set delivery benchmark: MB/s of content fetched from one node by another.

    python benchmarks/dataset_bench.py [--mb N] [--runs R] [--dir DIR] [--json]

Two nodes on 127.0.0.1, each in its own process, with real encrypted TCP transports
(hzp2p.tools.contentnet.standalone_node: the daemon's ContentService over TcpTransport,
nothing else on the link). Node 1 holds an encrypted data set of N MB (default 100) in
its content store; node 2 (this process) fetches it: the
manifest, then every chunk with the service's window of requests in flight, each chunk
checked against the manifest and written to node 2's store, and the whole blob checked
again before it is kept. The time is from the fetch call to the blob in place (the best
of R runs; each run fetches into an empty store). Prints a table, or with --json one
object whose `delivery_mb_per_s` is the figure issue 18 names (target >= 100 on loopback).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hzp2p.crypto.datasets import Manifest, new_dataset_key, seal_file
from hzp2p.node.logging import configure_logging
from hzp2p.tools.contentnet import standalone_node

TARGET_MB_PER_S = 100.0


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def _serve(root: Path, ports: dict[int, int], content_hash: bytes) -> None:
    """The holder (node 1), in a child process: serves until its stdin closes."""
    async with trio.open_nursery() as nursery, standalone_node(nursery, root, 1, ports) as node:
        raw = (root / "manifest").read_bytes()
        node.store.add_blob(root / "blob", Manifest.decode(raw, content_hash))
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()


async def _bench(root: Path, mb: int, runs: int) -> dict[str, Any]:
    src = root / "plain.bin"
    with src.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    m, _ = seal_file(src, root / "blob", new_dataset_key())
    (root / "manifest").write_bytes(m.encode())
    src.unlink()
    h = m.content_hash
    p1, p2 = _free_ports(2)
    ports = {1: p1, 2: p2}
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root), str(p1), str(p2), h.hex()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None and child.stdin is not None
    times: list[float] = []
    cpu: list[float] = []
    try:
        async with trio.open_nursery() as nursery, standalone_node(nursery, root, 2, ports) as n2:
            line = await trio.to_thread.run_sync(child.stdout.readline)
            assert line.strip() == b"ready", line
            for _ in range(runs):
                n2.store.remove(h)
                t0, c0 = time.perf_counter(), time.process_time()
                await n2.service.fetch(h, "bench", 1, n2.transport.connected_peers)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            stats = n2.service.stats
            nursery.cancel_scope.cancel()
    finally:
        child.stdin.close()
        child.wait(10)
    best = min(times)
    return {
        "bytes": m.size,
        "chunks": m.count,
        "chunk_bytes": m.chunk_size,
        "runs": runs,
        "seconds_best": round(best, 4),
        "seconds_all": [round(t, 4) for t in times],
        "delivery_mb_per_s": round(m.size / 1e6 / best, 1),
        "fetcher_cpu_seconds": round(min(cpu), 4),
        "fetcher_mb_per_cpu_s": round(m.size / 1e6 / min(cpu), 1),
        "target_mb_per_s": TARGET_MB_PER_S,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "retried_chunks": stats.retried_chunks,
        "corrupt_chunks": stats.corrupt_chunks,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--mb", type=int, default=100, help="content size in MB (default 100)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)  # the holder's child process
    a = p.parse_args(argv)
    if a.mb < 1 or a.runs < 1:
        p.error("--mb and --runs must be at least 1")
    saved = structlog.get_config()
    configure_logging(level="warning", stream=sys.stderr)  # stdout carries results only
    try:
        return _main(a)
    finally:
        structlog.configure(**saved)


def _main(a: argparse.Namespace) -> int:
    if a.serve:
        root, p1, p2, h = a.serve
        trio.run(_serve, Path(root), {1: int(p1), 2: int(p2)}, bytes.fromhex(h))
        return 0
    root = Path(tempfile.mkdtemp(prefix="dsbench-", dir=a.dir))
    try:
        out = trio.run(_bench, root, a.mb, a.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if a.json:
        print(json.dumps(out))
    else:
        print(f"data-set delivery, 2 nodes, loopback, encrypted transport: {out['bytes']:,} bytes "
              f"in {out['chunks']} chunks")
        print(f"  best of {out['runs']}: {out['seconds_best']:.3f} s = "
              f"{out['delivery_mb_per_s']:.1f} MB/s (target >= {TARGET_MB_PER_S:.0f} MB/s)")
        print(f"  fetcher CPU: {out['fetcher_cpu_seconds']:.3f} s = "
              f"{out['fetcher_mb_per_cpu_s']:.1f} MB per CPU-second "
              f"(load average {out['load_average_1m']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
