"""Codec micro-benchmark: encode and decode of the hot wire messages (hzp2p.net.codec).

    python benchmarks/codec_bench.py [--seconds S] [--json]

Measures, with the registry the daemon uses (`default_registry()`), the cost of:
  * an AppendEntries with 64 entries of 256 bytes, encoded (a fresh tuple each
    time, so the shared-field cache never hits) and decoded from a frame;
  * the same AppendEntries encoded for a second follower (the cache hits);
  * an AppendEntries with one entry (a lightly loaded leader), encoded and decoded;
  * a frame of 64 AppendEntriesResponses (a follower's acknowledgements), and one of
    64 Heartbeats, encoded and decoded.
Each figure is the best of five windows of `--seconds / 5`, in microseconds per
message (and per entry for the large AppendEntries). Single-threaded, no I/O.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hzp2p.net.schemas import default_registry
from hzp2p.raft import messages as m
from hzp2p.raft.types import Entry, EntryKind

ENTRIES = 64
ENTRY_BYTES = 256
BATCH = 64


def best_us(fn: Callable[[], Any], per: int, seconds: float) -> float:
    """Best of five windows: microseconds per call of `fn`, divided by `per`."""
    best = float("inf")
    for _ in range(5):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 5
        while True:
            fn()
            n += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = min(best, (now - start) / n / per * 1e6)
    return round(best, 3)


def run(seconds: float) -> dict[str, float]:
    reg = default_registry()
    data = [bytes([i % 251]) * ENTRY_BYTES for i in range(ENTRIES)]

    def big(fresh: bool = True) -> m.AppendEntries:
        entries = tuple(
            Entry(7, 1001 + i, EntryKind.NORMAL, data[i]) for i in range(ENTRIES)
        ) if fresh else BIG.entries
        return m.AppendEntries(7, 1, 2, 1000, 7, entries, 1000)

    BIG = big()
    one = m.AppendEntries(7, 1, 2, 1000, 7, (Entry(7, 1001, EntryKind.NORMAL, data[0]),), 1000)
    resps = [m.AppendEntriesResponse(7, 2, 1, False, 1000 + i, 0, 0, 1000) for i in range(BATCH)]
    hbs = [m.Heartbeat(7, 1, 2, 1000, b"") for _ in range(BATCH)]

    fresh_bigs = [big() for _ in range(64)]
    k = [0]

    def enc_big_miss() -> bytes:
        k[0] = (k[0] + 1) % 64
        reg._shared.clear()  # every encode packs the entries (a new proposal batch)
        return reg.encode_message(fresh_bigs[k[0]])

    to3 = m.AppendEntries(7, 1, 3, 1000, 7, BIG.entries, 999)
    reg.encode_message(BIG)

    def enc_big_hit() -> bytes:
        return reg.encode_message(to3)  # the same entries already packed for node 2

    big_frame = reg.encode_batch([BIG])
    one_frame = reg.encode_batch([one])
    resp_frame = reg.encode_batch(resps)
    hb_frame = reg.encode_batch(hbs)
    assert reg.decode_batch(big_frame) == [BIG]
    assert reg.decode_batch(resp_frame) == resps

    out = {
        "append64_encode_us": best_us(enc_big_miss, 1, seconds),
        "append64_encode_cached_us": best_us(enc_big_hit, 1, seconds),
        "append64_decode_us": best_us(lambda: reg.decode_batch(big_frame), 1, seconds),
        "append1_encode_us": best_us(lambda: reg.encode_batch([one]), 1, seconds),
        "append1_decode_us": best_us(lambda: reg.decode_batch(one_frame), 1, seconds),
        "responses64_encode_us_per_msg": best_us(lambda: reg.encode_batch(resps), BATCH, seconds),
        "responses64_decode_us_per_msg": best_us(
            lambda: reg.decode_batch(resp_frame), BATCH, seconds
        ),
        "heartbeats64_encode_us_per_msg": best_us(lambda: reg.encode_batch(hbs), BATCH, seconds),
        "heartbeats64_decode_us_per_msg": best_us(
            lambda: reg.decode_batch(hb_frame), BATCH, seconds
        ),
    }
    out["append64_decode_us_per_entry"] = round(out["append64_decode_us"] / ENTRIES, 3)
    out["append64_encode_us_per_entry"] = round(out["append64_encode_us"] / ENTRIES, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per figure (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    result = run(args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:36} {value:10.3f}")


if __name__ == "__main__":
    main()
