"""The export benchmark runs at a tiny size and prints the key issue 18 names; the tables it
exports hold every report the contract wrote."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "export_bench.py"


def test_export_bench_json_and_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("export_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--reports", "2500", "--dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["export_rows_per_s"] > 0 and out["rows"] == 2500 and out["reports"] == 2500
    assert mod.main(["--reports", "300", "--dir", str(tmp_path), "--format", "csv"]) == 0
    table = capsys.readouterr().out
    assert "rows/s" in table and "target >= 200,000" in table
    assert list(tmp_path.iterdir()) == []  # its scratch directory is removed
