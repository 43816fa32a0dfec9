"""The data-set delivery benchmark runs at a tiny size (two processes over real TCP) and prints
the key issue 18 names; its scratch directory is removed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "dataset_bench.py"


def test_dataset_bench_json_and_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("dataset_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--mb", "2", "--runs", "1", "--dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["delivery_mb_per_s"] > 0 and out["bytes"] > 2_000_000 and out["corrupt_chunks"] == 0
    assert mod.main(["--mb", "1", "--runs", "1", "--dir", str(tmp_path)]) == 0
    assert "MB/s (target >= 100 MB/s)" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
