"""`hzp2p fuzz`: run the deterministic fault simulator over many seeds.

Owns the command line of the simulator (argument parsing, the summary table,
the JSON report, exit codes: 0 all seeds safe and live, 1 a seed violated a
property, 2 wrong usage). A failing seed prints its replay command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from hzp2p.sim.faults import PROFILES
from hzp2p.sim.fuzz import FuzzPlan, FuzzReport, SeedResult, Totals, run_plan
from hzp2p.sim.ledger_app import BUGS
from hzp2p.sim.node import load_core

MAX_VOTERS = 51
REPLAY_TRACE_TAIL = 400
"""Events shown when replaying one seed with --verbose."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fuzz",
        help="run the deterministic Raft fault simulator over many seeds",
        description="Run the seeded fault simulator (crashes, partitions, lossy links, slow "
        "disks) over many seeds and check Raft's safety and liveness properties.",
    )
    p.add_argument("--seeds", type=int, default=100, help="number of seeds to run (default 100)")
    p.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--voters", default="3,5,7", help="voter counts, cycled over the seeds")
    p.add_argument("--learners", type=int, default=0, help="non-voting learners per cluster")
    p.add_argument(
        "--profile", default="mixed", help=f"fault profile: {', '.join(sorted(PROFILES))}"
    )
    p.add_argument(
        "--membership",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="inject the profile's membership changes (default: on)",
    )
    p.add_argument("--ticks", type=int, default=None, help="safety-phase length in ticks")
    p.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes"
    )
    p.add_argument(
        "--core",
        default=None,
        metavar="MODULE:CLASS",
        help="drive this RaftCore subclass instead (replays of planted-bug tests)",
    )
    p.add_argument(
        "--ledger",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the production ledger node (blocks, contracts, receipts) on every node "
        "with its clients and checkers (default: on)",
    )
    p.add_argument(
        "--plant-bug",
        default=None,
        metavar="NAME",
        help=f"test only: plant a ledger-node bug the checkers must find ({', '.join(sorted(BUGS))})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--verbose", action="store_true", help="one line per seed; full failure traces")
    p.set_defaults(func=cmd_fuzz)
    from hzp2p.sim.sim_cli import register_sim  # `hzp2p sim`: scenarios, engines, sweep

    register_sim(subparsers)


def _usage(msg: str) -> int:
    print(f"hzp2p fuzz: error: {msg}", file=sys.stderr)
    return 2


def parse_voters(text: str) -> tuple[int, ...]:
    try:
        vs = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--voters must be comma-separated integers, got {text!r}") from None
    if not vs or any(not 1 <= v <= MAX_VOTERS for v in vs):
        raise ValueError(f"--voters needs counts between 1 and {MAX_VOTERS}, got {text!r}")
    return vs


def cmd_fuzz(args: argparse.Namespace) -> int:
    try:
        voters = parse_voters(args.voters)
    except ValueError as exc:
        return _usage(str(exc))
    if args.seeds < 1:
        return _usage("--seeds must be >= 1")
    if args.start < 0:
        return _usage("--start must be >= 0")
    if args.learners < 0 or max(voters) + args.learners > 256:
        return _usage("--learners must be >= 0 and voters + learners <= 256")
    if args.profile not in PROFILES:
        return _usage(f"unknown --profile {args.profile!r} (known: {', '.join(sorted(PROFILES))})")
    if args.ticks is not None and args.ticks < 1:
        return _usage("--ticks must be >= 1")
    if args.workers < 1:
        return _usage("--workers must be >= 1")
    if args.plant_bug is not None and args.plant_bug not in BUGS:
        return _usage(f"unknown --plant-bug {args.plant_bug!r} (known: {', '.join(sorted(BUGS))})")
    if args.plant_bug is not None and not args.ledger:
        return _usage("--plant-bug needs the ledger (drop --no-ledger)")
    if args.core is not None:
        try:
            load_core(args.core)
        except (ImportError, AttributeError, ValueError, AssertionError) as exc:
            return _usage(f"--core {args.core!r}: {exc}")
    plan = FuzzPlan(
        seeds=args.seeds,
        start=args.start,
        voters=voters,
        learners=args.learners,
        profile=args.profile,
        membership=args.membership,
        ticks=args.ticks,
        core=args.core,
        ledger=args.ledger,
        bug=args.plant_bug,
        trace_tail=REPLAY_TRACE_TAIL if args.verbose and args.seeds == 1 else 40,
    )
    verbose: bool = args.verbose
    as_json: bool = args.json

    def on_result(r: SeedResult) -> None:
        if not as_json and verbose:
            if r.ok:
                s = r.summary
                print(
                    f"seed {r.seed:>6} voters {r.voters}: ok  steps={s['steps']} "
                    f"elections={s['elections']} committed={s['committed']} acked={s['acked']} "
                    f"crashes={s['crashes']} reads={s['reads']} snapshots={s['snapshots']} "
                    f"conf_changes={s['conf_changes']} blocks={s['blocks_applied']} "
                    f"receipts={s['receipts_checked']} p50/p99={s['commit_p50_ms']}/{s['commit_p99_ms']}ms "
                    f"history={s['history']} ({r.wall_s:.2f}s)",
                    flush=True,
                )
            else:
                print(f"seed {r.seed:>6} voters {r.voters}: VIOLATION", flush=True)
        if not r.ok and not as_json:
            report = str(r.failure["report"])
            if not verbose:  # keep stderr short; --verbose prints the whole trace tail
                report = "\n".join(report.splitlines()[:4])
            print(report, file=sys.stderr, flush=True)

    workers = 1 if args.seeds == 1 else args.workers
    report = run_plan(plan, workers=workers, on_result=on_result)
    if as_json:
        print(json.dumps(report.as_json(), sort_keys=True))
    else:
        print(format_table(report))
    return 1 if report.total.violations else 0


def format_table(report: FuzzReport) -> str:
    head = (
        "voters", "seeds", "steps", "elections", "committed", "acked", "reads", "crashes",
        "blocks", "receipts", "violations",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = [head]

    def row(label: str, t: Totals) -> tuple[str, ...]:
        return (
            label, str(t.seeds), str(t.steps), str(t.elections), str(t.committed),
            str(t.acked), str(t.reads), str(t.crashes), str(t.blocks_applied),
            str(t.receipts_checked), str(t.violations),
        )  # fmt: skip

    for v in sorted(report.by_voters):
        rows.append(row(str(v), report.by_voters[v]))
    rows.append(row("total", report.total))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t = report.total
    lines.append(
        f"profile {report.plan.profile}, seeds {report.plan.start}..{report.plan.start + t.seeds - 1}, "
        f"wall time {report.wall_s:.1f}s ({t.cpu_s / max(t.seeds, 1):.3f}s per seed)"
    )
    if report.failures:
        lines.append("failing seeds (replay):")
        lines.extend(f"  {f['replay']}  # {f['property']}" for f in report.failures)
    return "\n".join(lines)
