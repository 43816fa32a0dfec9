"""hzp2p side by side with PySyncObj (and etcd when installed), on this machine, in one run.

    python benchmarks/vs_pysyncobj.py [--nodes 3|5] [--both] [--json] [--profile DIR]

For each system a fresh cluster of separate processes on 127.0.0.1 takes the
same workload: OPS pipelined SIZE-byte operations (default 20,000 x 200 B),
then SEQ sequential ones (default 500). Measured per system: operations
committed and applied per second (pipelined phase), p50/p99 latency of the
sequential ones, CPU seconds per 1,000 operations (sum over the node processes
of utime+stime from /proc during the pipelined phase), peak RSS per node
(VmHWM), and the ratio to PySyncObj.

* PySyncObj (benchmark-only dependency, the `bench` extra): a small SyncObj
  with one @replicated method (count and bytes), its defaults (batching on:
  appendEntriesUseBatch). The load is issued inside the leader's process (no
  IPC at all, the most favourable place); an op counts when its callback
  reports SUCCESS on the leader. No fsync, term and vote not persisted.
* hzp2p replication: real daemons (SQLite synchronous=FULL, encrypted TCP),
  started with HZP2P_BENCH_REPLICATION=1 so the admin method `raft_propose`
  exists (hzp2p.node.opaque); each op is one opaque Raft entry; the client
  (this process) pipelines requests of OPS_PER_CALL entries on the leader's
  admin socket; a request is answered once its entries are applied there.
* hzp2p transactions: signed `epi.report` transactions (the daemon signs,
  admits, builds blocks, replicates, executes on every node), each counted
  once its committed receipt is back. `--tx-mode many` (default): `submit_many`
  requests of TX_BATCH items, TX_MANY_IN_FLIGHT of them in flight over
  TX_MANY_CONNECTIONS connections; `--tx-mode single`: one `submit` per
  transaction from 960 concurrent callers (60 connections x 16). The
  sequential phase is single `submit`s either way.
* etcd (if `etcd` is on PATH): 200-byte puts through the v3 JSON gateway from
  concurrent keep-alive clients spread over the members.

Every child process is stopped in a `finally`; data lives in a temporary
directory under /var/tmp that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_procs as bp
import trio

from hzp2p.admin.client import open_admin_client
from hzp2p.tools.localcluster import LocalCluster

OPS_PER_CALL = 250
REPL_CONNECTIONS = 4  # x 16 requests in flight each (the admin server's per-connection bound)
TX_CONNECTIONS = 60
TX_CALLERS_PER_CONNECTION = 16  # the admin server runs 16 at a time per connection
TX_BATCH = 250
TX_MANY_CONNECTIONS = 4
TX_MANY_IN_FLIGHT = 16  # requests in flight in all (4 per connection)


# ============================================================================ PySyncObj node


def pysyncobj_node(self_addr: str, partners: list[str]) -> int:
    """Child process: one PySyncObj node; commands on stdin, JSON answers on stdout."""
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated  # type: ignore

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(self_addr, partners, SyncObjConf(appendEntriesUseBatch=True))
            self.count = 0
            self.nbytes = 0

        @replicated  # type: ignore[untyped-decorator]
        def add(self, data: bytes) -> int:
            self.count += 1
            self.nbytes += len(data)
            return self.count

    obj = Counter()

    def answer(obj_: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj_) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "status":
            answer({"leader": obj._isLeader(), "ready": obj.isReady(), "count": obj.count})
        elif cmd[0] == "pipe":
            elapsed, state = _pipelined(obj, int(cmd[1]), os.urandom(int(cmd[2])),
                                        FAIL_REASON.SUCCESS)
            answer({"elapsed_s": elapsed, "ok": state["ok"], "fail": state["fail"]})
        elif cmd[0] == "seq":
            data = os.urandom(int(cmd[2]))
            lat: list[float] = []
            for _ in range(int(cmd[1])):
                t = time.perf_counter()
                obj.add(data, sync=True, timeout=30)
                lat.append(time.perf_counter() - t)
            answer({"lat": lat})
    return 0


def _pipelined(obj: Any, ops: int, data: bytes, success: Any) -> tuple[float, dict[str, int]]:
    """`ops` calls of obj.add without waiting; returns (seconds until all answered, counts)."""
    done = threading.Event()
    state = {"ok": 0, "fail": 0}
    lock = threading.Lock()

    def cb(res: Any, err: Any) -> None:
        with lock:
            state["ok" if err == success else "fail"] += 1
            if state["ok"] + state["fail"] >= ops:
                done.set()

    t0 = time.perf_counter()
    for _ in range(ops):
        obj.add(data, callback=cb)
    done.wait(300)
    return time.perf_counter() - t0, state


def run_pysyncobj(nodes: int, ops: int, seq: int, size: int) -> dict[str, Any]:
    ports = bp.free_ports(nodes)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for a in addrs:
            procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--pysyncobj-node", a,
                 ",".join(x for x in addrs if x != a)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                preexec_fn=bp.die_with_parent,
            ))

        def ask(p: subprocess.Popen[bytes], cmd: str) -> dict[str, Any]:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(cmd.encode() + b"\n")
            p.stdin.flush()
            out: dict[str, Any] = json.loads(p.stdout.readline())
            return out

        deadline = time.monotonic() + 30
        leader = None
        while leader is None:
            if time.monotonic() > deadline:
                raise RuntimeError("PySyncObj elected no leader within 30 s")
            time.sleep(0.2)
            sts = [ask(p, "status") for p in procs]
            if all(s["ready"] for s in sts):
                leader = next((p for p, s in zip(procs, sts, strict=True) if s["leader"]), None)
        time.sleep(1.0)  # every connection up
        cpu0 = [bp.cpu_seconds(p.pid) for p in procs]
        res = ask(leader, f"pipe {ops} {size}")
        per_node = [bp.cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        res["lat"] = ask(leader, f"seq {seq} {size}")["lat"]
        peaks = [round(bp.peak_rss_mb(p.pid), 1) for p in procs]
        counts = [ask(p, "status")["count"] for p in procs]
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        bp.kill_all(procs)
    return {
        "system": "pysyncobj",
        "ops_per_s": round(res["ok"] / res["elapsed_s"], 1),
        "failed": res["fail"],
        "cpu_s_per_1000": round(1000 * sum(per_node) / ops, 3),
        "cpu_s_per_node": [round(x, 2) for x in per_node],
        "peak_rss_mb": peaks,
        "applied_on_nodes": counts,
        **bp.latency_summary(res["lat"]),
    }


# ============================================================================ hzp2p


def _cluster(root: Path, nodes: int) -> LocalCluster:
    env = dict(os.environ, HZP2P_BENCH_REPLICATION="1")
    return LocalCluster(root, nodes, env=env)


def _wait_connected(c: LocalCluster, leader: int, nodes: int) -> None:
    c.wait_for("every peer connected",
               lambda: len((c.status(leader) or {}).get("peers", [])) >= nodes - 1, 30)


async def _repl_pipe(sock: str, ops: int, size: int) -> dict[str, Any]:
    data = os.urandom(size - 1).hex()  # the entry is the 1-byte marker + data: SIZE bytes
    chunks = iter([OPS_PER_CALL] * (ops // OPS_PER_CALL) + [ops % OPS_PER_CALL])
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_admin_client(sock))
                   for _ in range(REPL_CONNECTIONS)]
        await clients[0].call("raft_propose", {"data": data, "count": 1})

        async def worker(client: Any) -> None:
            for n in chunks:
                if n:
                    await client.call("raft_propose", {"data": data, "count": n}, timeout_s=120)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for client in clients:
                for _ in range(16):
                    nursery.start_soon(worker, client)
        elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed}


async def _repl_seq(sock: str, seq: int, size: int) -> dict[str, Any]:
    data = os.urandom(size - 1).hex()
    lat: list[float] = []
    async with open_admin_client(sock) as client:
        for _ in range(seq):
            t = time.perf_counter()
            await client.call("raft_propose", {"data": data, "count": 1})
            lat.append(time.perf_counter() - t)
    return {"lat": lat}


def _report(tag: str, i: int) -> dict[str, Any]:
    return {"report_id": f"{tag}-{i}", "region": "north", "metric": "cases", "value": i,
            "period": "2026-W47"}


async def _tx_pipe(socks: list[str], ops: int, tag: str) -> dict[str, Any]:
    todo = iter(range(ops))
    statuses: dict[str, int] = {}

    async def caller(client: Any) -> None:
        for i in todo:
            r = await client.call("submit", {"type": "epi.report", "payload": _report(tag, i),
                                             "wait_s": 120}, timeout_s=130)
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1

    async def connection(sock: str) -> None:
        async with open_admin_client(sock) as client, trio.open_nursery() as nursery:
            for _ in range(TX_CALLERS_PER_CONNECTION):
                nursery.start_soon(caller, client)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(TX_CONNECTIONS):
            nursery.start_soon(connection, socks[k % len(socks)])
    return {"elapsed_s": time.perf_counter() - t0, "statuses": statuses}


async def _tx_pipe_many(socks: list[str], ops: int, tag: str, batch: int) -> dict[str, Any]:
    starts = iter(range(0, ops, batch))
    statuses: dict[str, int] = {}

    async def caller(client: Any) -> None:
        for start in starts:
            its = [{"type": "epi.report", "payload": _report(tag, i)}
                   for i in range(start, min(ops, start + batch))]
            r = await client.call("submit_many", {"items": its, "wait_s": 120}, timeout_s=130)
            for rec in r["receipts"]:
                statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1

    async def connection(sock: str, callers: int) -> None:
        async with open_admin_client(sock) as client, trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller, client)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(TX_MANY_CONNECTIONS):
            nursery.start_soon(connection, socks[k % len(socks)],
                               TX_MANY_IN_FLIGHT // TX_MANY_CONNECTIONS)
    return {"elapsed_s": time.perf_counter() - t0, "statuses": statuses}


async def _tx_seq(sock: str, seq: int, tag: str) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    lat: list[float] = []
    async with open_admin_client(sock) as client:
        for i in range(seq):
            t = time.perf_counter()
            r = await client.call("submit", {"type": "epi.report", "payload": _report(tag, i),
                                             "wait_s": 30}, timeout_s=40)
            lat.append(time.perf_counter() - t)
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"lat": lat, "statuses": statuses}


def run_hzp2p(root: Path, nodes: int, ops: int, seq: int, size: int, mode: str,
              profile: Path | None, tx_spread: bool, tx_mode: str = "many",
              tx_batch: int = TX_BATCH) -> dict[str, Any]:
    with _cluster(root / f"hz-{mode}-{nodes}", nodes) as c:
        c.start_all()
        leader = c.wait_leader(30)
        _wait_connected(c, leader, nodes)
        term = c.status(leader)["term"]  # type: ignore[index]
        pids = [c.procs[k].pid for k in c.ids]
        spies = []
        if profile is not None:
            follower = next(k for k in c.ids if k != leader)
            for k, role in ((leader, "leader"), (follower, "follower")):
                path = profile / f"{mode}-{nodes}n-{role}.txt"
                spy = bp.start_pyspy(c.procs[k].pid, path, 12 if mode == "repl" else 20)
                if spy is not None:
                    spies.append((role, path, spy))
        cpu0 = [bp.cpu_seconds(p) for p in pids]
        client0 = time.process_time()
        tag = f"b{os.getpid()}-{time.time_ns()}"
        if mode == "repl":
            res = trio.run(_repl_pipe, c.sockets[leader], ops, size)
        else:
            socks = [c.sockets[k] for k in (c.ids if tx_spread else [leader])]
            if tx_mode == "many":
                res = trio.run(_tx_pipe_many, socks, ops, tag, tx_batch)
            else:
                res = trio.run(_tx_pipe, socks, ops, tag)
        client_cpu = time.process_time() - client0
        per_node = [bp.cpu_seconds(p) - c0 for p, c0 in zip(pids, cpu0, strict=True)]
        cpu = sum(per_node)
        blocks = (c.status(leader) or {}).get("height", 0)
        if mode == "repl":
            res.update(trio.run(_repl_seq, c.sockets[leader], seq, size))
        else:
            seq_res = trio.run(_tx_seq, c.sockets[leader], seq, tag + "-seq")
            res["lat"] = seq_res["lat"]
            for k, v in seq_res["statuses"].items():
                res["statuses"][k] = res["statuses"].get(k, 0) + v
        peaks = [round(bp.peak_rss_mb(p), 1) for p in pids]
        st = c.status(leader) or {}
        out: dict[str, Any] = {
            "system": f"hzp2p-{mode}",
            "ops_per_s": round(ops / res["elapsed_s"], 1),
            "cpu_s_per_1000": round(1000 * cpu / ops, 3),
            "cpu_s_per_node": [round(x, 2) for x in per_node],
            "client_cpu_s_per_1000": round(1000 * client_cpu / ops, 3),
            "peak_rss_mb": peaks,
            "leader_changes": st.get("term") != term,
            **bp.latency_summary(res["lat"]),
        }
        if mode == "tx":
            out["tx_mode"] = tx_mode
            if tx_mode == "many":
                out["tx_batch"] = tx_batch
                out["tx_requests_in_flight"] = TX_MANY_IN_FLIGHT
            out["statuses"] = res["statuses"]
            out["height"] = c.wait_converged(60)
            out["pipelined_txs_per_block"] = round(ops / max(1, blocks), 1)
        for role, path, spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=5)
            out[f"profile_{role}"] = bp.summarize_profile(path)
    return out


# ============================================================================ driver


def run_all(nodes: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    r: dict[str, Any] = {"nodes": nodes}
    if not args.skip_pysyncobj:
        r["pysyncobj"] = run_pysyncobj(nodes, args.ops, args.seq, args.size)
    if not args.skip_repl:
        r["hzp2p_replication"] = run_hzp2p(tmp, nodes, args.ops, args.seq, args.size, "repl",
                                           args.profile, args.tx_spread)
    if not args.skip_tx:
        r["hzp2p_tx"] = run_hzp2p(tmp, nodes, args.tx_ops or args.ops, args.seq, args.size,
                                  "tx", args.profile, args.tx_spread, args.tx_mode,
                                  args.tx_batch)
    if not args.skip_etcd and bp.etcd_available():
        with bp.etcd_cluster(tmp / f"etcd-{nodes}", nodes) as (ports, procs):
            trio.run(bp.etcd_wait_ready, ports)
            cpu0 = [bp.cpu_seconds(p.pid) for p in procs]
            cpu1: list[float] = []

            def pipelined_done() -> None:
                cpu1.extend(bp.cpu_seconds(p.pid) for p in procs)

            r["etcd"] = trio.run(bp.etcd_load, ports, args.ops, args.seq, args.size, 64,
                                 pipelined_done)
            per_node = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
            r["etcd"]["cpu_s_per_1000"] = round(1000 * sum(per_node) / args.ops, 3)
            r["etcd"]["cpu_s_per_node"] = [round(x, 2) for x in per_node]
            r["etcd"]["peak_rss_mb"] = [round(bp.peak_rss_mb(p.pid), 1) for p in procs]
    base = r.get("pysyncobj", {}).get("ops_per_s")
    for key in ("hzp2p_replication", "hzp2p_tx", "etcd"):
        if key in r and base:
            r[key]["ratio_vs_pysyncobj"] = round(r[key]["ops_per_s"] / base, 2)
    return r


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in open("/proc/cpuinfo", encoding="ascii"):  # noqa: SIM115
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "nproc": os.cpu_count(), "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def table(r: dict[str, Any]) -> str:
    rows = [("PySyncObj (no fsync)", "pysyncobj"), ("hzp2p replication", "hzp2p_replication"),
            (f"hzp2p signed epi.report ({r.get('hzp2p_tx', {}).get('tx_mode', '-')})",
             "hzp2p_tx"), ("etcd (fsync)", "etcd")]
    out = [f"{r['nodes']} nodes",
           f"{'system':<34}{'ops/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}"
           f"{'CPU s/1k':>10}  peak RSS MiB per node"]
    for label, key in rows:
        if key not in r:
            continue
        x = r[key]
        ratio = x.get("ratio_vs_pysyncobj", 1.0 if key == "pysyncobj" else "")
        out.append(f"{label:<34}{x['ops_per_s']:>10,.0f}{ratio!s:>8}{x['seq_p50_ms']:>9}"
                   f"{x['seq_p99_ms']:>9}{x.get('cpu_s_per_1000', '-')!s:>10}  "
                   f"{x.get('peak_rss_mb', '-')}")
    for key in ("hzp2p_replication", "hzp2p_tx"):
        for role in ("leader", "follower"):
            prof = r.get(key, {}).get(f"profile_{role}")
            if prof and prof["samples"]:
                top = ", ".join(f"{f} {s}%" for f, s in prof["self"][:8])
                out.append(f"  profile {key} {role} ({prof['samples']} samples), self: {top}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--pysyncobj-node"]:
        return pysyncobj_node(argv[1], argv[2].split(",") if len(argv) > 2 and argv[2] else [])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--both", action="store_true", help="run with 3 and with 5 nodes")
    p.add_argument("--ops", type=int, default=20_000)
    p.add_argument("--tx-ops", type=int, default=0, help="pipelined transactions (default --ops)")
    p.add_argument("--seq", type=int, default=500)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--tx-spread", action="store_true",
                   help="submit transactions through every node (default: the leader)")
    p.add_argument("--skip-pysyncobj", action="store_true")
    p.add_argument("--skip-tx", action="store_true")
    p.add_argument("--skip-repl", action="store_true", help="skip the replication-layer run")
    p.add_argument("--tx-mode", choices=("single", "many"), default="many",
                   help="pipelined transactions as `submit_many` requests (default) or one "
                        "`submit` per transaction")
    p.add_argument("--tx-batch", type=int, default=TX_BATCH,
                   help=f"items per submit_many request (default {TX_BATCH})")
    p.add_argument("--skip-etcd", action="store_true")
    p.add_argument("--profile", type=Path, help="py-spy the leader and a follower into DIR")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.nodes < 1 or args.ops < 1 or args.size < 2 or args.seq < 1:
        p.error("--nodes, --ops, --seq must be positive and --size >= 2")
    if not 1 <= args.tx_batch <= 1000:
        p.error("--tx-batch must be 1..1000 (the daemon's submit_many bound)")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops its cluster
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [3, 5] if args.both else [args.nodes]
    load0 = bp.load_average()
    runs = []
    with tempfile.TemporaryDirectory(prefix="hzp2p-vs-", dir="/var/tmp") as d:
        for n in sizes:
            runs.append(run_all(n, args, Path(d)))
            if not args.json:
                print(table(runs[-1]), flush=True)
    first = runs[0]
    summary: dict[str, Any] = {
        "nodes": first["nodes"],
        "pysyncobj_ops_per_s": first.get("pysyncobj", {}).get("ops_per_s"),
        "hzp2p_replication_ops_per_s": first.get("hzp2p_replication", {}).get("ops_per_s"),
        "hzp2p_tx_per_s": first.get("hzp2p_tx", {}).get("ops_per_s"),
        "hzp2p_tx_mode": first.get("hzp2p_tx", {}).get("tx_mode"),
        "etcd_ops_per_s": first.get("etcd", {}).get("ops_per_s"),
        "ratio": first.get("hzp2p_replication", {}).get("ratio_vs_pysyncobj"),
        "load_average_before": load0,
        "load_average_after": bp.load_average(),
        "machine": machine(),
        "runs": runs,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"load average before {load0}, after {summary['load_average_after']}; "
              f"{summary['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
