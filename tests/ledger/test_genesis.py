"""Genesis: TOML round trip, hash identity, field-naming errors, local consortium roles."""

from __future__ import annotations

import dataclasses
import re

import pytest

from hzp2p.contracts.engine import (
    genesis_state_writes,
    read_head,
    recompute_digest,
    rules_of,
    state_digest,
)
from hzp2p.contracts.members import get_institution, institution_by_key, institutions
from hzp2p.contracts.state import DictState
from hzp2p.ledger.genesis import (
    Genesis,
    GenesisError,
    genesis_from_toml,
    load_genesis,
    make_local_genesis,
)


def test_toml_roundtrip_and_hash(tmp_path: object) -> None:
    g, secrets = make_local_genesis(3, 5, host="10.0.0.1", base_port=9000, seed=42)
    text = g.to_toml()
    back = genesis_from_toml(text)
    assert back == g and back.hash == g.hash
    p = tmp_path / "genesis.toml"  # type: ignore[operator]
    p.write_text(text)
    assert load_genesis(p).hash == g.hash
    assert sorted(secrets) == list(range(1, 9))
    assert g.voters == [1, 2, 3] and g.learners == [4, 5, 6, 7, 8]
    assert g.institution(1).address == "10.0.0.1:9000"
    for k, s in secrets.items():
        assert bytes(s.signing_key().verify_key) == g.institution(k).signing_key
        assert bytes(s.node_key().verify_key) == g.institution(k).node_key


def test_roles_in_turn() -> None:
    g, _ = make_local_genesis(3, 6, seed=1)
    roles = [i.roles[0] for i in g.institutions]
    assert roles == ["authority", "authority", "lab", "hospital", "vaccination_site",
                     "manufacturer", "carrier", "observer", "lab"]


def test_seeded_is_deterministic_unseeded_is_fresh() -> None:
    assert make_local_genesis(3, seed=7)[0].hash == make_local_genesis(3, seed=7)[0].hash
    assert make_local_genesis(3)[0].hash != make_local_genesis(3)[0].hash


def test_hash_covers_every_field() -> None:
    g, _ = make_local_genesis(3, seed=1)
    i0 = g.institutions[0]
    variants = [
        dataclasses.replace(g, chain_id="other"),
        dataclasses.replace(g, timestamp_ms=1),
        dataclasses.replace(g, rules={**g.rules, "healthcode": 1}),
        dataclasses.replace(g, institutions=(dataclasses.replace(i0, name="x"), *g.institutions[1:])),
        dataclasses.replace(g, institutions=(dataclasses.replace(i0, voter=False), *g.institutions[1:])),
    ]
    assert len({v.hash for v in variants} | {g.hash}) == len(variants) + 1


def test_special_characters_survive_toml() -> None:
    g, _ = make_local_genesis(2, seed=1)
    odd = 'Hôpital "Nord" \\ \t\x7f\n😀'
    g2 = dataclasses.replace(g, institutions=(dataclasses.replace(g.institutions[0], name=odd), g.institutions[1]))
    assert genesis_from_toml(g2.to_toml()).institutions[0].name == odd


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.replace('chain_id = "', 'chain_id = "bad id '), "chain_id"),
        (lambda t: t.replace("timestamp_ms = 0", 'timestamp_ms = "x"'), "timestamp_ms"),
        (lambda t: t.replace('roles = ["authority"]', 'roles = ["king"]', 1), "institutions[0].roles"),
        (lambda t: t.replace("inst_id = 2", "inst_id = 1"), "institutions[1].inst_id"),
        (lambda t: t.replace('address = "127.0.0.1:7100"', 'address = "nowhere"'), "institutions[0].address"),
        (lambda t: t.replace('address = "127.0.0.1:7100"', 'address = "127.0.0.1:7100\\n"'), "institutions[0].address"),
        (lambda t: t.replace('address = "127.0.0.1:7100"', 'address = "127.0.0.1:70000"'), "institutions[0].address"),
        (lambda t: re.sub(r'chain_id = "([^"]*)"', r'chain_id = "\1\\n"', t), "chain_id"),
        (lambda t: t.replace("healthcode = 2", '"healthcode\\n" = 1'), "rules.healthcode\n"),
        (lambda t: t.replace("voter = true", "voter = 1", 1), "institutions[0].voter"),
        (lambda t: t.replace("healthcode = 2", "healthcode = 0"), "rules.healthcode"),
        (lambda t: "extra = 1\n" + t, "extra"),
        (lambda t: t + "\nextra = 1\n", "institutions[1].extra"),
        (lambda t: t.replace("[rules]", "[rules"), "file"),
    ],
)
def test_errors_name_the_field(edit: object, field: str) -> None:
    g, _ = make_local_genesis(2, seed=1)
    with pytest.raises(GenesisError) as e:
        genesis_from_toml(edit(g.to_toml()))  # type: ignore[operator]
    assert e.value.field == field


def test_needs_an_authority_and_a_voter() -> None:
    g, _ = make_local_genesis(3, seed=1)
    lab = g.institutions[2]
    with pytest.raises(GenesisError, match="authority"):
        Genesis(g.chain_id, 0, (lab,))
    with pytest.raises(GenesisError, match="voter"):
        Genesis(g.chain_id, 0, tuple(dataclasses.replace(i, voter=False) for i in g.institutions))


def test_genesis_state() -> None:
    g, _ = make_local_genesis(3, 2, seed=1)
    st = DictState(genesis_state_writes(g))
    assert [i.inst_id for i in institutions(st)] == [1, 2, 3, 4, 5]
    inst = get_institution(st, 4)
    assert inst is not None and not inst.voter and inst.roles == frozenset({"hospital"})
    assert institution_by_key(st, g.institution(2).signing_key) == get_institution(st, 2)
    head = read_head(st)
    assert (head.height, head.hash) == (0, g.hash)
    assert recompute_digest(st) == state_digest(st)


def test_every_versioned_rule_is_named_in_the_default_genesis() -> None:
    """Rules are versioned in the genesis: a local consortium names each rule set's version."""
    from hzp2p.contracts import coldchain, datasets, healthcode, privacy, vaccination

    tables = {
        "coldchain": coldchain.COLDCHAIN_RULES,
        "data": datasets.DATA_RULES,
        "healthcode": healthcode.HEALTHCODE_RULES,
        "privacy": privacy.PRIVACY_RULES,
        "vaccination": vaccination.VACCINATION_RULES,
    }
    g, _ = make_local_genesis(1, seed=1)
    assert set(g.rules) == {"membership", *tables}
    for name, table in tables.items():
        assert g.rules[name] in table, name
    assert rules_of(DictState(genesis_state_writes(g)))["privacy"] == 1
