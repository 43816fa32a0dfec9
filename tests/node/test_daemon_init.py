"""`hzp2p init` and `hzp2p run` argument and config handling (no daemon processes)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hzp2p.cli import main
from hzp2p.config import load_config
from hzp2p.ledger.genesis import load_genesis
from hzp2p.node.keys import load_signing_key


def test_init_writes_a_loadable_consortium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "c"
    assert main(["init", str(d), "--nodes", "3", "--learners", "2", "--base-port", "7300",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [n["node_id"] for n in out["nodes"]] == [1, 2, 3, 4, 5]
    g = load_genesis(d / "genesis.toml")
    assert g.voters == [1, 2, 3] and g.learners == [4, 5]
    assert [i.roles for i in g.institutions][:3] == [("authority",), ("authority",), ("lab",)]
    for k in range(1, 6):
        cfg = load_config(d / f"node{k}" / "config.toml")
        assert cfg.node_id == k and cfg.listen.port == 7300 + k - 1
        assert cfg.genesis == (d / "genesis.toml").resolve()
        assert cfg.data_dir.is_dir()
        for key in (cfg.signing_key, cfg.node_key):
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
        inst = g.institution(k)
        assert bytes(load_signing_key(cfg.node_key).verify_key) == inst.node_key
        assert bytes(load_signing_key(cfg.signing_key).verify_key) == inst.signing_key
        assert len(cfg.seeds) == 4


def test_init_refuses_a_non_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").write_text("keep me")
    assert main(["init", str(tmp_path), "--nodes", "1"]) == 1
    err = capsys.readouterr().err
    assert "not empty" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "x").read_text() == "keep me"


@pytest.mark.parametrize(
    "args",
    [
        ["--nodes", "0"],
        ["--nodes", "x"],
        ["--nodes", "3", "--learners", "-1"],
        ["--nodes", "3", "--base-port", "70000"],
        ["--nodes", "3", "--base-port", "65534"],
        ["--nodes", "3", "--host", "a b"],
        [],
    ],
)
def test_init_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(["init", str(tmp_path / "c"), *args])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert not (tmp_path / "c").exists()


def test_run_with_a_bad_config_exits_2_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "c"
    assert main(["init", str(d), "--nodes", "1"]) == 0
    cfg = d / "node1" / "config.toml"
    cfg.write_text(cfg.read_text().replace("tick_ms = 50", 'tick_ms = "fast"'))
    capsys.readouterr()
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(cfg) in err and "raft.tick_ms" in err


def test_run_with_a_missing_config_or_open_key_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    d = tmp_path / "c"
    assert main(["init", str(d), "--nodes", "1"]) == 0
    (d / "node1" / "node.key").chmod(0o644)
    capsys.readouterr()
    assert main(["run", "--config", str(d / "node1" / "config.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "node.key" in err and "chmod 600" in err and len(err.splitlines()) == 1
