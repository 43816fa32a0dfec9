"""`hzp2p sim sweep`: throughput and p99 latency against the number of voters and learners.

Owns the sweep: one deterministic run per (voters, learners) cell of a base
scenario (simulations/sweep-base.toml shape, built in: no faults, a fixed
offered load), one table and one plot (sweep.png: throughput and p99 latency
against voters, one line per learner count). Why voters stay few shows as
the p99 growing and throughput falling with the voter count, while learners
cost the leader only bandwidth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hzp2p.sim.engine_det import run_deterministic
from hzp2p.sim.report import build_report, dumps
from hzp2p.sim.scenario import Cluster, Network, Scenario, Workload

SWEEP_BASE = Scenario(
    name="sweep",
    description="offered 1000 tx/s, 8 clients, 100 Mbit/s egress per node, 1-6 ms links, no faults",
    duration_s=5.0,
    seed=7,
    election_ticks=20,
    heartbeat_ticks=4,
    workload=Workload(tx_rate_per_s=1000.0, clients=8, mix=(("epi.report", 1.0),)),
    network=Network(
        latency_ms_min=1, latency_ms_max=6, spike_prob=0.01, spike_ms=40, bandwidth_mbit_s=100.0
    ),
)


def run_sweep(
    voters: Sequence[int],
    learners: Sequence[int],
    base: Scenario = SWEEP_BASE,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for v in voters:
        for lrn in learners:
            scn = replace(base, name=f"sweep-v{v}-l{lrn}", cluster=Cluster(v, lrn))
            rec = run_deterministic(scn)
            rep = build_report(rec, scn)
            row = {
                "voters": v,
                "learners": lrn,
                "throughput_tx_per_s": rep["throughput_tx_per_s"],
                "p50_ms": rep["latency_ms"]["p50"],
                "p99_ms": rep["latency_ms"]["p99"],
                "elections": rep["elections"],
                "safety_violations": rep["safety_violations"],
                "drained": rep["liveness_failures"] == 0,
                "messages": rep["extra"].get("messages", 0),
                "wall_seconds": rep["wall_seconds"],
            }
            rows.append(row)
            if on_cell is not None:
                on_cell(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("voters", "learners", "tx/s", "p50 ms", "p99 ms", "elections", "messages", "drained",
            "violations")  # fmt: skip
    body = [
        (str(r["voters"]), str(r["learners"]), f"{r['throughput_tx_per_s']:.0f}", f"{r['p50_ms']:.0f}",
         f"{r['p99_ms']:.0f}", str(r["elections"]), str(r["messages"]),
         "yes" if r["drained"] else "no", str(r["safety_violations"]))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def write_sweep(
    rows: Sequence[dict[str, Any]], out: Path, base: Scenario = SWEEP_BASE
) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "base": base.description,
        "duration_s": base.duration_s,
        "seed": base.seed,
        "rows": [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows],
    }
    (out / "sweep.json").write_text(dumps(doc), encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["plot skipped: it needs matplotlib (pip install 'hzp2p[sim]')"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for lrn in sorted({r["learners"] for r in rows}):
        sel = sorted((r for r in rows if r["learners"] == lrn), key=lambda r: r["voters"])
        vs = [r["voters"] for r in sel]
        axes[0].plot(
            vs, [r["throughput_tx_per_s"] for r in sel], marker="o", label=f"{lrn} learners"
        )
        axes[1].plot(vs, [r["p99_ms"] for r in sel], marker="o", label=f"{lrn} learners")
    axes[0].set(xlabel="voters", ylabel="committed tx/s", title="throughput")
    axes[1].set(xlabel="voters", ylabel="p99 commit latency (ms)", title="p99 latency")
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylim(bottom=0)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"hzp2p sim sweep (deterministic engine): {base.description}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=80)
    plt.close("all")
    return []
