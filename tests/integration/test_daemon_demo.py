"""`hzp2p demo` runs end to end (real daemons), reports success and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_and_cleans_up() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hzp2p.cli", "demo", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["nodes"] == 3
    assert summary["refused"] == 2 and summary["leader_killed"] != summary["new_leader"]
    assert summary["commands"] >= 50  # each operator's step is an `hzp2p` command
    assert "vaccination.record" in summary["receipt"] and "verdict accepted" in summary["receipt"]
    assert summary["seconds"] < 60
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "hzp2p-demo-" not in ps
