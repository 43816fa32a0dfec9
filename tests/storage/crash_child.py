"""Child process of the SIGKILL crash test (tests/storage/test_storage_crash.py).

Usage: python crash_child.py DB_PATH SEED

Opens the SQLite store through the async facade (the daemon's path: DB thread,
Trio) and writes forever: Ready batches of ENTRIES entries (sometimes several
in one group commit) and blocks of TXS transactions applied atomically (with
`apply_block_with`, `apply_block`, or two at a time with `apply_blocks_with`);
now and then a new term rewrites the uncommitted last batch (suffix truncation) or a snapshot is saved and the log
compacted below it. After each write returns it prints "B <batch>",
"K <height>" or "C <compacted index>" and flushes: a line on stdout is a promise that the
write is durable. It resumes from whatever the database holds, so the parent
can kill and restart it again and again on the same file.
"""

from __future__ import annotations

import hashlib
import random
import sys

import trio

from hzp2p.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from hzp2p.storage import AsyncStorage, BlockRecord, ExecResult, ReadyBatch, StateReader, TxRecord

CHAIN = b"crash-chain"
GENESIS = b"\x07" * 32
ENTRIES = 20  # entries per batch; batch k holds indexes k*ENTRIES+1 .. (k+1)*ENTRIES
TXS = 50  # transactions per block; block h is carried by raft index h + 1
CONF = ConfState(frozenset({1, 2, 3}))


def entry_data(index: int) -> bytes:
    return (b"%d|" % index).ljust(200, b".")


def block_hash(height: int) -> bytes:
    return hashlib.sha256(b"block %d" % height).digest()


def tx_rows(height: int) -> list[TxRecord]:
    return [
        TxRecord(
            hashlib.sha256(b"tx %d %d" % (height, i)).digest(),
            height,
            i,
            "epi.report",
            "applied" if i % 7 else "rejected",
            "" if i % 7 else "duplicate report_id",
        )
        for i in range(TXS)
    ]


def block_writes(height: int, count: int) -> dict[bytes, bytes | None]:
    writes: dict[bytes, bytes | None] = {b"blk/%d" % height: b"1", b"count": b"%d" % count}
    for i in range(TXS):
        writes[b"s/%d/%d" % (height, i)] = b"v" * 40
    if height > 0:
        writes[b"s/%d/0" % (height - 1)] = None  # deletes are part of a block, too
    return writes


async def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = await AsyncStorage.open_sqlite(path, CHAIN, GENESIS)
    init = await store.load()
    assert init.last_index % ENTRIES == 0, init.last_index
    batch = init.last_index // ENTRIES  # batches 0 .. batch-1 are in the log
    term = max(1, init.hard_state.term)
    commit = init.hard_state.commit
    height = 0 if init.tip is None else init.tip[0] + 1
    print(f"start {batch} {height}", flush=True)

    def batch_entries(k: int, t: int) -> list[Entry]:
        lo = k * ENTRIES + 1
        return [Entry(t, i, data=entry_data(i)) for i in range(lo, lo + ENTRIES)]

    while True:
        r = rng.random()
        if r < 0.35 and height + 1 <= commit:
            block = BlockRecord(
                height,
                block_hash(height),
                block_hash(height - 1) if height else b"",
                height + 1,
                rng.randbytes(1000),
            )

            def execute(r: StateReader, h: int = height) -> ExecResult:
                count = int(r.get(b"count") or b"0")
                assert count == h, (count, h)
                return tx_rows(h), block_writes(h, count + 1)

            mode = rng.random()
            if mode < 0.35:
                await store.apply_block_with(block, execute, height + 1)
            elif mode < 0.7 and height + 2 <= commit:
                # Two blocks in one transaction: the second executes over the first's writes.
                h2 = height + 1
                second = BlockRecord(h2, block_hash(h2), block_hash(height), h2 + 1,
                                     rng.randbytes(1000))
                await store.apply_blocks_with(
                    [(block, execute, height + 1),
                     (second, lambda r, h=h2: execute(r, h), h2 + 1)]
                )
                print(f"K {height}", flush=True)
                height += 1
            else:
                await store.apply_block(block, tx_rows(height), block_writes(height, height + 1), height + 1)
            print(f"K {height}", flush=True)
            height += 1
        elif r < 0.42 and batch > 0 and commit < batch * ENTRIES:
            # A new term rewrites the uncommitted last batch: suffix truncation + hard state.
            term += 1
            await store.save_ready(batch_entries(batch - 1, term), HardState(term, 0, commit))
            print(f"B {batch - 1}", flush=True)
        elif r < 0.45 and height > 40:
            # Snapshot at the applied index, then compact the log below it.
            applied = height  # block h is carried by raft index h + 1
            snap_term = await store.term(applied)
            await store.save_snapshot(Snapshot(SnapshotMeta(applied, snap_term, CONF), b"s"))
            await store.compact(applied - 20)
            print(f"C {applied - 20}", flush=True)
        else:
            group = rng.choice((1, 1, 1, 2, 3))
            batches = []
            for k in range(batch, batch + group):
                commit = k * ENTRIES  # the commit index trails the log by one batch
                batches.append(ReadyBatch(batch_entries(k, term), HardState(term, 0, commit)))
            if group == 1:
                await store.save_ready(batches[0].entries, batches[0].hard_state)
            else:
                await store.save_batches(batches)
            for k in range(batch, batch + group):
                print(f"B {k}", flush=True)
            batch += group


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
