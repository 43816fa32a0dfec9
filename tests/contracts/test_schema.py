"""Stateless payload checks: every problem at once, no value echoed, same verdict everywhere."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from hzp2p.client import Client
from hzp2p.contracts.api import TxRejected
from hzp2p.contracts.engine import check_tx_payload, load_contracts
from hzp2p.contracts.registry import CONTRACTS, check_payload
from hzp2p.contracts.schema import Problem

SECRET = "Li Si 440301199001011234"


@pytest.fixture(autouse=True)
def _contracts() -> None:
    load_contracts()


def test_every_contract_declares_a_stateless_check() -> None:
    for t, c in CONTRACTS.items():
        if not t.startswith("test."):
            assert callable(c.check) and c.check({}, b"") != [], t  # {} is never valid


def test_a_payload_with_several_faults_reports_them_all() -> None:
    problems = check_payload("vaccination.record", {
        "subject": "Alice", "lot_id": "L 1", "dose": 0, "administered_ms": "yesterday",
        "record": {"record_id": "R1", "ciphertext": b"x", "name": SECRET},
        "id_card": SECRET,
    }, b"")
    fields = {p.field for p in problems}
    assert {"subject", "lot_id", "dose", "administered_ms", "record.ciphertext"} <= fields
    texts = [p.text() for p in problems]
    assert "unknown payload field(s): id_card" in texts
    assert "unknown record field(s): name" in texts
    assert any("missing field(s): key_commitment, sealed_keys" in t for t in texts)
    assert SECRET not in repr(problems)


def test_unknown_field_names_are_shown_only_when_they_look_like_names() -> None:
    problems = check_payload("epi.report", {
        "report_id": "r1", "region": "north", "metric": "cases", "value": 1, "period": "w1",
        SECRET: 1, "name": 2}, b"")
    assert problems == [Problem("", "unknown payload field(s): name, 1 other(s)")]


def test_the_engine_and_admission_run_the_same_check() -> None:
    c = Client(SigningKey(b"\x01" * 32), "chain", 1)
    tx = c.tx("epi.report", {"report_id": "r1", "value": -1}, 0)
    with pytest.raises(TxRejected) as info:
        check_tx_payload(tx)
    assert info.value.problems == tuple(check_payload("epi.report", tx.payload, tx.signer))
    assert len(info.value.problems) == 2  # value out of range; region, metric, period missing


@pytest.mark.parametrize("depth", [3, 10])
def test_free_metadata_is_bounded_in_depth(depth: int) -> None:
    meta: object = "x"
    for _ in range(depth):
        meta = {"a": meta}
    problems = check_payload("data.publish", {"dataset_id": "d", "metadata": meta,
                                               "content_hash": bytes(32), "access": "public"}, b"")
    assert (problems == []) == (depth <= 4)
