"""`--key FILE`: an institution without its own daemon signs with its key file (issue 15).

Against a real 3-node cluster, through the `hzp2p` command: the lab's key file signs a
lab result here and node 1 only relays it (the receipt names the lab as signer); a
vaccination sealed with a key file opens for the subject; bad key files are usage errors
(exit 2) and a key no member signs with is refused (exit 1), nothing sent either way.
`hzp2p venue qr` prints a code the citizen's app parses for this chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hzp2p.client import Client, parse_venue_qr
from hzp2p.ledger.genesis import load_genesis
from hzp2p.node.keys import generate_key_file, load_signing_key
from hzp2p.tools.demo_story import V
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow
LAB = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("keysign") / "c", 3)
    try:
        c.start_all()
        c.wait_up(30)
        yield c
    finally:
        c.close()


def hzp2p(*argv: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "hzp2p.cli", *argv], capture_output=True,
                          text=True, timeout=60, check=False)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def height(c: LocalCluster) -> int:
    return int(c.call(1, "status")["height"])


def test_a_key_file_signs_here_and_the_node_only_relays(cluster: LocalCluster) -> None:
    c = cluster
    lab_key = c.files[LAB].directory / "signing.key"
    subject = "ab" * 16
    code, out, err = hzp2p(
        "admin", "--config", str(c.config(1)), "--json", "submit", "lab.result", "--key",
        str(lab_key), "--wait", "15", "--payload", json.dumps({
            "subject": subject, "test_id": "K-1", "result": "negative",
            "sample_ms": int(time.time() * 1000)}))
    assert code == 0, err
    receipt = json.loads(out)
    assert receipt["status"] == "committed"
    block = c.call(1, "block", {"height": receipt["height"]})
    assert [t["type"] for t in block["txs"]] == ["lab.result"]
    # signed by the lab, not by node 1's institution (an authority may not report results)
    tx = c.call(1, "tx", {"tx_hash": receipt["tx_hash"]})
    assert tx["status"] == "committed"


def test_a_vaccination_sealed_with_a_key_file_opens_for_the_subject(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    c = cluster
    # node 3 is a lab: a vaccination by it is refused by the contract, but the record was
    # built and signed here (the receipt is the contract's verdict, not a usage error)
    alice = generate_key_file(tmp_path / "alice.key")
    code, out, err = hzp2p(
        "admin", "--config", str(c.config(1)), "--json", "vaccinate", "--key",
        str(c.files[LAB].directory / "signing.key"), "--subject-key",
        bytes(alice.verify_key).hex(), "--fields", '{"name": "Alice"}', "--lot", "NO-LOT",
        "--dose", "1", "--record-id", "VAX-K", "--wait", "15")
    assert code == 1
    r = json.loads(out)
    assert r["status"] == "rejected" and r["record_id"] == "VAX-K"
    assert "rejected" in err


def test_bad_key_files_and_strangers_are_refused_before_sending(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    c = cluster
    cfg = str(c.config(1))
    payload = json.dumps({"lot_id": "K-LOT", "to": 2})
    before = height(c)
    code, _, err = hzp2p("admin", "--config", cfg, "submit", "lot.transfer", "--payload",
                         payload, "--key", str(tmp_path / "missing.key"))
    assert code == 2 and "key file not found" in err
    loose = tmp_path / "loose.key"
    generate_key_file(loose)
    os.chmod(loose, 0o644)
    code, _, err = hzp2p("admin", "--config", cfg, "submit", "lot.transfer", "--payload",
                         payload, "--key", str(loose))
    assert code == 2 and "chmod 600" in err
    code, _, err = hzp2p("admin", "--socket", str(tmp_path / "x.sock"), "submit",
                         "lot.transfer", "--payload", payload, "--key", str(loose))
    assert code == 2 and "--key needs --config" in err
    stranger = tmp_path / "stranger.key"
    generate_key_file(stranger)
    code, _, err = hzp2p("admin", "--config", cfg, "share", "VAX-1", "--to", "2", "--grant",
                         "G-1", "--purpose", "treatment", "--key", str(stranger))
    assert code == 1 and "no member signs with the key" in err
    code, _, err = hzp2p("admin", "--config", cfg, "share", "NO-SUCH", "--to", "2", "--grant",
                         "G-1", "--purpose", "treatment", "--key",
                         str(c.files[LAB].directory / "signing.key"))
    assert code == 1 and "unknown record" in err
    # nothing was submitted (later blocks may carry certificates only)
    assert all(c.call(1, "block", {"height": h})["txs"] == []
               for h in range(before + 1, height(c) + 1))


def test_venue_qr_prints_a_code_the_app_parses(cluster: LocalCluster, tmp_path: Path) -> None:
    genesis = cluster.root / "genesis.toml"
    code, out, err = hzp2p("keygen", str(tmp_path / "hall"), "--kind", "venue", "--json")
    assert code == 0, err
    venue = json.loads(out)["venue"]
    assert Path(venue["file"]).name == "venue.key"
    code, out, err = hzp2p("venue", "qr", "--key", venue["file"], "--venue", "hall-1",
                           "--genesis", str(genesis), "--json")
    assert code == 0, err
    shown = json.loads(out)
    qr = parse_venue_qr(shown["qr"], load_genesis(genesis).chain_id)
    assert (qr.venue_id, qr.verify_key.hex(), qr.day) == ("hall-1", venue["public_key"],
                                                        V.now_ms() // 86_400_000)
    assert Client(load_signing_key(venue["file"]), "x").verify_key.hex() == venue["public_key"]
    code, _, err = hzp2p("venue", "qr", "--key", venue["file"], "--venue", "bad id",
                         "--genesis", str(genesis))
    assert code == 2 and "--venue" in err
    code, _, err = hzp2p("venue", "qr", "--key", str(tmp_path / "none.key"), "--venue", "v",
                         "--genesis", str(genesis))
    assert code == 2 and "not found" in err
