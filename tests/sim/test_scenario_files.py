"""Scenario files: every shipped one parses; invalid ones name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hzp2p.cli import main
from hzp2p.sim.scenario import ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (
    "quick", "leader-isolation", "minority-majority-split", "flapping-links",
    "crash-restart-storm", "consortium-50", "voters-25", "bridge-node",
    "half-open-heal",
)  # fmt: skip


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_parses(name: str) -> None:
    scn = load_scenario(ROOT / "simulations" / f"{name}.toml")
    assert scn.name == name
    assert scn.description and scn.duration_s > 0
    assert all(f.at_s < scn.duration_s for f in scn.faults)


def test_shipped_shapes() -> None:
    quick = load_scenario(ROOT / "simulations" / "quick.toml")
    assert (quick.cluster.voters, quick.cluster.learners) == (3, 0)
    assert 8 <= quick.duration_s <= 12
    c50 = load_scenario(ROOT / "simulations" / "consortium-50.toml")
    assert (c50.cluster.voters, c50.cluster.learners) == (5, 45)
    assert load_scenario(ROOT / "simulations" / "voters-25.toml").cluster.voters == 25


BAD = [
    ('name = "x"\nbogus = 1\n', "bogus", "unknown field"),
    ('name = "x"\nduration_s = "ten"\n', "duration_s", "must be a number"),
    ('name = "x"\n[cluster]\nvoters = 0\n', "cluster.voters", "between"),
    ('name = "x"\n[network]\nlatency_ms_min = 9\nlatency_ms_max = 2\n', "network.latency_ms_max", ">="),
    ('name = "x"\n[network]\nloss = 1.5\n', "network.loss", "between"),
    ('name = "x"\n[workload.mix]\n"no.such" = 1\n', "workload.mix.no.such", "no workload generator"),
    ('name = "x"\n[[faults]]\nkind = "meteor"\nat_s = 1\n', "faults[0].kind", "must be one of"),
    ('name = "x"\nduration_s = 5\n[[faults]]\nkind = "crash"\nat_s = 9\n', "faults[0].at_s", "before the end"),
    ('name = "x"\n[[faults]]\nkind = "crash"\nat_s = 1\ntarget = 7\n', "faults[0].target", "does not exist"),
    ('name = "x"\n[[faults]]\nkind = "split"\nat_s = 1\nwhen = 2\n', "faults[0].when", "unknown field"),
    ('name = "x"\nelection_ticks = 5\nheartbeat_ticks = 5\n', "heartbeat_ticks", "below"),
    ("name = [\n", "(syntax)", ""),
]  # fmt: skip


@pytest.mark.parametrize(("text", "field", "problem"), BAD)
def test_invalid_scenario_names_the_field(text: str, field: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, "bad.toml")
    assert exc.value.file == "bad.toml"
    assert exc.value.field == field
    assert problem in exc.value.problem
    assert str(exc.value).startswith(f"bad.toml: {field}: ")


def test_cli_exits_2_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "b"\n[[faults]]\nkind = "crash"\nat_s = 1\nduration_s = -1\n')
    assert main(["sim", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "faults[0].duration_s" in err
    assert main(["sim", str(tmp_path / "missing.toml")]) == 2


def test_mix_role_missing_in_small_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scn = tmp_path / "s.toml"
    scn.write_text('name = "s"\n[cluster]\nvoters = 3\n[workload.mix]\n"lot.register" = 1\n')
    assert main(["sim", str(scn), "--out", str(tmp_path / "o")]) == 2
    assert "lot.register needs a member with role manufacturer" in capsys.readouterr().err
