"""Voting without writing payloads: `admin proposals` and `admin vote ID yes|no` on real daemons."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "c", 3)
    try:
        c.start_all()
        c.wait_leader(20)
        c.wait_up(20)
        yield c
    finally:
        c.close()


def admin(c: LocalCluster, k: int, *argv: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(k)), *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_propose_list_and_vote_through_the_command(cluster: LocalCluster) -> None:
    c = cluster
    code, out, err = admin(c, 1, "--json", "remove", "3", "--wait", "10")
    assert code == 0, err
    pid = json.loads(out)["proposal_id"]
    code, out, err = admin(c, 2, "--json", "proposals", "--linearizable")
    assert code == 0, err
    (prop,) = [p for p in json.loads(out)["proposals"] if p["id"] == pid]
    assert prop["status"] == "open" and prop["votes_needed"] == 1 and prop["yes"] == [1]
    code, out, err = admin(c, 2, "proposals")
    assert code == 0 and f"#{pid}  open" in out and "needs 1 more" in out
    code, out, err = admin(c, 2, "--json", "vote", str(pid), "yes", "--wait", "10")
    assert code == 0, err
    voted = json.loads(out)
    assert voted["status"] == "committed" and voted["proposal"]["status"] == "approved"
    # bad input: a clear line and the right exit status, nothing submitted
    for argv, status, says in (
        (["vote", "x", "yes"], 2, "expected a non-negative integer"),
        (["vote", str(pid), "maybe"], 2, "invalid choice"),
        (["vote", "999", "yes", "--wait", "10"], 1, "no proposal 999"),
        (["vote", str(pid), "no", "--wait", "10"], 1, "already approved"),
    ):
        code, out, err = admin(c, 1, *argv)
        assert code == status and says in err and "Traceback" not in out + err, (argv, err)
