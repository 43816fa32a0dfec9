"""The `hzp2p sim` report: numbers, verdicts, the readable text, report.json and PNG plots.

Owns turning a `RunRecord` (either engine) into the report users read. Keys
every report has: throughput_tx_per_s, latency_ms {p50, p95, p99, max},
elections, leader_changes, safety_violations, checkers (one verdict per
property), faults (with time_to_new_leader_ms / time_to_converge_ms),
sim_seconds, wall_seconds. `wall_seconds` and `speedup` are the only
wall-clock values; `run_digest` hashes everything else, so two deterministic
runs with the same seed have equal digests and report.json files that are
byte-identical once those two keys are dropped (docs/simulations.md). Plots
need matplotlib (`pip install 'hzp2p[sim]'`); without it the JSON is still
written and the report says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hzp2p.sim.record import RunRecord
from hzp2p.sim.scenario import Scenario

WALL_KEYS = ("wall_seconds", "speedup")
"""The only keys that depend on the machine; excluded from run_digest."""

CHECKERS = {
    "no_two_leaders_in_a_term": ("election safety",),
    "no_divergent_committed_blocks": (
        "divergent committed blocks", "committed entry changed", "committed entry lost",
        "log matching", "leader completeness", "snapshot disagrees with the committed log",
        "snapshot state differs", "durable commit went backwards", "commit ahead of durable log",
        "applied a non-durable entry", "apply order",
    ),
    "no_acked_tx_lost_or_applied_twice": (
        "tx applied twice", "request applied twice", "request applied at different indices",
        "acknowledged write lost", "acknowledged writes reordered", "acknowledgement mismatch",
        "bad duplicate", "stale read",
    ),
    "liveness_after_heal": ("liveness",),
}  # fmt: skip


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))])


def bucket_ms(duration_ms: float) -> int:
    return max(100, int(duration_ms / 40) // 100 * 100)


def build_report(rec: RunRecord, scn: Scenario) -> dict[str, Any]:
    lats = [lat for _, lat in rec.tx_acks]
    dur_ms = rec.sim_seconds * 1000
    b = bucket_ms(dur_ms)
    nb = max(1, int(dur_ms // b))
    counts = [0] * nb
    for t, _ in rec.tx_acks:
        counts[min(nb - 1, int(t // b))] += 1
    verdicts: dict[str, str] = {k: "pass" for k in CHECKERS}
    for v in rec.violations:
        key = next((k for k, props in CHECKERS.items() if v["property"] in props), "other")
        verdicts[key] = f"FAIL: {v['property']}: {v['detail']}"
    faults = [f.as_dict() for f in rec.faults]
    lag_max = {
        str(nid): max((row[i] for _, row in rec.lag if i < len(row)), default=0)
        for i, nid in enumerate(rec.node_ids)
    }
    report: dict[str, Any] = {
        "scenario": scn.name,
        "engine": rec.engine,
        "seed": rec.seed,
        "voters": scn.cluster.voters,
        "learners": scn.cluster.learners,
        "offered_tx_per_s": scn.workload.tx_rate_per_s,
        "throughput_tx_per_s": round(len(rec.tx_acks) / rec.sim_seconds, 2)
        if rec.sim_seconds
        else 0.0,
        "txs_acknowledged": len(rec.tx_acks),
        "txs_acknowledged_total": rec.tx_acks_total,
        "latency_ms": {
            "p50": round(percentile(lats, 50), 1),
            "p95": round(percentile(lats, 95), 1),
            "p99": round(percentile(lats, 99), 1),
            "max": round(max(lats, default=0.0), 1),
        },
        "elections": rec.elections,
        "leader_changes": len(rec.leader_changes),
        "leader_timeline": [list(x) for x in rec.leader_changes],
        "faults": faults,
        "time_to_new_leader_ms": [f["time_to_new_leader_ms"] for f in faults if f["leader_lost"]],
        "time_to_converge_ms": [f["time_to_converge_ms"] for f in faults],
        "max_lag_per_node": lag_max,
        "safety_violations": sum(1 for v in rec.violations if v["property"] != "liveness"),
        "liveness_failures": sum(1 for v in rec.violations if v["property"] == "liveness"),
        "violations": rec.violations,
        "checkers": verdicts,
        "throughput_series": {"bucket_ms": b, "tx_per_s": [round(c * 1000 / b, 1) for c in counts]},
        "sim_seconds": rec.sim_seconds,
        "extra": rec.extra,
    }
    report["run_digest"] = run_digest(report)
    report["wall_seconds"] = round(rec.wall_seconds, 3)
    report["speedup"] = round(rec.sim_seconds / rec.wall_seconds, 2) if rec.wall_seconds else 0.0
    return report


def run_digest(report: dict[str, Any]) -> str:
    body = {k: v for k, v in report.items() if k not in (*WALL_KEYS, "run_digest")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=1) + "\n"


def format_text(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    lines = [
        f"scenario {report['scenario']} ({report['engine']} engine, seed {report['seed']}): "
        f"{report['voters']} voters + {report['learners']} learners",
        f"  throughput   {report['throughput_tx_per_s']:.1f} tx/s committed "
        f"(offered {report['offered_tx_per_s']:g} tx/s, {report['txs_acknowledged']} txs)",
        f"  latency      p50 {lat['p50']:.0f} ms  p95 {lat['p95']:.0f} ms  p99 {lat['p99']:.0f} ms"
        f"  max {lat['max']:.0f} ms",
        f"  elections    {report['elections']}  (leader changes seen: {report['leader_changes']})",
    ]
    for f in report["faults"]:
        parts = [
            f"  fault        {f['kind']:<15} {f['start_ms'] / 1000:6.2f}s..{f['end_ms'] / 1000:6.2f}s"
        ]
        if f["detail"]:
            parts.append(f["detail"])
        if f["leader_lost"]:
            nl = f["time_to_new_leader_ms"]
            parts.append(f"new leader after {nl} ms" if nl is not None else "no new leader seen")
        cv = f["time_to_converge_ms"]
        parts.append(f"converged {cv} ms after heal" if cv is not None else "convergence not seen")
        lines.append(", ".join(parts))
    worst = max(report["max_lag_per_node"].items(), key=lambda kv: kv[1], default=("-", 0))
    lines.append(f"  max lag      {worst[1]} entries (node {worst[0]})")
    lines.append(
        f"  safety       {report['safety_violations']} violations, "
        f"{report['liveness_failures']} liveness failures"
    )
    for name, verdict in report["checkers"].items():
        lines.append(f"    {name:<36} {verdict}")
    for v in report["violations"]:
        if v.get("replay"):
            lines.append(f"  replay:      {v['replay']}")
    lines.append(
        f"  time         {report['sim_seconds']:g} s simulated in {report['wall_seconds']:.2f} s wall"
        f" ({report['speedup']:.1f}x real time)  digest {report['run_digest']}"
    )
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], rec: RunRecord, out: Path) -> list[str]:
    """report.json and the plots; returns notes for the user (e.g. plots skipped)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(dumps(report), encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["plots skipped: they need matplotlib (pip install 'hzp2p[sim]')"]
    _plots(plt, report, rec, out)
    plt.close("all")
    return []


def _mark_faults(ax: Any, report: dict[str, Any]) -> None:
    for f in report["faults"]:
        ax.axvspan(f["start_ms"] / 1000, f["end_ms"] / 1000, color="tab:red", alpha=0.12)
        ax.text(
            f["start_ms"] / 1000,
            ax.get_ylim()[1] * 0.95,
            f["kind"],
            fontsize=7,
            rotation=90,
            va="top",
            color="tab:red",
        )


def _plots(plt: Any, report: dict[str, Any], rec: RunRecord, out: Path) -> None:
    title = f"{report['scenario']} ({report['engine']}, seed {report['seed']})"
    series = report["throughput_series"]
    b = series["bucket_ms"] / 1000
    xs = [i * b + b / 2 for i in range(len(series["tx_per_s"]))]

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(xs, series["tx_per_s"], marker=".")
    ax.set(xlabel="time (s)", ylabel="committed tx/s", title=f"throughput: {title}")
    ax.set_ylim(bottom=0, top=max(series["tx_per_s"] + [1]) * 1.15)
    _mark_faults(ax, report)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=80)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    per: dict[int, list[float]] = {}
    for t, lat in rec.tx_acks:
        per.setdefault(int(t / 1000 // b), []).append(lat)
    keys = sorted(per)
    for pct in (50, 95, 99):
        ax.plot(
            [k * b + b / 2 for k in keys], [percentile(per[k], pct) for k in keys], label=f"p{pct}"
        )
    ax.set(xlabel="time (s)", ylabel="commit latency (ms)", title=f"latency: {title}")
    ax.set_ylim(bottom=0)
    ax.legend()
    _mark_faults(ax, report)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=80)

    fig, ax = plt.subplots(figsize=(8, 3))
    tl = report["leader_timeline"]
    if tl:
        ax.step(
            [t / 1000 for t, _, _ in tl] + [report["sim_seconds"]],
            [lead for _, lead, _ in tl] + [tl[-1][1]],
            where="post",
        )
    ax.set(
        xlabel="time (s)",
        ylabel="leader id (0 = none)",
        title=f"leaders: {report['elections']} elections, {report['leader_changes']} changes",
    )
    _mark_faults(ax, report)
    fig.tight_layout()
    fig.savefig(out / "leaders.png", dpi=80)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    lost = [(i, f) for i, f in enumerate(report["faults"]) if f["leader_lost"]]
    axes[0].bar(
        [f"{f['kind']}#{i}" for i, f in lost],
        [f["time_to_new_leader_ms"] or 0 for _, f in lost],
        color="tab:orange",
    )
    axes[0].set(ylabel="ms", title="time to a new leader")
    fl = report["faults"]
    axes[1].bar(
        [f"{f['kind']}#{i}" for i, f in enumerate(fl)],
        [f["time_to_converge_ms"] or 0 for f in fl],
        color="tab:green",
    )
    axes[1].set(ylabel="ms", title="time to converge after heal")
    for a in axes:
        a.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "recovery.png", dpi=80)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, nid in enumerate(rec.node_ids[:60]):
        ax.plot(
            [t / 1000 for t, _ in rec.lag],
            [row[i] if i < len(row) else 0 for _, row in rec.lag],
            linewidth=0.8,
            label=f"n{nid}" if len(rec.node_ids) <= 10 else None,
        )
    ax.set(xlabel="time (s)", ylabel="entries behind", title="per-node lag")
    if len(rec.node_ids) <= 10:
        ax.legend(fontsize=7, ncol=5)
    _mark_faults(ax, report)
    fig.tight_layout()
    fig.savefig(out / "lag.png", dpi=80)

    fig, ax = plt.subplots(figsize=(7, 2.2))
    ax.axis("off")
    rows = [[k, "pass" if v == "pass" else "FAIL"] for k, v in report["checkers"].items()]
    tab = ax.table(cellText=rows, colLabels=["checker", "verdict"], loc="center", cellLoc="left")
    for (r, c), cell in tab.get_celld().items():
        if r > 0 and c == 1:
            cell.set_facecolor("#c8f0c8" if rows[r - 1][1] == "pass" else "#f0c8c8")
    ax.set_title(f"safety: {report['safety_violations']} violations")
    fig.tight_layout()
    fig.savefig(out / "safety.png", dpi=80)
