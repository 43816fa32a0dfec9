"""The ledger benchmark runs and prints the JSON keys the issue asks for (tiny sizes)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "ledger_bench.py"


def test_bench_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("ledger_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--n", "20", "--blocks", "1", "--repeat", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tx_per_s"]["epi.report"] > 0 and out["blocks_per_s"] > 0
    assert out["applied"] == {t: 20 for t in out["tx_per_s"]}


def test_bench_reports_cpu_per_tx_split(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("ledger_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--n", "20", "--blocks", "1", "--repeat", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for t in out["tx_per_s"]:
        total, sig, rest = (out[k][t] for k in ("cpu_us_per_tx", "sig_us_per_tx", "rest_us_per_tx"))
        assert sig > 0 and rest > 0 and total > 0
    assert mod.main(["--n", "20", "--blocks", "1", "--repeat", "1"]) == 0
    table = capsys.readouterr().out
    assert "cpu us/tx" in table and "sig" in table and "rest" in table
