"""`hzp2p sim sweep`: one table and one plot of throughput and p99 against voters and learners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hzp2p.cli import main


def test_sweep_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    assert main(["sim", "sweep", "--voters", "3,5", "--learners", "0,4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "voters  learners" in text and "p99 ms" in text
    doc = json.loads((out / "sweep.json").read_text())
    cells = {(r["voters"], r["learners"]) for r in doc["rows"]}
    assert cells == {(3, 0), (3, 4), (5, 0), (5, 4)}
    for r in doc["rows"]:
        assert r["throughput_tx_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0
        assert r["safety_violations"] == 0
    assert (out / "sweep.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "msg"),
    [(["--voters", "0"], "--voters"), (["--learners", "x"], "--learners"),
     (["--engine", "live"], "deterministic engine only")],
)  # fmt: skip
def test_sweep_bad_usage(args: list[str], msg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "sweep", *args]) == 2
    assert msg in capsys.readouterr().err
