"""Storage benchmark: durable Raft appends, atomic block application, raw fsync rate.

    python benchmarks/storage_bench.py [--dir DIR] [--seconds S] [--json]

Measures, through the async facade the daemon uses (AsyncStorage on its DB
thread, WAL, synchronous=FULL):
  * durable appends of 200-byte entries at batch sizes 1, 10, 100, 1000 (each
    batch = one save_ready = one transaction + fsync, with its hard state);
  * blocks applied per second, each with 500 tx rows, 500 state writes and a
    ~150 KB raw block, in one transaction;
  * the raw fsync rate of the disk (4 KiB pwrite + os.fsync in a loop), which
    bounds batch-1 throughput, and the fdatasync rate (SQLite's actual call).
Every figure is the median of several short windows; for batch 1 each window
is paired with an fsync window just before it and the ratio of the pair is
reported, because on a disk shared with other writers the fsync rate drifts by
an order of magnitude within seconds. Batch 1 is measured twice: one caller
awaiting each save_ready before the next (1 / latency: fsync + SQLite + the
Trio <-> DB-thread hand-off), and CONCURRENT_CALLERS callers each awaiting
their own save_ready (throughput: the next call is queued while one commits;
still one transaction and one fsync per call, in call order). The sync core's
batch-1 rate (a loop on the DB thread, no hand-off) is shown too.
Run it on a real disk (default: a fresh directory under /var/tmp); a tmpfs
would make fsync free and the figures meaningless, so it warns about one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hzp2p.raft.types import Entry, HardState
from hzp2p.storage import AsyncStorage, BlockRecord, SyncStorage, TxRecord

BATCHES = (1, 10, 100, 1000)
CONCURRENT_CALLERS = 2
TXS_PER_BLOCK = 500


def fs_type(path: str) -> str:
    """The filesystem type of the mount holding `path` (from /proc/mounts)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt, typ = parts[1], parts[2]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, typ
    except OSError:
        pass
    return kind


def sync_rate(
    directory: str, seconds: float, sync: Callable[[int], None], rounds: int = 5
) -> float:
    """Rounds of 4 KiB pwrite at offset 0 + `sync` on a small file; the median rate.

    os.fsync on ext4 also commits the journal for the mtime change, so it depends on
    every other writer of the filesystem; fdatasync (what SQLite calls) does not.
    """
    path = os.path.join(directory, "fsync.probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        block = os.urandom(4096)
        os.pwrite(fd, block, 0)
        os.fsync(fd)
        rates = []
        for _ in range(rounds):
            n, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds / rounds or n < 10:
                os.pwrite(fd, block, 0)
                sync(fd)
                n += 1
            rates.append(n / elapsed)
        return statistics.median(rates)
    finally:
        os.close(fd)
        os.unlink(path)


@dataclass
class Rates:
    """Medians over the windows of one batch size (the batch-1 extras stay 0 otherwise)."""

    sequential: float  # entries/s, one caller awaiting each save_ready in turn
    sequential_over_fsync: float = 0.0
    concurrent: float = 0.0  # entries/s, CONCURRENT_CALLERS callers, each call its own commit
    concurrent_over_fsync: float = 0.0
    core: float = 0.0  # entries/s, the sync core looping on the DB thread (no hand-off)


async def append_rate(directory: str, batch: int, seconds: float, rounds: int = 5) -> Rates:
    """Durable appends at one batch size through the facade; see `Rates`.

    For batch 1 each window (sequential, concurrent) is paired with an fsync probe window
    right before it, because on a shared disk the fsync rate drifts by an order of
    magnitude within seconds; the ratio of each pair is what the batch-1 target is about.
    """
    path = os.path.join(directory, f"append-{batch}.db")
    store = await AsyncStorage.open_sqlite(path, b"bench", b"\x00" * 32)
    payload = os.urandom(200)
    next_index = 1

    def make(n_batches: int) -> list[tuple[list[Entry], HardState]]:
        # Entries are built outside the timed part: building them is the Raft core's cost.
        nonlocal next_index
        out = []
        for _ in range(n_batches):
            es = [Entry(1, i, data=payload) for i in range(next_index, next_index + batch)]
            out.append((es, HardState(1, 1, next_index - 1)))  # commit trails the log
            next_index += batch
        return out

    async def timed(budget: float, core: bool, callers: int = 1) -> float:
        n, busy = 0, 0.0
        while busy < budget:
            work = make(max(1, 2000 // batch))
            t0 = time.perf_counter()
            if core:

                def loop(sync: SyncStorage, work: list[tuple[list[Entry], HardState]] = work) -> None:
                    for es, hs in work:
                        sync.save_ready(es, hs)

                await store.call(loop)
            elif callers == 1:
                for es, hs in work:
                    await store.save_ready(es, hs)
            else:
                # `callers` tasks each take the next batch and await its own save_ready: each
                # call is still its own transaction with its own fsync, run in call order;
                # while one caller's commit is on the DB thread, the next one is queued.
                it = iter(work)

                async def caller(it: Iterator[tuple[list[Entry], HardState]] = it) -> None:
                    for es, hs in it:  # no checkpoint between next() and the submission
                        await store.save_ready(es, hs)

                async with trio.open_nursery() as nursery:
                    for _ in range(callers):
                        nursery.start_soon(caller)
            busy += time.perf_counter() - t0
            n += len(work) * batch
        return n / busy

    try:
        await timed(seconds / 4, core=False)  # warm up: let the WAL reach its steady size
        facade, core, conc, ratio, conc_ratio = [], [], [], [], []
        for _ in range(rounds):
            fsync = sync_rate(directory, seconds / rounds, os.fsync, 1) if batch == 1 else 0.0
            facade.append(await timed(seconds / rounds, core=False))
            ratio.append(facade[-1] / fsync if fsync else 0.0)
            if batch == 1:
                fsync = sync_rate(directory, seconds / rounds, os.fsync, 1)
                conc.append(await timed(seconds / rounds, core=False, callers=CONCURRENT_CALLERS))
                conc_ratio.append(conc[-1] / fsync)
                core.append(await timed(seconds / rounds / 2, core=True))
        med = statistics.median
        if batch != 1:
            return Rates(med(facade))
        return Rates(med(facade), med(ratio), med(conc), med(conc_ratio), med(core))
    finally:
        await store.aclose()


def make_block(height: int, prev: bytes) -> tuple[BlockRecord, list[TxRecord], dict[bytes, bytes | None]]:
    h = hashlib.sha256(b"%d" % height).digest()
    txs = [
        TxRecord(
            hashlib.sha256(b"%d/%d" % (height, i)).digest(),
            height,
            i,
            "vaccination.record",
            "applied" if i % 50 else "rejected",
            "" if i % 50 else "lot quarantined",
        )
        for i in range(TXS_PER_BLOCK)
    ]
    writes: dict[bytes, bytes | None] = {
        b"vacc/" + hashlib.sha256(b"k%d/%d" % (height, i)).digest(): os.urandom(120)
        for i in range(TXS_PER_BLOCK)
    }
    raw = os.urandom(300 * TXS_PER_BLOCK)
    return BlockRecord(height, h, prev, height + 1, raw), txs, writes


async def block_rate(directory: str, seconds: float) -> float:
    path = os.path.join(directory, "blocks.db")
    store = await AsyncStorage.open_sqlite(path, b"bench", b"\x00" * 32)
    try:
        await store.save_ready([Entry(1, i) for i in range(1, 100001)], HardState(1, 1, 100000))
        height, prev, n, busy = 0, b"", 0, 0.0
        while busy < seconds or n < 5:
            block, txs, writes = make_block(height, prev)
            t0 = time.perf_counter()
            await store.apply_block(block, txs, writes, height + 1)
            busy += time.perf_counter() - t0
            prev, height, n = block.block_hash, height + 1, n + 1
        return n / busy
    finally:
        await store.aclose()


async def run(directory: str, seconds: float) -> dict[str, object]:
    fsync_before = sync_rate(directory, seconds, os.fsync)
    fdatasync = sync_rate(directory, seconds, os.fdatasync)
    rates = {str(b): await append_rate(directory, b, seconds) for b in BATCHES}
    fsync_after = sync_rate(directory, seconds, os.fsync)
    b1 = rates["1"]
    return {
        "fsync_per_s": statistics.median([fsync_before, fsync_after]),
        "fsync_per_s_runs": [fsync_before, fsync_after],
        "fdatasync_per_s": fdatasync,
        "entries_per_s": {b: r.sequential for b, r in rates.items()},
        "batch1_sequential_per_s": b1.sequential,
        "batch1_sequential_over_fsync": b1.sequential_over_fsync,
        "batch1_concurrent_per_s": b1.concurrent,
        "batch1_concurrent_over_fsync": b1.concurrent_over_fsync,
        "batch1_concurrent_callers": CONCURRENT_CALLERS,
        "core_batch1_entries_per_s": b1.core,
        "batch1_over_fsync": b1.sequential_over_fsync,  # the pre-2026-11-24 key: sequential
        "blocks_per_s": await block_rate(directory, seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir under /var/tmp)")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    base = args.dir or ("/var/tmp" if os.path.isdir("/var/tmp") else None)
    directory = tempfile.mkdtemp(prefix="hzp2p-bench-", dir=base)
    fstype = fs_type(directory)
    try:
        result = trio.run(run, directory, args.seconds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result["fs_type"] = fstype
    result["dir"] = directory
    if fstype in ("tmpfs", "ramfs"):
        print(f"warning: {directory} is on {fstype}; fsync is free there", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return
    entries = result["entries_per_s"]
    assert isinstance(entries, dict)
    fsync = float(result["fsync_per_s"])  # type: ignore[arg-type]
    print(f"storage benchmark on {directory} ({fstype}), synchronous=FULL, WAL")
    print(f"{'measurement':<44}{'per second':>14}")
    runs = ", ".join(f"{r:,.0f}" for r in result["fsync_per_s_runs"])  # type: ignore[attr-defined]
    fdatasync = float(result["fdatasync_per_s"])  # type: ignore[arg-type]
    print(f"{'raw fsync (4 KiB pwrite + os.fsync), median':<44}{fsync:>14,.0f}   (runs: {runs})")
    print(f"{'raw fdatasync (what SQLite calls)':<44}{fdatasync:>14,.0f}")
    for b in BATCHES:
        rate = entries[str(b)]
        extra = f"   ({rate / b:,.0f} commits/s)"
        print(f"{'durable 200-byte entries, batch ' + str(b):<44}{rate:>14,.0f}{extra}")
    conc = float(result["batch1_concurrent_per_s"])  # type: ignore[arg-type]
    label = f"  batch 1, {CONCURRENT_CALLERS} concurrent callers"
    print(f"{label:<44}{conc:>14,.0f}   (each call its own commit)")
    core1 = float(result["core_batch1_entries_per_s"])  # type: ignore[arg-type]
    print(f"{'  batch 1, sync core on the DB thread':<44}{core1:>14,.0f}")
    print(f"{'blocks of 500 txs + 500 state writes':<44}{result['blocks_per_s']:>14,.1f}")
    seq_r = float(result["batch1_sequential_over_fsync"])  # type: ignore[arg-type]
    conc_r = float(result["batch1_concurrent_over_fsync"])  # type: ignore[arg-type]
    print("batch-1 commits / raw fsync, paired windows (median; target >= 0.5):")
    print(f"  {str(CONCURRENT_CALLERS) + ' concurrent callers (throughput)':<38}= {conc_r:.2f}")
    print(f"  {'1 sequential caller (1 / latency)':<38}= {seq_r:.2f}")
    print(f"batch-1 sequential commits / raw fdatasync = {entries['1'] / fdatasync:.2f}")

if __name__ == "__main__":
    main()
