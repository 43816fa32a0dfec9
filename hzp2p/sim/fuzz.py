"""Many seeds: run the simulator over a seed range, in parallel, and total the results.

Owns the seed -> options mapping (voter counts cycle over the seeds, so one
seed always replays with the same cluster size) and the aggregate report that
`hzp2p fuzz` prints. Workers are separate processes (spawned, so a run never
inherits state from the parent); each run is still a pure function of its seed.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hzp2p.sim.simulation import SimOptions, timed_run


@dataclass(frozen=True, slots=True)
class FuzzPlan:
    seeds: int
    start: int = 0
    voters: tuple[int, ...] = (3, 5, 7)
    learners: int = 0
    profile: str = "mixed"
    membership: bool = True
    ticks: int | None = None
    core: str | None = None
    ledger: bool = True
    bug: str | None = None
    """Test only: a planted ledger-node bug (hzp2p.sim.ledger_app.BUGS)."""
    trace_tail: int = 40
    """Events kept for a failure report (does not change the run)."""

    def options(self) -> Iterator[SimOptions]:
        for k in range(self.seeds):
            seed = self.start + k
            yield SimOptions(
                seed=seed,
                voters=self.voters[seed % len(self.voters)]
                if len(self.voters) > 1
                else self.voters[0],
                learners=self.learners,
                profile=self.profile,
                membership=self.membership,
                safety_ticks=self.ticks,
                core=self.core,
                ledger=self.ledger,
                bug=self.bug,
                trace_tail=self.trace_tail,
            )


@dataclass(slots=True)
class SeedResult:
    seed: int
    voters: int
    ok: bool
    wall_s: float
    summary: dict[str, object] = field(default_factory=dict)
    failure: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Totals:
    seeds: int = 0
    steps: int = 0
    elections: int = 0
    committed: int = 0
    acked: int = 0
    crashes: int = 0
    conf_changes: int = 0
    reads: int = 0
    snapshots: int = 0
    blocks_applied: int = 0
    receipts_checked: int = 0
    violations: int = 0
    cpu_s: float = 0.0

    def add(self, r: SeedResult) -> None:
        self.seeds += 1
        self.cpu_s += r.wall_s
        if not r.ok:
            self.violations += 1
            return
        s = r.summary
        for name in (
            "steps",
            "elections",
            "committed",
            "acked",
            "crashes",
            "conf_changes",
            "reads",
            "snapshots",
            "blocks_applied",
            "receipts_checked",
        ):
            v = s[name]
            assert isinstance(v, int)
            setattr(self, name, getattr(self, name) + v)


@dataclass(slots=True)
class FuzzReport:
    plan: FuzzPlan
    total: Totals = field(default_factory=Totals)
    by_voters: dict[int, Totals] = field(default_factory=dict)
    failures: list[dict[str, object]] = field(default_factory=list)
    wall_s: float = 0.0

    def add(self, r: SeedResult) -> None:
        self.total.add(r)
        self.by_voters.setdefault(r.voters, Totals()).add(r)
        if not r.ok:
            self.failures.append(r.failure)

    def as_json(self) -> dict[str, object]:
        t = self.total
        return {
            "seeds": t.seeds,
            "start": self.plan.start,
            "voters": list(self.plan.voters),
            "profile": self.plan.profile,
            "violations": t.violations,
            "committed": t.committed,
            "acked": t.acked,
            "elections": t.elections,
            "steps": t.steps,
            "crashes": t.crashes,
            "conf_changes": t.conf_changes,
            "reads": t.reads,
            "snapshots": t.snapshots,
            "ledger": self.plan.ledger,
            "blocks_applied": t.blocks_applied,
            "receipts_checked": t.receipts_checked,
            "wall_s": round(self.wall_s, 3),
            "failures": self.failures,
        }


def run_one(options: SimOptions) -> SeedResult:
    summary, failure, wall_s = timed_run(options)
    if failure is not None:
        return SeedResult(
            options.seed,
            options.voters,
            ok=False,
            wall_s=wall_s,
            failure={
                "seed": failure.seed,
                "voters": failure.voters,
                "property": failure.prop,
                "detail": failure.detail,
                "replay": failure.replay,
                "report": str(failure),
            },
        )
    assert summary is not None
    return SeedResult(
        options.seed, options.voters, ok=True, wall_s=wall_s, summary=summary.as_dict()
    )


def run_plan(
    plan: FuzzPlan,
    workers: int = 2,
    on_result: Callable[[SeedResult], None] | None = None,
) -> FuzzReport:
    """Run every seed of `plan` (in `workers` processes when > 1), in seed order."""
    report = FuzzReport(plan)
    t0 = time.perf_counter()
    opts: Sequence[SimOptions] = list(plan.options())
    if workers <= 1 or len(opts) <= 1:
        results: Iterator[SeedResult] = map(run_one, opts)
        for r in results:
            report.add(r)
            if on_result is not None:
                on_result(r)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes=workers) as pool:
            for r in pool.imap(run_one, opts, chunksize=4):
                report.add(r)
                if on_result is not None:
                    on_result(r)
    report.wall_s = time.perf_counter() - t0
    return report
