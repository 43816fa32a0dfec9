"""Client library: signed transactions, payload shapes, queries over a StateReader."""

from __future__ import annotations

import pytest
from domain_helpers import CHAIN, DAY, T0, World, key
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.client import (
    Client,
    access_log,
    coldchain_readings_payload,
    health_code,
    lot_custody,
    lot_recall_payload,
    lot_register_payload,
    lot_transfer_payload,
    sensor_register_payload,
    subject_records,
    temperature_history,
)
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts.api import TxRejected
from hzp2p.contracts.coldchain import readings_message
from hzp2p.contracts.engine import state_digest
from hzp2p.contracts.verify import verify_chain
from hzp2p.crypto.records import RecordCryptoError, pseudonym
from hzp2p.ledger.codec import canonical
from hzp2p.ledger.tx import check_envelope, decode_tx
from hzp2p.tools.testkit import LocalChain


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


# ---------------------------------------------------------------- end to end through the engine


def _story() -> tuple[LocalChain, dict[str, Client], Client]:
    chain = LocalChain(3, 6, seed=5)
    cid = chain.genesis.chain_id
    roles = {"cdc": 1, "lab": 3, "hospital": 4, "site": 5, "maker": 6, "carrier": 7}
    c = {n: Client(chain.key(i), cid, i, nonce_start=i * 1000) for n, i in roles.items()}
    alice = Client(key("alice"), cid, nonce_start=0)
    sensor = key("e2e-sensor")
    now = chain.now_ms
    exp = now + 30 * DAY
    r1 = chain.run(
        [
            c["maker"].tx(
                "lot.register", lot_register_payload("L1", "covax", 2, exp, 200, 800), now
            ),
            c["maker"].tx(
                "lot.register", lot_register_payload("L2", "covax", 2, exp, 200, 800), now
            ),
            c["maker"].tx("lot.transfer", lot_transfer_payload("L1", 7), now),
            c["carrier"].tx(
                "sensor.register", sensor_register_payload("S1", bytes(sensor.verify_key)), now
            ),
            c["carrier"].tx(
                "coldchain.readings",
                coldchain_readings_payload(sensor, "S1", "L1", [(now, 500)]),
                now,
            ),
            c["carrier"].tx("lot.transfer", lot_transfer_payload("L1", 5), now),
            c["maker"].tx("lot.recall", lot_recall_payload("L2", "bad vials"), now),
        ]
    )
    assert [v.reason for v in r1.verdicts] == [""] * 7
    now = chain.now_ms
    vax = {
        "record_id": "V1",
        "subject_verify_key": alice.verify_key,
        "dose": 1,
        "administered_ms": now,
        "fields": {"name": "Alice"},
    }
    r2 = chain.run(
        [
            c["site"].vaccination_record(now, lot_id="L2", **vax),  # type: ignore[arg-type]
            c["site"].vaccination_record(now, lot_id="L1", **vax),  # type: ignore[arg-type]
            alice.grant(
                now,
                grant_id="G1",
                grantee=4,
                record_types=["vaccination"],
                purpose="treatment",
                expiry_ms=now + DAY,
            ),
            c["cdc"].emergency(now, record_id="V1", reason="adverse-event investigation"),
            c["lab"].tx(
                "lab.result",
                {
                    "subject": alice.pseudonym,
                    "test_id": "T1",
                    "result": "positive",
                    "sample_ms": now,
                },
                now,
            ),
        ]
    )
    assert [(v.applied, v.reason) for v in r2.verdicts] == [
        (False, "vaccination.record: lot 'L2' is recalled"),
        (True, ""),
        (True, ""),
        (True, ""),
        (True, ""),
    ]
    now = chain.now_ms
    r3 = chain.run(
        [
            c["site"].share(
                chain.state, now, record_id="V1", grantee=4, grant_id="G1", purpose="treatment"
            ),
            c["site"].fulfil_emergency(chain.state, now, record_id="V1", authority=1),
        ]
    )
    assert [v.reason for v in r3.verdicts] == ["", ""]
    return chain, c, alice


def test_end_to_end_story_through_the_engine() -> None:
    chain, c, alice = _story()
    st = chain.state
    assert alice.read_record(st, "V1") == {"name": "Alice"}
    assert c["hospital"].read_record(st, "V1") == {"name": "Alice"}
    assert c["cdc"].read_record(st, "V1") == {"name": "Alice"}
    with pytest.raises(RecordCryptoError):
        c["lab"].read_record(st, "V1")
    assert [(e["kind"], e["grantee"]) for e in alice.my_access_log(st)] == [
        ("emergency", 1),
        ("share", 4),
        ("share", 1),
    ]
    assert health_code(st, alice.pseudonym) == "red"
    lot = dq.lot(st, "L1")
    assert lot is not None and lot["remaining"] == 1
    now = chain.now_ms
    r = chain.run(
        [
            alice.revoke(now, grant_id="G1"),
            alice.erase(now, record_id="V1"),
            c["site"].tx(
                "access.share",
                {
                    "record_id": "V1",
                    "grantee": 4,
                    "basis": "grant",
                    "grant_id": "G1",
                    "purpose": "treatment",
                    "sealed_key": bytes(80),
                },
                now,
            ),
        ]
    )
    assert [v.reason for v in r.verdicts] == ["", "", "access.share: record 'V1' was erased"]
    for who in (alice, c["hospital"], c["cdc"], c["site"]):
        with pytest.raises(RecordCryptoError, match="erased"):
            who.read_record(st, "V1")
    # Replaying the same blocks from genesis re-checks everything and reaches the same digest.
    report = verify_chain(chain.genesis, chain.blocks, expected_final_digest=state_digest(st))
    assert report.ok, report.reason


def test_benchmark_payload_generators_are_valid() -> None:
    from hzp2p.contracts.registry import PAYLOAD_GENERATORS, PAYLOAD_ROLES

    chain = LocalChain(3, 6, seed=9)
    by_role = {"authority": 1, "lab": 3, "manufacturer": 6, "carrier": 7}
    mine = ("lab.result", "healthcode.set", "lot.register", "sensor.register")
    for typ in mine:
        sender = by_role[PAYLOAD_ROLES[typ][0]]
        txs = [chain.tx(sender, typ, PAYLOAD_GENERATORS[typ](i)) for i in range(6)]
        assert [v.reason for v in chain.run(txs).verdicts] == [""] * 6


# ---------------------------------------------------------------- hostile payloads

_FIELDS = {
    "lab.result": ("lab", ["subject", "test_id", "result", "sample_ms", "record"]),
    "healthcode.set": ("cdc", ["subject", "colour", "reason", "override"]),
    "lot.register": (
        "maker",
        ["lot_id", "product", "quantity", "expiry_ms", "temp_min_centi_c", "temp_max_centi_c"],
    ),
    "lot.transfer": ("maker", ["lot_id", "to"]),
    "lot.recall": ("maker", ["lot_id", "reason"]),
    "lot.release": ("cdc", ["lot_id", "reason"]),
    "sensor.register": ("carrier", ["sensor_id", "verify_key"]),
    "sensor.revoke": ("carrier", ["sensor_id"]),
    "coldchain.readings": ("carrier", ["lot_id", "sensor_id", "readings", "signature"]),
    "vaccination.record": ("site", ["subject", "lot_id", "dose", "administered_ms", "record"]),
    "record.write": ("hospital", ["subject", "record_type", "record"]),
    "consent.grant": ("alice", ["grant_id", "grantee", "record_types", "purpose", "expiry_ms"]),
    "consent.revoke": ("alice", ["grant_id"]),
    "access.share": (
        "hospital",
        ["record_id", "grantee", "sealed_key", "basis", "grant_id", "purpose"],
    ),
    "access.emergency": ("cdc", ["record_id", "reason"]),
    "enckey.set": ("hospital", ["key_id", "public_key"]),
    "access.rewrap": ("hospital", ["record_id", "sealed_key"]),
    "record.erase": ("hospital", ["record_id", "subject_request"]),
}
_SUBJ = pseudonym(bytes(key("alice").verify_key))
_plausible = st.sampled_from(
    [
        "L1",
        "S1",
        "R1",
        "G1",
        "covax",
        _SUBJ,
        "positive",
        "red",
        "grant",
        "emergency",
        "diagnosis",
        "treatment",
        0,
        1,
        2,
        3,
        -1,
        2**62,
        T0,
        bytes(32),
        bytes(64),
        bytes(80),
        ["diagnosis"],
        [{"sensor_id": "S1", "t_ms": 1, "temp_centi_c": 5}],
        True,
        {
            "record_id": "R2",
            "ciphertext": bytes(64),
            "key_commitment": bytes(32),
            "sealed_keys": {"subject": bytes(80), "inst:1": bytes(80)},
        },
        {"subject_key": bytes(32), "signature": bytes(64)},
    ]
)
_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=6)
    | st.binary(max_size=90),
    lambda c: (
        st.lists(c, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), c, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300)
@given(st.sampled_from(sorted(_FIELDS)), st.data())
def test_hostile_payloads_are_rejected_never_crash(tx_type: str, data: st.DataObject) -> None:
    """Every outside input is validated: a contract either applies or raises TxRejected."""
    w = World()
    who = {
        "hospital": w.member("hospital", 1, "hospital"),
        "maker": w.member("maker", 2, "manufacturer"),
        "carrier": w.member("carrier", 3, "carrier"),
        "site": w.member("site", 4, "vaccination_site"),
        "cdc": w.member("cdc", 5, "authority"),
        "lab": w.member("lab", 6, "lab"),
        "alice": w.citizen("alice"),
    }
    w.apply(
        who["maker"].tx(
            "lot.register", lot_register_payload("L1", "covax", 5, T0 + DAY, 200, 800), w.now
        )
    )
    w.apply(
        who["hospital"].record_write(
            w.now,
            record_id="R1",
            subject_verify_key=who["alice"].verify_key,
            record_type="diagnosis",
            fields={"d": 1},
        )
    )
    signer, fields = _FIELDS[tx_type]
    names = data.draw(
        st.lists(st.sampled_from([*fields, "extra"]), unique=True, max_size=len(fields) + 1)
    )
    payload = {n: data.draw(_plausible | _junk) for n in names}
    try:
        tx = who[signer].tx(tx_type, payload, w.now)
    except ValueError:
        return  # not even encodable as a transaction (the codec refuses it first)
    try:
        w.apply(tx)
    except TxRejected as e:
        assert e.reason.startswith(tx_type + ": ")


def test_query_results_are_json_ready_and_emergencies_listed() -> None:
    import json

    chain, _, _ = _story()
    reqs = dq.emergency_requests(chain.state, "V1")
    assert [(r["authority"], r["fulfilled"]) for r in reqs] == [(1, True)]
    rec = dq.record(chain.state, "V1")
    out = json.loads(json.dumps(dq.jsonable(rec)))
    assert out["key_commitment"] == rec["key_commitment"].hex()  # type: ignore[index]
    assert set(out["holders"]) == {"subject", "inst:1", "inst:4", "inst:5"}
