"""`hzp2p fuzz` runs the production ledger node: receipts, blocks, and two planted bugs it must find.

The planted bugs are test-only switches of hzp2p.ledgernode.node.PlantedBugs: a receipt
told from the leader's speculative execution before the block is committed and durably
applied ("early-receipt"), and a forwarded transaction admitted without the duplicate
checks, which a re-forward after a leader change then gets included twice ("readmit").
Each test stops at the first failing seed; the bound is the issue's 1,000 seeds.
"""

from __future__ import annotations

import json

import pytest

from hzp2p.cli import main
from hzp2p.sim.checkers import SimulationFailure
from hzp2p.sim.simulation import SimOptions, Simulation

BUG_SEED_BOUND = 1000


def _first_failure(bug: str) -> tuple[int, SimulationFailure]:
    for seed in range(BUG_SEED_BOUND):
        try:
            Simulation(SimOptions(seed=seed, voters=(3, 5, 7)[seed % 3], bug=bug)).run()
        except SimulationFailure as f:
            return seed, f
    pytest.fail(f"planted bug {bug!r}: no violation in {BUG_SEED_BOUND} seeds")


def test_finds_a_receipt_sent_before_the_block_is_durably_applied() -> None:
    seed, f = _first_failure("early-receipt")
    assert f.prop == "receipt differs from the applied verdict", str(f)
    assert "--plant-bug early-receipt" in f.replay
    # the replay command reproduces it
    with pytest.raises(SimulationFailure) as again:
        Simulation(SimOptions(seed=seed, voters=f.voters, bug="early-receipt")).run()
    assert again.value.detail == f.detail


def test_finds_a_forwarded_tx_readmitted_without_the_duplicate_check() -> None:
    _, f = _first_failure("readmit")
    assert f.prop == "tx applied twice", str(f)
    assert "--plant-bug readmit" in f.replay


def test_the_ledger_runs_blocks_and_receipts_are_checked() -> None:
    sim = Simulation(SimOptions(seed=2, voters=5))
    s = sim.run()
    assert sim.ledger is not None
    assert s.blocks_applied > 0 and s.receipts_checked > 0
    assert sim.ledger.checks.block_applies >= s.blocks_applied  # every node applies


def test_fuzz_json_reports_blocks_and_receipts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--seeds", "4", "--workers", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["violations"] == 0
    assert out["blocks_applied"] > 0 and out["receipts_checked"] > 0


def test_fuzz_without_the_ledger_and_bad_bug_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--seeds", "2", "--workers", "1", "--no-ledger", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["blocks_applied"] == 0 and out["receipts_checked"] == 0 and out["acked"] > 0
    assert main(["fuzz", "--seeds", "1", "--plant-bug", "nope"]) == 2
    assert "unknown --plant-bug" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs the ledger"):
        SimOptions(seed=1, ledger=False, bug="readmit")
