"""Issue 22: the project's Jepsen-style test. Five real daemons (`hzp2p init` + `hzp2p run`),
each in its own network namespace; a seeded nemesis (leader isolated, leader in a
minority, random majority/minority, SIGSTOP, SIGKILL and restart), each fault healed;
concurrent CLI clients; a checker over the history and every node's chain (see
jepsen_run). The small run is part of CI; `HZP2P_SOAK=1` runs the long one.

A failing run prints its seed and the command that replays it; HZP2P_JEPSEN_SEED picks
the seed. Faults and their times to a new leader and to convergence are printed (-s)
and written to the run directory's report.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import trio
from jepsen_cluster import NetnsCluster
from jepsen_netns import NetLab, unavailable_reason
from jepsen_run import KINDS, JepsenRun

pytestmark = pytest.mark.slow

NODES = [1, 2, 3, 4, 5]
NET_OVERRIDE = os.environ.get("HZP2P_JEPSEN_NET")
"""`KEEPALIVE,READ_TIMEOUT` seconds written into every node's [net] (to compare settings)."""
KINDS = tuple(k for k in os.environ.get("HZP2P_JEPSEN_KINDS", "").split(",") if k) or KINDS
"""HZP2P_JEPSEN_KINDS=after_heal,sigstop: only these fault kinds (default: all)."""


def _seed() -> int:
    env = os.environ.get("HZP2P_JEPSEN_SEED")
    return int(env) if env else int(time.time()) % 100_000


def run_jepsen(tmp_path: Path, test_name: str, *, faults: int, clients: int,
               fault_s: tuple[float, float], wait_s: float) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    seed = _seed()
    soak = "HZP2P_SOAK=1 " if "soak" in test_name else ""
    replay = (f"HZP2P_JEPSEN_SEED={seed} {soak}{sys.executable} -m pytest -q -s "
              f"tests/jepsen/test_jepsen.py::{test_name}")
    net = None
    if NET_OVERRIDE:
        keepalive, read_timeout = (float(x) for x in NET_OVERRIDE.split(","))
        net = (keepalive, read_timeout)
    with NetLab(NODES) as lab:
        cluster = NetnsCluster(tmp_path / "cluster", lab, net=net)
        run = JepsenRun(cluster, seed, faults=faults, clients=clients, fault_s=fault_s,
                        wait_s=wait_s, kinds=KINDS)
        try:
            for k in cluster.ids:
                cluster.start(k)
            trio.run(run.main)
            trio.run(run.check)
            run.shutdown()
        except BaseException:
            print(f"\njepsen seed {seed} failed; replay with:\n  {replay}\n"
                  f"logs in {cluster.root}/nodeK/stderr.log", file=sys.stderr)
            raise
        finally:
            cluster.close()
            (tmp_path / "report.json").write_text(run.result.to_json())
    result = run.result
    print(f"\n{result.table()}\nreport: {tmp_path / 'report.json'}")
    stuck = [f for f in result.faults if f.converge_s is None and not f.kind.endswith(":split")]
    if stuck:
        result.problems.append(f"{len(stuck)} heal(s) did not converge within 30 s")
    assert result.acked(), "no submit was acknowledged at all"
    assert not result.problems, (
        f"jepsen seed {seed}: {len(result.problems)} problem(s), first: {result.problems[:5]}\n"
        f"replay with:\n  {replay}"
    )


def test_jepsen_small(tmp_path: Path) -> None:
    """CI size: each fault kind once (seeded order), 3-5 s each, two clients (~1 minute)."""
    run_jepsen(tmp_path, "test_jepsen_small", faults=len(KINDS), clients=2, fault_s=(3.0, 5.0),
               wait_s=5.0)


@pytest.mark.soak
def test_jepsen_soak(tmp_path: Path) -> None:
    """HZP2P_SOAK=1: thirty faults of 3-12 s, four clients."""
    run_jepsen(tmp_path, "test_jepsen_soak", faults=int(os.environ.get("HZP2P_JEPSEN_FAULTS", "30")),
               clients=4, fault_s=(3.0, 12.0), wait_s=5.0)
