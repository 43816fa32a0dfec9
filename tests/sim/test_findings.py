"""Regression tests for core bugs the simulator found (see docs/sim-findings.md).

A pinned seed reproduces a bug only with the simulator version that found it
(any change to how the simulator draws randomness moves it), so each finding
also gets a small seed sweep of the profile that found it.
"""

from __future__ import annotations

import pytest

from hzp2p.sim.fuzz import FuzzPlan, run_plan
from hzp2p.sim.simulation import SimOptions, Simulation


@pytest.mark.parametrize(("seed", "voters"), [(97, 5), (186, 3)])
def test_finding_1_lagging_node_follows_a_leader_admitted_after_its_conf(
    seed: int, voters: int
) -> None:
    """Fixed in ca03e02: a node whose applied conf predates the leader's admission used to
    drop all of the leader's traffic and never converge (liveness)."""
    Simulation(SimOptions(seed=seed, voters=voters, profile="churn")).run()


def test_finding_1_membership_churn_sweep() -> None:
    report = run_plan(FuzzPlan(seeds=24, start=1000, profile="churn"), workers=1)
    assert report.total.violations == 0, "\n\n".join(str(f["report"]) for f in report.failures)
    assert report.total.conf_changes > 24
