"""`hzp2p keygen` and `hzp2p join`: keys and a joining config without Python, bad input refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hzp2p.cli import main
from hzp2p.config import load_config
from hzp2p.node.keys import load_signing_key, verify_key_hex
from hzp2p.tools.scaffold import write_consortium


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_keygen_writes_owner_only_keys_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "keygen", str(tmp_path / "k"), "--kind", "all", "--name",
                         "fridge-1", "--json")
    assert code == 0, err
    keys = json.loads(out)
    assert set(keys) == {"signing", "node", "encryption", "sensor", "venue"}
    for info in keys.values():
        path = Path(info["file"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(info["public_key"]) == 64
    assert keys["sensor"]["file"].endswith("fridge-1.key")
    assert keys["venue"]["file"].endswith("venue.key")  # --name is the sensor's then
    assert verify_key_hex(load_signing_key(keys["signing"]["file"])) == keys["signing"]["public_key"]
    code, _, err = run(capsys, "keygen", str(tmp_path / "k"))
    assert code == 1 and "refusing to overwrite" in err and err.count("\n") == 1
    code, _, err = run(capsys, "keygen", str(tmp_path / "k"), "--kind", "bogus")
    assert code == 2 and "invalid choice" in err


def test_keygen_citizen_prints_her_pseudonym(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "keygen", str(tmp_path / "alice"), "--kind", "citizen", "--json")
    assert code == 0, err
    info = json.loads(out)["citizen"]
    assert info["file"].endswith("citizen.key") and len(info["pseudonym"]) == 32
    assert stat.S_IMODE(Path(info["file"]).stat().st_mode) == 0o600
    code, out, err = run(capsys, "citizen-key", info["file"], "--json")  # the same identity
    assert code == 0 and json.loads(out)["pseudonym"] == info["pseudonym"]


def test_join_in_two_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_consortium(tmp_path / "cluster", 3, 0, base_port=7900)
    clinic = tmp_path / "clinic"
    genesis = str(tmp_path / "cluster" / "genesis.toml")
    bad = [
        (["join", str(clinic), "--genesis", genesis, "--address", "nowhere", "--name", "C",
          "--roles", "vaccination_site"], 2, "--address"),
        (["join", str(clinic), "--genesis", genesis, "--address", "127.0.0.1:7010",
          "--name", "C", "--roles", "wizard"], 2, "roles are a comma-separated list"),
        (["join", str(clinic), "--address", "127.0.0.1:7010"], 2, "--genesis, --name, --roles"),
        (["join", str(clinic), "--genesis", str(tmp_path / "none.toml"), "--address",
          "127.0.0.1:7010", "--name", "C", "--roles", "lab"], 1, "--genesis"),
        (["join", str(clinic), "--node-id", "4"], 1, "was not prepared"),
    ]
    for argv, status, says in bad:
        code, out, err = run(capsys, *argv)
        assert code == status and says in err and "Traceback" not in out + err, (argv, err)
    code, out, err = run(capsys, "join", str(clinic), "--genesis", genesis, "--address",
                         "127.0.0.1:7010", "--name", "Riverside Clinic", "--roles",
                         "vaccination_site,hospital", "--json")
    assert code == 0, err
    prepared = json.loads(out)
    fields = json.loads((clinic / "join.json").read_text())
    assert set(fields) == {"name", "roles", "address", "signing_key", "node_key"}  # add-learner's
    assert fields["roles"] == ["hospital", "vaccination_site"]
    assert prepared["add_learner"].endswith("join.json")
    code, _, err = run(capsys, "join", str(clinic), "--node-id", "2")
    assert code == 1 and "founding institution" in err
    code, out, err = run(capsys, "join", str(clinic), "--node-id", "4")
    assert code == 0, err
    cfg = load_config(clinic / "config.toml")
    assert cfg.node_id == 4 and str(cfg.listen) == "127.0.0.1:7010" and len(cfg.seeds) == 3
    code, _, err = run(capsys, "join", str(clinic), "--node-id", "4")
    assert code == 1 and "already exists" in err
