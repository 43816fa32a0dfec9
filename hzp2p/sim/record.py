"""What one `hzp2p sim` run observed, whichever engine ran it.

Owns the raw observations both engines fill in (per-transaction acknowledgements
with their latency, leader changes, faults with their leader-loss and heal
timings, per-node lag samples, checker violations) so that one report builder
(hzp2p.sim.report) turns either engine's run into the same report.json and plots.
Times are milliseconds since the start of the load (virtual in the deterministic
engine, wall-clock in the live one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FaultRecord:
    kind: str
    start_ms: int
    end_ms: int
    target: str
    detail: str = ""
    leader_lost: int | None = None
    """The leader this fault took away (None: it did not touch the leader)."""
    new_leader: int | None = None
    new_leader_ms: int | None = None
    """Fault start -> first moment another node leads (None: never, or no leader lost)."""
    converged_ms: int | None = None
    """Heal -> every member that is up has applied everything committed at the heal (None:
    never seen; a node still down under an overlapping fault does not count)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "target": self.target,
            "detail": self.detail,
            "leader_lost": self.leader_lost,
            "new_leader": self.new_leader,
            "time_to_new_leader_ms": self.new_leader_ms,
            "time_to_converge_ms": self.converged_ms,
        }


@dataclass
class RunRecord:
    engine: str
    scenario: str
    seed: int
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    tx_acks: list[tuple[float, float]] = field(default_factory=list)
    """(acknowledged at ms, latency ms) per transaction acknowledged during the load."""
    tx_acks_total: int = 0
    elections: int = 0
    leader_changes: list[tuple[int, int, int]] = field(default_factory=list)
    """(at ms, leader id or 0 = none, term)."""
    faults: list[FaultRecord] = field(default_factory=list)
    lag: list[tuple[int, list[int]]] = field(default_factory=list)
    """(at ms, per node in `node_ids` order: applied entries/blocks behind the furthest node)."""
    node_ids: list[int] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
