"""The personal-data guard: nothing a contract refuses in the clear ever reaches any byte a node writes.

For every transaction type, payloads carry a marker — a name and an identity-card
number, shaped as personal data is — in every field position the contract does not
allow in the clear (every field but free text, a wrong value in place of each, an
unknown field at the top and inside nested maps). They go in through every entry path:
`submit` and `submit_many` (signed by the node), `submit_raw` (signed elsewhere), on the
leader and on followers (whose forward would carry them to the leader). Every one must
be refused at admission with every problem listed, be answerable by `admin tx HASH`, and
afterwards no file the nodes wrote — SQLite databases with their WAL, the logs — may
contain the marker. This test guards README's privacy promise from now on: a new
transaction type fails it until it is listed below.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from hzp2p.client import Client
from hzp2p.contracts.engine import load_contracts
from hzp2p.contracts.registry import CONTRACTS
from hzp2p.crypto.records import SEALED_KEY_BYTES
from hzp2p.ledger.genesis import load_genesis
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

MARKER = "张三 PII-MARKER 身份证 110101199003077777"
MARKER_BYTES = MARKER.encode()
SUBJECT = "0f" * 16
ENVELOPE = {
    "record_id": "R1",
    "ciphertext": bytes(64),
    "key_commitment": bytes(32),
    "sealed_keys": {"subject": bytes(SEALED_KEY_BYTES), "inst:1": bytes(SEALED_KEY_BYTES)},
}

# type -> (a payload of the right shape, its fields the contract publishes as free text)
BASES: dict[str, tuple[dict[str, Any], frozenset[str]]] = {
    "epi.report": ({"report_id": "r1", "region": "north", "metric": "cases", "value": 1,
                    "period": "2026-W47"}, frozenset()),
    "data.publish": ({"dataset_id": "d1", "metadata": {"title": "weekly"},
                      "content_hash": bytes(32), "access": "public"},
                     frozenset({"metadata"})),  # an authority's public description
    "data.request": ({"request_id": "rq1", "dataset_id": "d1", "purpose": "study", "days": 30},
                     frozenset({"purpose"})),  # the purpose of use: in the clear, logged
    "data.approve": ({"request_id": "rq1", "sealed_key": bytes(SEALED_KEY_BYTES)}, frozenset()),
    "data.deny": ({"request_id": "rq1", "reason": "no"}, frozenset({"reason"})),
    "data.revoke": ({"request_id": "rq1", "reason": "ended"}, frozenset({"reason"})),
    "data.fetch": ({"dataset_id": "d1", "version": 1}, frozenset()),
    "member.propose": ({"action": "remove", "inst_id": 3}, frozenset()),
    "member.vote": ({"proposal_id": 1, "approve": True}, frozenset()),
    "lot.register": ({"lot_id": "L1", "product": "covax", "quantity": 10,
                      "expiry_ms": 2**50, "temp_min_centi_c": 200, "temp_max_centi_c": 800},
                     frozenset()),
    "lot.transfer": ({"lot_id": "L1", "to": 2}, frozenset()),
    "lot.recall": ({"lot_id": "L1", "reason": "bad vials"}, frozenset({"reason"})),
    "lot.release": ({"lot_id": "L1", "reason": "checked"}, frozenset({"reason"})),
    "sensor.register": ({"sensor_id": "S1", "verify_key": bytes(32)}, frozenset()),
    "sensor.revoke": ({"sensor_id": "S1"}, frozenset()),
    "lot.monitor": ({"lot_id": "L1", "interval_ms": 60_000}, frozenset()),
    "coldchain.readings": ({"lot_id": "L1", "sensor_id": "S1", "signature": bytes(64),
                            "readings": [{"sensor_id": "S1", "t_ms": 1, "temp_centi_c": 500}]},
                           frozenset()),
    "vaccination.record": ({"subject": SUBJECT, "lot_id": "L1", "dose": 1,
                            "administered_ms": 1, "record": ENVELOPE}, frozenset()),
    "lab.result": ({"subject": SUBJECT, "test_id": "t1", "result": "positive",
                    "sample_ms": 1, "record": ENVELOPE}, frozenset()),
    "healthcode.set": ({"subject": SUBJECT, "colour": "red", "reason": "case"},
                       frozenset({"reason"})),
    "record.write": ({"subject": SUBJECT, "record_type": "diagnosis", "record": ENVELOPE},
                     frozenset()),
    "consent.grant": ({"grant_id": "g1", "grantee": 2, "record_types": ["diagnosis"],
                       "purpose": "care", "expiry_ms": 2**50}, frozenset({"purpose"})),
    "consent.revoke": ({"grant_id": "g1"}, frozenset()),
    "access.share": ({"record_id": "R1", "grantee": 2, "sealed_key": bytes(SEALED_KEY_BYTES),
                      "basis": "grant", "grant_id": "g1", "purpose": "care"},
                     frozenset({"purpose"})),
    "access.emergency": ({"record_id": "R1", "reason": "unconscious"}, frozenset({"reason"})),
    "record.erase": ({"record_id": "R1"}, frozenset()),
    "enckey.set": ({"key_id": 1, "public_key": bytes(32)}, frozenset()),
    "access.rewrap": ({"record_id": "R1", "sealed_key": bytes(SEALED_KEY_BYTES)}, frozenset()),
    "recovery.record": ({"subject": SUBJECT, "recovered_ms": 1, "reason": "discharged",
                         "record": ENVELOPE}, frozenset({"reason"})),
    "venue.register": ({"venue_id": "V1", "verify_key": bytes(32)}, frozenset()),
    "venue.revoke": ({"venue_id": "V1"}, frozenset()),
    "checkin.record": ({"records": [{**ENVELOPE, "sealed_keys": {
        "subject": bytes(SEALED_KEY_BYTES)}}]}, frozenset()),
    "exposure.publish": ({"exposure_id": "E1", "venue_id": "V1", "from_ms": 1, "to_ms": 2,
                          "level": "high", "case_ref": "case-1"}, frozenset()),
    "exposure.declare": ({"exposure_id": "E1"}, frozenset()),
    "healthcode.appeal": ({"subject": SUBJECT, "appeal_id": "A1", "event": 0,
                           "reason": "not_my_sample", "evidence_hash": bytes(32)}, frozenset()),
    "healthcode.resolve": ({"subject": SUBJECT, "appeal_id": "A1", "outcome": "corrected",
                            "reason": "lab mix-up", "colour": "green"}, frozenset({"reason"})),
    "rules.propose": ({"rule": "healthcode", "params": {"quarantine_days": 7},
                       "activation_height": 99}, frozenset()),
    "notice.publish": ({"notice_id": "n1", "title": "Masks on buses", "body": "Masks are required.",
                        "effective_date": "2026-12-01", "region": "north"},
                       frozenset({"title", "body"})),  # an authority's public notice
    "credkey.register": ({"inst_id": 1, "public_key": bytes(32)}, frozenset()),
    "credkey.revoke": ({"kid": "00" * 8, "reason": "rotated"}, frozenset({"reason"})),
}


def marked_variants(payload: dict[str, Any], clear: frozenset[str]) -> Iterator[dict[str, Any]]:
    """The payload with the marker in each position not allowed in the clear."""
    yield {**payload, "name": MARKER}  # an unknown field
    yield {**payload, "id_card": {"number": MARKER}}
    for field, value in payload.items():
        if field in clear:
            continue
        yield {**payload, field: MARKER}  # in place of the field's value
        if isinstance(value, dict):  # an unknown field inside a nested map
            yield {**payload, field: {**value, "name": MARKER}}
            for inner in value:
                yield {**payload, field: {**value, inner: MARKER}}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            yield {**payload, field: [{**value[0], "name": MARKER}]}
            yield {**payload, field: [value[0], MARKER]}


def test_every_registered_type_is_guarded() -> None:
    load_contracts()
    real = {t for t in CONTRACTS if not t.startswith("test.")}
    assert real == set(BASES), "a transaction type without a privacy-guard entry: add it above"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("guard") / "c", 3)
    try:
        c.start_all()
        c.wait_leader(20)
        c.wait_up(20)
        yield c
    finally:
        c.close()


def _refused(receipt: dict[str, Any]) -> None:
    assert receipt["status"] == "rejected", receipt
    assert receipt["problems"], receipt  # every problem of the payload, field -> reason
    assert MARKER not in repr(receipt)  # a refusal never echoes the value


def test_marked_payloads_never_reach_any_byte_a_node_writes(cluster: LocalCluster) -> None:
    c = cluster
    leader = c.wait_leader(20)
    follower = next(k for k in c.ids if k != leader)
    chain_id = load_genesis(c.root / "genesis.toml").chain_id
    citizen = Client(SigningKey.generate(), chain_id)
    now = int(time.time() * 1000)
    refused_hashes: list[str] = []
    n = 0
    for tx_type, (base, clear) in sorted(BASES.items()):
        variants = list(marked_variants(base, clear))
        assert variants
        for i, payload in enumerate(variants):
            node = (leader, follower)[i % 2]
            # submit: signed by the node's institution key
            r = c.call(node, "submit", {"type": tx_type, "payload": payload, "wait_s": 2},
                       timeout_s=10)
            _refused(r)
            refused_hashes.append(r["tx_hash"])
            # submit_raw: signed elsewhere (a citizen's app, another institution's tool)
            tx = citizen.tx(tx_type, payload, now)
            r = c.call((follower, leader)[i % 2], "submit_raw",
                       {"tx": tx.encode().hex(), "wait_s": 2}, timeout_s=10)
            _refused(r)
            n += 2
        # submit_many: a batch of every variant, through a follower
        out = c.call(follower, "submit_many", {
            "items": [{"type": tx_type, "payload": p} for p in variants], "wait_s": 2},
            timeout_s=15)
        assert out["rejected"] == len(variants), out
        for r in out["receipts"]:
            _refused(r)
        n += len(variants)
    assert n > 300
    # Refusals stay answerable by hash on the node that refused them.
    sample = c.call(leader, "tx", {"tx_hash": refused_hashes[0]})
    other = c.call(follower, "tx", {"tx_hash": refused_hashes[1]})
    for r in (sample, other):
        assert r["status"] == "rejected" and r["problems"] and r["type"]
    # The chain carries none of them; then every byte written must be free of the marker.
    height = c.wait_converged(15)
    for h in range(1, height + 1):
        assert not [t for t in c.call(leader, "block", {"height": h})["txs"]
                    if t["tx_hash"] in set(refused_hashes)]
    hits = _files_with_marker(c.root)
    assert not hits, f"the marker was written to {hits}"
    for k in c.ids:  # a clean stop checkpoints the WAL into the database: look again
        c.stop(k)
    hits = _files_with_marker(c.root)
    assert not hits, f"the marker was written to {hits}"


def _files_with_marker(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if MARKER_BYTES in data or MARKER_BYTES[:20] in data or b"110101199003077777" in data:
                found.append(str(path.relative_to(root)))
    return found
