"""Crash safety with real SIGKILLs.

A child process (crash_child.py) writes Ready batches and applies blocks through
the async SQLite facade and prints each write once it was told it is durable.
We kill it with SIGKILL at random moments, HZP2P_KILLS times (default 50), on
the same database file. After every kill the database must open, pass
integrity_check, hold every write reported durable, and hold no half-applied
block: a block is present exactly when its tx rows, its state writes and the
applied index that covers it are present.

Seed with HZP2P_CRASH_SEED to replay a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hzp2p.storage import SqliteStorage

sys.path.insert(0, str(Path(__file__).parent))
import crash_child as child

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")


def _check_batches(s: SqliteStorage, batches: set[int], compacted: int) -> None:
    first, last = s.first_index(), s.last_index()
    assert first > compacted, f"compaction to {compacted} was reported, first index is {first}"
    for k in sorted(batches):
        lo, hi = max(k * child.ENTRIES + 1, first), (k + 1) * child.ENTRIES
        assert hi <= last, f"batch {k} was reported durable but the log ends at {last}"
        if lo > hi:
            continue  # compacted away under a snapshot
        got = s.entries(lo, hi + 1)
        assert [e.data for e in got] == [child.entry_data(i) for i in range(lo, hi + 1)], k
    terms = [e.term for e in s.entries(first, last + 1)]
    assert terms == sorted(terms), "log terms must not decrease"
    hs = s.hard_state()
    assert hs.commit <= last and hs.term >= (terms[-1] if terms else 0), (hs, last)
    if batches:
        assert hs.commit >= max(batches) * child.ENTRIES, (hs, max(batches))
    assert s.applied_index() <= max(hs.commit, s.first_index() - 1)


def _check_blocks(s: SqliteStorage, heights: set[int], reported_tip: int) -> None:
    tip = s.tip()
    top = -1 if tip is None else tip[0]
    assert top >= reported_tip, f"block {reported_tip} was reported applied, tip is {top}"
    assert s.applied_index() == top + 1, (s.applied_index(), top)
    assert s.get(b"count") == (b"%d" % (top + 1) if top >= 0 else None)
    # Nothing of the block after the tip exists: no half-applied block.
    assert s.block_by_height(top + 1) is None and s.block_txs(top + 1) == []
    assert s.get(b"blk/%d" % (top + 1)) is None
    assert list(s.scan(b"s/%d/" % (top + 1))) == []
    for h in sorted(heights | ({top} if top >= 0 else set())):
        b = s.block_by_height(h)
        assert b is not None and b.block_hash == child.block_hash(h) and b.raft_index == h + 1
        assert s.block_txs(h) == child.tx_rows(h), h
        assert s.get(b"blk/%d" % h) == b"1"
        n_state = len(list(s.scan(b"s/%d/" % h)))
        assert n_state == (child.TXS if h == top else child.TXS - 1), (h, n_state)


def _verify(
    path: str, batches: set[int], heights: set[int], reported_tip: int, compacted: int
) -> None:
    s = SqliteStorage(path, None, None)  # any chain: like `hzp2p admin verify`
    try:
        assert s.integrity_check() == []
        _check_batches(s, batches, compacted)
        _check_blocks(s, heights, reported_tip)
    finally:
        s.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_reported(tmp_path: Path) -> None:
    kills = int(os.environ.get("HZP2P_KILLS", "50"))
    seed = int(os.environ.get("HZP2P_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    path = str(tmp_path / "crash.db")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    all_batches: set[int] = set()
    all_heights: set[int] = set()
    reported_tip = -1
    compacted = 0
    for n in range(kills):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), path, str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            start = proc.stdout.readline().split()
            assert start and start[0] == "start", f"child failed to start (seed {seed})"
            # Kill after a random number of durable reports (sometimes at once).
            wait_for = 0 if rng.random() < 0.1 else rng.randrange(1, 50)
            for _ in range(wait_for):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
            # A random extra moment, so kills land anywhere in a write, not just after one
            # (this is the random kill point, not a wait for a condition).
            time.sleep(rng.uniform(0, 0.004))
        finally:
            proc.send_signal(signal.SIGKILL)
            lines.append(proc.stdout.read())  # lines printed before the kill are promises too
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"child exited on its own (seed {seed})"
        new_batches: set[int] = set()
        new_heights: set[int] = set()
        for line in "".join(lines).splitlines():
            kind, _, num = line.partition(" ")
            if kind == "B":
                new_batches.add(int(num))
            elif kind == "K":
                new_heights.add(int(num))
            elif kind == "C":
                compacted = max(compacted, int(num))
        # Every batch and block below the child's start point was durable when it started.
        new_batches |= set(range(int(start[1])))
        new_heights |= set(range(int(start[2])))
        all_batches |= new_batches
        all_heights |= new_heights
        reported_tip = max([reported_tip, *all_heights])
        full = n % 10 == 9 or n == kills - 1
        try:
            _verify(
                path,
                all_batches if full else new_batches - set(range(int(start[1]) - 3)),
                all_heights if full else new_heights - set(range(int(start[2]) - 3)),
                reported_tip,
                compacted,
            )
        except AssertionError as err:
            raise AssertionError(f"after kill {n + 1} (HZP2P_CRASH_SEED={seed}): {err}") from err
