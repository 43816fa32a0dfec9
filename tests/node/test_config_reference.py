"""The config schema is the one source: the docs tables, the Raft core's settings, the checks.

Each section is declared once (hzp2p/config/sections.py); these tests keep the
reference tables in docs/ equal to what the declarations give, check that every
Raft core tunable is a [raft] field handed to the core by name, and that every
declared field refuses a value of the wrong type naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import pytest

from hzp2p.config import ConfigError, RaftSection, parse_config
from hzp2p.config.reader import extra, section_type
from hzp2p.config.reference import DOCS, TABLES, table, update
from hzp2p.config.sections import RAFT_CORE_FIELDS
from hzp2p.raft.config import RaftConfig

BASE: dict[str, Any] = {
    "node_id": 3,
    "genesis": "g.toml",
    "data_dir": "data",
    "listen": "127.0.0.1:7003",
    "signing_key": "s.key",
    "node_key": "n.key",
}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_tables_are_the_schemas(doc: Path) -> None:
    text = doc.read_text()
    assert "<!-- config-reference:" in text
    assert update(text) == text, (
        f"{doc.name} differs from the config schema: run `python -m hzp2p.config.reference --write`"
    )


def test_every_section_has_a_table_somewhere() -> None:
    marked = "".join(doc.read_text() for doc in DOCS)
    for name, cls in TABLES.items():
        assert f"<!-- config-reference: {name} -->" in marked
        assert table(cls).count("\n") >= 3


def test_every_raft_core_setting_is_declared_once_in_raft_and_reaches_the_core() -> None:
    core = {f.name for f in dataclasses.fields(RaftConfig)} - {"node_id", "max_snapshot_chunk_bytes"}
    assert set(RAFT_CORE_FIELDS) == core  # a new core tunable must be a [raft] field
    default = RaftConfig(node_id=1)
    for name in core:
        assert getattr(RaftSection(), name) == getattr(default, name)
    changed = {"election_ticks": 17, "heartbeat_ticks": 3, "max_entries_per_msg": 99,
               "max_bytes_per_msg": 2 << 20, "max_inflight_msgs": 7,
               "max_uncommitted_bytes": 65 << 20, "pre_vote": False, "check_quorum": False}
    assert set(changed) == core
    cfg = parse_config({**BASE, "raft": changed}, path="/tmp/n3/config.toml")
    rc = cfg.raft_config()
    assert {n: getattr(rc, n) for n in core} == changed
    assert rc.node_id == 3


def _fields(cls: type, prefix: str = "") -> list[tuple[str, mi.Field]]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    out = []
    for f in info.fields:
        if extra(f.type).get("internal"):
            continue
        sub = section_type(f.type)
        if sub is not None:
            out += _fields(sub, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, f))
    return out


FIELDS = _fields(TABLES["top"])


@pytest.mark.parametrize("dotted", [name for name, _ in FIELDS])
@pytest.mark.parametrize("bad", [{"a": 1}, [[]], True, "x" * 300])
def test_every_declared_field_refuses_a_wrong_value_naming_the_field(dotted: str, bad: Any) -> None:
    doc: dict[str, Any] = {**BASE}
    *sections, leaf = dotted.split(".")
    target = doc
    for s in sections:
        target = target.setdefault(s, {})
    if isinstance(bad, bool) and dotted.endswith(
        ("pre_vote", "check_quorum", "early_signature_checks", "certify", "auto_share",
         "allow_plain_http")
    ):
        bad = 1  # a bool is right there: an int is the wrong type
    if isinstance(bad, str) and leaf in {"genesis", "data_dir", "signing_key", "node_key",
                                         "tls_cert", "tls_key", "credential_key"}:
        bad = 7  # any string is a path
    target[leaf] = bad
    with pytest.raises(ConfigError) as err:
        parse_config(doc, path="/tmp/n3/config.toml")
    assert err.value.field.startswith(dotted), (dotted, err.value)
    assert err.value.file == "/tmp/n3/config.toml"
