"""Export benchmark: rows per second `hzp2p export` writes from a node database.

    python benchmarks/export_bench.py [--reports N] [--format parquet|csv] [--dir DIR] [--json]

Builds, without daemons, the state of a chain of N `epi.report` transactions
(default 1,000,000; blocks of 1,000): the real `epi.report` contract writes
each report (hzp2p.contracts.epi, through the registry as the engine calls it,
signatures left out: they are not what is measured), and the state is stored
in a node database with hzp2p.storage.SqliteStorage. Then it times one full
export of that database read-only (hzp2p.analytics: SqliteSnapshot + export),
as `hzp2p export` runs on a stopped node. Prints a table, or with --json one
object whose `export_rows_per_s` is the figure issue 18 names (target >= 200,000).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hzp2p.analytics.export import export
from hzp2p.analytics.sources import SqliteSnapshot
from hzp2p.contracts import epi
from hzp2p.contracts.api import Institution, TxContext, encode_value
from hzp2p.contracts.engine import K_HEAD, genesis_state_writes
from hzp2p.contracts.registry import HANDLERS
from hzp2p.contracts.state import DictState, Overlay
from hzp2p.raft.types import ConfState
from hzp2p.storage import OpenOptions, SqliteStorage
from hzp2p.tools.testkit import LocalChain

TXS_PER_BLOCK = 1000
TARGET_ROWS_PER_S = 200_000
T0_MS = 1_800_000_000_000


def build_db(path: Path, n: int) -> float:
    """Write the state of n epi.report transactions into a node database; returns seconds."""
    t0 = time.perf_counter()
    chain = LocalChain(n_voters=1, n_learners=0, seed=7)
    base = DictState(genesis_state_writes(chain.genesis))
    view = Overlay(base)
    hospital = Institution(3, "hospital", frozenset({"hospital"}), b"\1" * 32, b"\2" * 32,
                           "127.0.0.1:1", False, True)
    handler = HANDLERS["epi.report"]
    assert handler is epi.report
    height = 0
    for i in range(n):
        height = 1 + i // TXS_PER_BLOCK
        payload = {
            "report_id": f"r-{i:09d}",
            "region": f"district-{i % 16}",
            "metric": ("confirmed_cases", "hospitalised", "deaths")[i % 3],
            "value": i % 1000,
            "period": f"2026-W{i % 52 + 1:02d}",
        }
        handler(TxContext("epi.report", i.to_bytes(32, "big"), payload, b"\1" * 32, hospital,
                          height, T0_MS + height * 1000, {}, view))
    view.put(K_HEAD, encode_value([height, b"\3" * 32, T0_MS + height * 1000]))
    pairs = dict(base.data)
    pairs.update({k: v for k, v in view.writes.items() if v is not None})
    opts = OpenOptions(durable=False)
    with SqliteStorage(str(path), b"bench", b"\0" * 32, opts) as s:
        s.install_state(sorted(pairs.items()), 0, ConfState(frozenset({1}), frozenset()),
                        (height, b"\3" * 32))
    return time.perf_counter() - t0


def run(n: int, fmt: str, root: Path) -> dict[str, Any]:
    db = root / "node.db"
    build_s = build_db(db, n)
    out = root / "export"
    t0 = time.perf_counter()
    src = SqliteSnapshot(db)
    try:
        res = export(src, out, fmt=fmt)
    finally:
        src.close()
    seconds = time.perf_counter() - t0
    rows = sum(res.rows.values())
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "reports": n,
        "format": fmt,
        "rows": rows,
        "export_s": round(seconds, 3),
        "export_rows_per_s": round(rows / seconds),
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "export_bytes": size,
        "db_bytes": db.stat().st_size,
        "build_s": round(build_s, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "commit": _commit(),
    }


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, check=False, timeout=5)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=1_000_000)
    ap.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: /var/tmp)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.reports < 1:
        ap.error("--reports must be >= 1")
    root = Path(tempfile.mkdtemp(prefix="hzp2p-export-bench-", dir=args.dir or "/var/tmp"))
    try:
        r = run(args.reports, args.format, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(r))
        return 0
    ok = "yes" if r["export_rows_per_s"] >= TARGET_ROWS_PER_S else "NO"
    print(f"export of a chain of {r['reports']:,} epi.report transactions ({r['format']})")
    print(f"  {'rows exported':<28}{r['rows']:>14,}")
    print(f"  {'export time (s)':<28}{r['export_s']:>14}")
    print(f"  {'rows/s':<28}{r['export_rows_per_s']:>14,}   target >= {TARGET_ROWS_PER_S:,}: {ok}")
    print(f"  {'export size (bytes)':<28}{r['export_bytes']:>14,}")
    print(f"  {'database size (bytes)':<28}{r['db_bytes']:>14,}")
    print(f"  {'state build (s, not timed)':<28}{r['build_s']:>14}")
    print(f"  {'load average (1 min)':<28}{r['load_avg_1m']:>14}   commit {r['commit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
