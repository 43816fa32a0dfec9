"""Client library: signed transactions, payload shapes, queries over a StateReader."""

from __future__ import annotations

from domain_helpers import CHAIN, DAY, World, key

from hzp2p.client import (
    Client,
    access_log,
    coldchain_readings_payload,
    health_code,
    lot_custody,
    lot_register_payload,
    lot_transfer_payload,
    sensor_register_payload,
    subject_records,
    temperature_history,
)
from hzp2p.contracts.coldchain import readings_message
from hzp2p.crypto.records import pseudonym
from hzp2p.ledger.codec import canonical
from hzp2p.ledger.tx import check_envelope, decode_tx


def test_transactions_are_signed_canonical_and_distinct() -> None:
    c = Client(key("maker"), CHAIN, 1, nonce_start=41)
    p = lot_register_payload("L1", "covax", 10, 5 * DAY, 200, 800)
    a, b = c.tx("lot.register", p, 1000), c.tx("lot.register", p, 1000)
    assert a.hash != b.hash and (a.nonce, b.nonce) == (42, 43)
    for tx in (a, b):
        check_envelope(tx, CHAIN, 1000)
        again = decode_tx(tx.encode())
        assert again.hash == tx.hash and dict(again.payload) == canonical(p)
    check_envelope(a, CHAIN, 1000 + c.validity_ms)


def test_citizen_identity() -> None:
    alice = Client(key("alice"), CHAIN)
    assert alice.holder == "subject"
    assert alice.pseudonym == pseudonym(bytes(key("alice").verify_key))
    assert len(alice.pseudonym) == 32
    assert Client(key("site"), CHAIN, 7).holder == "inst:7"


def test_sensor_batch_signature_covers_lot_and_readings() -> None:
    sk = key("sensor")
    p = coldchain_readings_payload(sk, "S1", "L1", [(5, 300), (6, 310)])
    msg = readings_message("L1", [("S1", 5, 300), ("S1", 6, 310)])
    sk.verify_key.verify(msg, p["signature"])
    assert p["readings"][1] == {"sensor_id": "S1", "t_ms": 6, "temp_centi_c": 310}


def test_queries_over_state() -> None:
    w = World()
    maker = w.member("maker", 1, "manufacturer")
    carrier = w.member("carrier", 2, "carrier")
    site = w.member("site", 3, "vaccination_site")
    alice = w.citizen("alice")
    sensor = key("sensor")
    w.apply(
        maker.tx(
            "lot.register", lot_register_payload("L1", "covax", 5, w.now + DAY, 200, 800), w.now
        )
    )
    w.apply(maker.tx("lot.transfer", lot_transfer_payload("L1", 2), w.now))
    w.apply(
        carrier.tx(
            "sensor.register", sensor_register_payload("S1", bytes(sensor.verify_key)), w.now
        )
    )
    w.apply(
        carrier.tx(
            "coldchain.readings",
            coldchain_readings_payload(sensor, "S1", "L1", [(w.now - 5, 400)]),
            w.now,
        )
    )
    w.apply(carrier.tx("lot.transfer", lot_transfer_payload("L1", 3), w.now))
    w.apply(
        site.vaccination_record(
            w.now,
            record_id="V1",
            subject_verify_key=alice.verify_key,
            lot_id="L1",
            dose=1,
            administered_ms=w.now,
            fields={"name": "Alice"},
        )
    )
    assert [e["to"] for e in lot_custody(w.state, "L1")] == [1, 2, 3]
    assert [r["temp_centi_c"] for r in temperature_history(w.state, "L1")] == [400]
    recs = subject_records(w.state, alice.pseudonym)
    assert [r["record_id"] for r in recs] == ["V1"]
    assert alice.read_record(w.state, "V1") == {"name": "Alice"}
    assert access_log(w.state, alice.pseudonym) == []
    assert health_code(w.state, alice.pseudonym) == "green"
