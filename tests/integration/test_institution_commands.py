"""Institutions' daily work through the `hzp2p` command alone: a manufacturer's fridge sensor.

A 3-voter cluster with learners for the other roles (node 6 is the manufacturer). The
manufacturer registers a lot and a sensor key made by `hzp2p keygen`, signs a CSV of
readings with `hzp2p sensor sign`, and uploads it with `admin readings submit`; an
out-of-range reading quarantines the lot. Bad input at each step is refused with a
clear line and the right exit status, and nothing is submitted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

MAKER = 6  # make_local_genesis roles: 3 lab, 4 hospital, 5 vaccination_site, 6 manufacturer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("inst") / "c", 3, 3)
    try:
        c.start_all()
        c.wait_leader(20)
        c.wait_up(30)
        yield c
    finally:
        c.close()


def hzp2p(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "hzp2p.cli", *argv], capture_output=True,
                          text=True, timeout=60, check=False, input=stdin)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_a_sensor_batch_signed_and_submitted_with_commands(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    c = cluster
    cfg = str(c.config(MAKER))
    expiry = int(time.time() * 1000) + 30 * 86_400_000
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "submit", "lot.register",
                           "--payload", json.dumps({
                               "lot_id": "LOT-F", "product": "covax", "quantity": 100,
                               "expiry_ms": expiry, "temp_min_centi_c": 200,
                               "temp_max_centi_c": 800}), "--wait", "15")
    assert code == 0, err
    code, out, err = hzp2p("keygen", str(tmp_path / "keys"), "--kind", "sensor", "--name",
                           "fridge-1", "--json")
    assert code == 0, err
    sensor = json.loads(out)["sensor"]
    code, out, err = hzp2p("admin", "--config", cfg, "submit", "sensor.register", "--payload",
                           json.dumps({"sensor_id": "FRIDGE-1",
                                       "verify_key": {"$hex": sensor["public_key"]}}),
                           "--wait", "15")
    assert code == 0, err
    now = int(time.time() * 1000)
    csv = f"time,temp_c\n{now},4.5\n{now + 1000},4.75\n{now + 2000},9.5\n"
    code, batch, err = hzp2p("sensor", "sign", "--key", sensor["file"], "--sensor", "FRIDGE-1",
                             "--lot", "LOT-F", "--readings", "-", stdin=csv)
    assert code == 0, err
    (tmp_path / "batch.json").write_text(batch)
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "readings", "submit", "--file",
                           str(tmp_path / "batch.json"), "--wait", "15")
    assert code == 0, err
    assert json.loads(out)["status"] == "committed"
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "lot-history", "LOT-F")
    assert code == 0 and json.loads(out)["record"]["status"] == "quarantined"  # 9.5 C
    # bad input, each refused before anything is sent
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("time,temp_c\nyesterday,4.5\n")
    for argv, stdin, status, says in (
        (["sensor", "sign", "--key", sensor["file"], "--sensor", "FRIDGE-1", "--lot", "LOT-F",
          "--readings", str(bad_csv)], None, 2, "line 2: time 'yesterday'"),
        (["sensor", "sign", "--key", sensor["file"], "--sensor", "FRIDGE-1", "--lot", "LOT-F",
          "--readings", "-"], f"{now},4.123\n", 2, "more than two decimals"),
        (["sensor", "sign", "--key", str(tmp_path / "nokey"), "--sensor", "FRIDGE-1", "--lot",
          "LOT-F", "--readings", "-"], f"{now},4\n", 2, "nokey"),
        (["sensor", "sign", "--key", sensor["file"], "--sensor", "bad id", "--lot", "LOT-F",
          "--readings", "-"], f"{now},4\n", 2, "--sensor must be"),
        (["admin", "--config", cfg, "readings", "submit", "--file", str(bad_csv)], None, 2,
         "--file is not valid JSON"),
    ):
        code, out, err = hzp2p(*argv, stdin=stdin)
        assert code == status and says in err, (argv, err)
