"""Transport throughput: two nodes over loopback TCP, real handshake, encryption on.

Node 1 (this process) sends to node 2 (a child process, so each side has its
own core) as fast as the bounded send queue allows; node 2 counts messages
and answers with a Blob when it has them all; we time from the first send to
that answer. What is sent is what Raft sends: AppendEntries from the leader,
each carrying one Entry whose payload is 64 KiB (MB/s figure) or 200 bytes
(messages/s figure), batched into frames by the transport.

    python benchmarks/transport_bench.py [--json] [--seconds S] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import structlog
import trio

from hzp2p.net.handshake import ChainParams
from hzp2p.net.schemas import Blob
from hzp2p.net.tcp import TcpConfig, TcpTransport
from hzp2p.net.transport import NodeIdentity, StaticMembership
from hzp2p.raft.messages import AppendEntries
from hzp2p.raft.types import Entry

CHAIN = ChainParams("hzp2p-bench", b"\x42" * 32)
IDS = [NodeIdentity.from_seed(n, bytes([n]) * 32) for n in (1, 2)]
MEMBERS = StaticMembership({i.node_id: i.node_key for i in IDS})
CONFIG = dict(
    send_queue_max_msgs=65536, send_queue_max_bytes=256 << 20, inbound_queue_max_msgs=65536
)


def _quiet_logs() -> None:
    import logging

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


async def _receiver(pipe: Connection) -> None:
    _quiet_logs()
    t = TcpTransport(IDS[1], CHAIN, MEMBERS, TcpConfig(**CONFIG), rng=random.Random(2))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(t.run)
        pipe.send(t.listen_address)
        inbound = t.inbound
        while True:
            expected = await trio.to_thread.run_sync(pipe.recv)
            if expected is None:
                break
            got = 0
            while got < expected:
                burst = inbound.receive_batch_nowait(4096)
                if burst:
                    got += len(burst)
                else:
                    await inbound.receive()
                    got += 1
            t.send_nowait(1, Blob("done", got.to_bytes(8, "big")))
        nursery.cancel_scope.cancel()


def _child(pipe: Connection) -> None:
    trio.run(_receiver, pipe)


def _messages(payload_bytes: int, count: int) -> list[AppendEntries]:
    data = os.urandom(payload_bytes)
    return [AppendEntries(7, 1, 2, i, 7, (Entry(7, i + 1, data=data),), i) for i in range(count)]


async def _run_case(sender: TcpTransport, pipe: Connection, msgs: list[AppendEntries]) -> float:
    pipe.send(len(msgs))
    t0 = time.perf_counter()
    send = sender.send_nowait
    for m in msgs:
        while not send(2, m):
            await trio.sleep(0.0005)
    src, done = await sender.receive()
    elapsed = time.perf_counter() - t0
    assert src == 2 and isinstance(done, Blob) and int.from_bytes(done.data, "big") == len(msgs)
    return elapsed


async def _bench(seconds_hint: float, repeat: int) -> dict[str, Any]:
    _quiet_logs()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child,), daemon=True)
    proc.start()
    try:
        addr = await trio.to_thread.run_sync(parent.recv)
        cfg = TcpConfig(peer_hints=((2, tuple(addr)),), **CONFIG)  # type: ignore[arg-type]
        sender = TcpTransport(IDS[0], CHAIN, MEMBERS, cfg, rng=random.Random(1))
        async with trio.open_nursery() as nursery:
            await nursery.start(sender.run)
            with trio.fail_after(10):
                while 2 not in sender.connected_peers():
                    await trio.sleep(0.01)
            # warm-up, then the measured runs (sizes aim at roughly seconds_hint each)
            await _run_case(sender, parent, _messages(200, 20_000))
            n_big = max(200, int(1500 * seconds_hint))
            n_small = max(20_000, int(150_000 * seconds_hint))
            big = _messages(64 * 1024, n_big)
            small = _messages(200, n_small)
            t_bigs, t_smalls = [], []
            for _ in range(repeat):
                t_bigs.append(await _run_case(sender, parent, big))
                t_smalls.append(await _run_case(sender, parent, small))
            stats = sender.statistics()
            parent.send(None)
            nursery.cancel_scope.cancel()
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    mbs = sorted(n_big * 64 * 1024 / t / 1e6 for t in t_bigs)
    rates = sorted(n_small / t for t in t_smalls)
    return {
        "mb_per_s_64k": round(statistics.median(mbs), 1),
        "msgs_per_s_200b": round(statistics.median(rates)),
        "runs_mb_per_s_64k": [round(x, 1) for x in mbs],
        "runs_msgs_per_s_200b": [round(x) for x in rates],
        "messages_64k": n_big,
        "messages_200b": n_small,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "frames_sent": stats.frames_sent,
        "messages_dropped_and_retried": stats.messages_dropped,
        "message": "AppendEntries with one Entry of the given payload size",
        "encryption": "ChaCha20-Poly1305 IETF per frame, X25519/Ed25519 handshake",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--seconds", type=float, default=1.0, help="rough duration of each measured case"
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    args = p.parse_args(argv)
    result = trio.run(_bench, args.seconds, max(1, args.repeat))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'case':<44}{'result':>16}")
        print(f"{'64 KiB AppendEntries, payload throughput':<44}{result['mb_per_s_64k']:>11} MB/s")
        print(f"{'200 B AppendEntries, message rate':<44}{result['msgs_per_s_200b']:>11} msg/s")
        print(
            f"(medians of {len(result['runs_msgs_per_s_200b'])} runs: MB/s {result['runs_mb_per_s_64k']}, "
            f"msg/s {result['runs_msgs_per_s_200b']}; {result['messages_64k']} x 64 KiB and "
            f"{result['messages_200b']} x 200 B per run; encrypted; {result['cpus']} CPUs, "
            f"load average {result['load_average_1m']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
