"""`hzp2p sim SCENARIO.toml` and `hzp2p sim sweep`: the command line of the simulation harness.

Owns argument parsing, choosing the engine, the progress bar (stderr, only when
stderr is a TTY or with --progress, never with --json), printing the report and
writing it under --out. Exit status: 0 the run finished with no safety
violation, 1 a violation (or the live cluster failed), 2 wrong usage or an
invalid scenario (the message names the file and the field).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hzp2p.sim.scenario import ScenarioError, load_scenario

DEFAULT_SWEEP_VOTERS = "3,5,7,9"
DEFAULT_SWEEP_LEARNERS = "0,15,30,45"


def register_sim(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run a simulation scenario (or `sim sweep`) and report throughput, latency, safety",
        description="Run SCENARIO.toml in the deterministic engine (one process, virtual time) "
        "or the live engine (real daemons, a fault-injecting relay). `hzp2p sim sweep` runs "
        "the voters x learners sweep.",
    )
    p.add_argument("scenario", help="a scenario file (simulations/*.toml), or `sweep`")
    p.add_argument("--engine", choices=("deterministic", "live"), default="deterministic")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument(
        "--out",
        default=None,
        help="directory for report.json and the plots (default: sim-out/NAME)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--progress", action="store_true", help="show the progress bar on stderr")
    p.add_argument("--voters", default=DEFAULT_SWEEP_VOTERS, help="sweep: voter counts")
    p.add_argument("--learners", default=DEFAULT_SWEEP_LEARNERS, help="sweep: learner counts")
    p.set_defaults(func=cmd_sim)


def _usage(msg: str) -> int:
    print(f"hzp2p sim: error: {msg}", file=sys.stderr)
    return 2


def _counts(text: str, name: str, lo: int, hi: int) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not vals or any(not lo <= v <= hi for v in vals):
        raise ValueError(f"{name} needs values between {lo} and {hi}, got {text!r}")
    return vals


def cmd_sim(args: argparse.Namespace) -> int:
    show_progress = (args.progress or sys.stderr.isatty()) and not args.json
    if args.scenario == "sweep":
        return _cmd_sweep(args, show_progress)
    try:
        scn = load_scenario(args.scenario)
    except ScenarioError as exc:
        return _usage(str(exc))
    if args.seed is not None:
        if args.seed < 0:
            return _usage("--seed must be >= 0")
        scn = scn.with_seed(args.seed)
    out = Path(args.out) if args.out else Path("sim-out") / scn.name
    label = f"{scn.name} ({args.engine})"
    from hzp2p.sim.engine_det import stderr_progress

    progress = stderr_progress(label) if show_progress else None
    if args.engine == "deterministic":
        from hzp2p.sim.engine_det import run_deterministic
        from hzp2p.sim.ledger_sm import ScenarioWorkloadError

        try:
            rec = run_deterministic(scn, progress)
        except ScenarioWorkloadError as exc:
            return _usage(f"{scn.source}: {exc}")
    else:
        from hzp2p.sim.engine_live import LiveError, run_live

        try:
            rec = run_live(scn, out / "cluster", progress)
        except LiveError as exc:
            print(f"hzp2p sim: live run failed: {exc}", file=sys.stderr)
            return 1
    from hzp2p.sim.report import build_report, format_text, write_outputs

    report = build_report(rec, scn)
    notes = write_outputs(report, rec, out)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(format_text(report))
        print(f"  written      {out}/report.json and plots")
    for n in notes:
        print(f"hzp2p sim: {n}", file=sys.stderr)
    return 1 if report["safety_violations"] or report["liveness_failures"] else 0


def _cmd_sweep(args: argparse.Namespace, show_progress: bool) -> int:
    try:
        voters = _counts(args.voters, "--voters", 1, 51)
        learners = _counts(args.learners, "--learners", 0, 200)
    except ValueError as exc:
        return _usage(str(exc))
    if args.engine != "deterministic":
        return _usage("the sweep runs in the deterministic engine only")
    from hzp2p.sim.sweep import SWEEP_BASE, format_table, run_sweep, write_sweep

    base = SWEEP_BASE if args.seed is None else SWEEP_BASE.with_seed(args.seed)
    total = len(voters) * len(learners)
    done = [0]

    def on_cell(row: dict[str, Any]) -> None:
        done[0] += 1
        if show_progress:
            sys.stderr.write(
                f"\rsweep: {done[0]}/{total} cells "
                f"(last: {row['voters']} voters, {row['learners']} learners)"
            )
            if done[0] == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    rows = run_sweep(voters, learners, base, on_cell)
    out = Path(args.out) if args.out else Path("sim-out") / "sweep"
    notes = write_sweep(rows, out, base)
    if args.json:
        print(json.dumps({"rows": rows}, sort_keys=True))
    else:
        print(f"sweep: {base.description}, {base.duration_s:g} s each, seed {base.seed}")
        print(format_table(rows))
        print(f"written {out}/sweep.json and {out}/sweep.png")
    for n in notes:
        print(f"hzp2p sim: {n}", file=sys.stderr)
    return 1 if any(r["safety_violations"] for r in rows) else 0
