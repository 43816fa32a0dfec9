"""Every registered transaction type's payloads, mutated at random, through the real engine.

A setup chain gives each type a valid payload from the right sender (a lot in a
site's custody, a sensor, a record, a grant, an open proposal, ...). Hypothesis
then replaces, drops or adds fields with arbitrary canonical values and runs a
block of such transactions through `execute_block`: nothing may escape the
engine, a refusal must carry the contract's own reason (never "contract error",
the engine's catch-all for a handler bug), and the incremental state digest
must equal a full recomputation.
"""

from __future__ import annotations

from typing import Any

import nacl.signing
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.client import (
    Client,
    appeal_payload,
    coldchain_readings_payload,
    exposure_publish_payload,
    lot_register_payload,
    lot_transfer_payload,
    make_venue_qr,
    parse_venue_qr,
    recovery_payload,
    resolve_payload,
    rules_propose_payload,
    sensor_register_payload,
    venue_register_payload,
)
from hzp2p.contracts.codelife import HEALTHCODE_RULES
from hzp2p.contracts.credentials import key_id as credential_key_id
from hzp2p.contracts.engine import (
    execute_block,
    genesis_state_writes,
    load_contracts,
    recompute_digest,
    state_digest,
)
from hzp2p.contracts.registry import HANDLERS, PAYLOAD_GENERATORS
from hzp2p.contracts.state import DictState
from hzp2p.ledger.block import decode_block
from hzp2p.ledger.tx import Transaction
from hzp2p.tools.testkit import DAY_MS, LocalChain

# make_local_genesis roles: 1, 2 authority; 3 lab; 4 hospital; 5 vaccination_site;
# 6 manufacturer; 7 carrier; 8 observer; 9 lab.
AUTH, LAB, HOSPITAL, SITE, MAKER, CARRIER = 1, 3, 4, 5, 6, 7
CITIZEN = nacl.signing.SigningKey(b"\x07" * 32)
SENSOR = nacl.signing.SigningKey(b"\x08" * 32)
VENUE = nacl.signing.SigningKey(b"\x09" * 32)


def _setup() -> tuple[LocalChain, dict[str, tuple[int | nacl.signing.SigningKey, dict[str, Any]]]]:
    load_contracts()
    c = LocalChain(n_voters=3, n_learners=6, seed=77)
    now = c.now_ms
    cl = {i: Client(c.key(i), c.genesis.chain_id, i, nonce_start=i * 10**6) for i in range(1, 10)}
    alice = Client(CITIZEN, c.genesis.chain_id, None, nonce_start=0)
    reg = lot_register_payload("L1", "covax", 100, now + 400 * DAY_MS, 200, 800)
    steps: list[tuple[int, str, dict[str, Any]]] = [
        (MAKER, "lot.register", reg),
        (MAKER, "lot.register", {**reg, "lot_id": "L2"}),
        (MAKER, "lot.transfer", lot_transfer_payload("L1", CARRIER)),
        (CARRIER, "sensor.register", sensor_register_payload("S1", bytes(SENSOR.verify_key))),
        (CARRIER, "sensor.register", sensor_register_payload("S2", bytes(SENSOR.verify_key))),
        (CARRIER, "lot.transfer", lot_transfer_payload("L1", SITE)),
        (MAKER, "lot.register", {**reg, "lot_id": "L4"}),
        (MAKER, "lot.transfer", lot_transfer_payload("L4", CARRIER)),
        (
            CARRIER,
            "coldchain.readings",
            coldchain_readings_payload(SENSOR, "S1", "L4", [(now + 7500, 900)]),
        ),
        (
            AUTH,
            "member.propose",
            {"action": "set_roles", "inst_id": 8, "roles": ["lab", "observer"]},
        ),
        (AUTH, "venue.register", venue_register_payload("V1", bytes(VENUE.verify_key))),
        (AUTH, "venue.register", venue_register_payload("V2", bytes(VENUE.verify_key))),
        (AUTH, "exposure.publish", exposure_publish_payload("E1", "V1", 0, now, "high")),
        (LAB, "lab.result", {"subject": alice.pseudonym, "test_id": "T0", "result": "positive", "sample_ms": now}),
        (LAB, "lab.result", {"subject": alice.pseudonym, "test_id": "T00", "result": "negative", "sample_ms": now}),
        (AUTH, "credkey.register", {"inst_id": 1, "public_key": b"\x0a" * 32}),
        (AUTH, "data.publish", {"dataset_id": "DS1", "content_hash": b"\x01" * 32, "size": 10,
                                "public": False, "sealed_metadata": bytes(64),
                                "sealed_keys": {"inst:1": bytes(80)},
                                "key_commitment": bytes(32)}),
        (LAB, "data.request", {"request_id": "Q1", "dataset_id": "DS1", "purpose": "study",
                               "days": 30}),
        (LAB, "data.request", {"request_id": "Q2", "dataset_id": "DS1", "purpose": "study",
                               "days": 30}),
        (AUTH, "data.approve", {"request_id": "Q2", "sealed_key": bytes(80)}),
    ]
    for who, typ, p in steps:
        assert c.run_one(who, typ, p) == (True, ""), (typ, c.results[-1].verdicts)
    w = cl[HOSPITAL].record_write(
        now,
        record_id="R1",
        subject_verify_key=alice.verify_key,
        record_type="diagnosis",
        fields={"dx": "flu"},
    )
    g = alice.grant(
        now,
        grant_id="G1",
        grantee=2,
        record_types=["diagnosis"],
        purpose="care",
        expiry_ms=now + 30 * DAY_MS,
    )
    g2 = alice.grant(
        now,
        grant_id="G2",
        grantee=9,
        record_types=["diagnosis"],
        purpose="care",
        expiry_ms=now + 30 * DAY_MS,
    )
    e = cl[AUTH].emergency(now, record_id="R1", reason="unconscious patient")
    rotate = cl[HOSPITAL].tx("enckey.set", {"key_id": 1, "public_key": b"\x04" * 32}, now)
    appeal = alice.appeal(now, appeal_id="A1", event=0, reason="not_my_sample")
    res = c.run([w, g, g2, e, appeal])
    res2 = c.run([rotate])  # R1 stays sealed to the hospital's key 0: a rewrap applies
    assert all(v.applied for v in (*res.verdicts, *res2.verdicts)), res.verdicts
    vax = (
        cl[SITE]
        .vaccination_record(
            now,
            record_id="V1",
            subject_verify_key=alice.verify_key,
            lot_id="L1",
            dose=1,
            administered_ms=now,
            fields={"arm": "left"},
        )
        .payload
    )
    lab = (
        cl[LAB]
        .lab_result(
            now,
            subject=alice.pseudonym,
            test_id="T1",
            result="positive",
            sample_ms=now,
            record_id="LR1",
            subject_verify_key=alice.verify_key,
            fields={"ct": 21},
        )
        .payload
    )
    share = (
        cl[HOSPITAL]
        .share(c.state, now, record_id="R1", grantee=2, grant_id="G1", purpose="care")
        .payload
    )
    fulfil = cl[HOSPITAL].fulfil_emergency(c.state, now, record_id="R1", authority=AUTH).payload
    new_rec = (
        cl[HOSPITAL]
        .record_write(
            now,
            record_id="R2",
            subject_verify_key=alice.verify_key,
            record_type="diagnosis",
            fields={"dx": "cold"},
        )
        .payload
    )
    gens = {t: PAYLOAD_GENERATORS[t] for t in ("epi.report", "data.publish")}
    base: dict[str, tuple[int | nacl.signing.SigningKey, dict[str, Any]]] = {
        "epi.report": (LAB, dict(gens["epi.report"](1))),
        "data.publish": (AUTH, dict(gens["data.publish"](1))),
        "member.propose": (AUTH, {"action": "promote", "inst_id": 4}),
        "member.vote": (2, {"proposal_id": 1, "approve": True}),
        "lot.register": (MAKER, {**reg, "lot_id": "L3"}),
        "lot.transfer": (MAKER, lot_transfer_payload("L2", CARRIER)),
        "lot.recall": (MAKER, {"lot_id": "L2", "reason": "contamination"}),
        "lot.release": (AUTH, {"lot_id": "L4", "reason": "investigated"}),
        "sensor.register": (CARRIER, sensor_register_payload("S3", bytes(32))),
        "sensor.revoke": (CARRIER, {"sensor_id": "S2"}),
        "lot.monitor": (SITE, {"lot_id": "L1", "interval_ms": 60_000}),
        "coldchain.readings": (
            CARRIER,
            coldchain_readings_payload(SENSOR, "S1", "L1", [(now + 3000, 500), (now + 3001, 900)]),
        ),
        "vaccination.record": (SITE, dict(vax)),
        "lab.result": (LAB, dict(lab)),
        "healthcode.set": (
            AUTH,
            {"subject": alice.pseudonym, "colour": "yellow", "reason": "contact"},
        ),
        "record.write": (HOSPITAL, dict(new_rec)),
        "consent.grant": (
            CITIZEN,
            {
                "grant_id": "G3",
                "grantee": 4,
                "record_types": ["vaccination"],
                "purpose": "care",
                "expiry_ms": now + DAY_MS,
            },
        ),
        "consent.revoke": (CITIZEN, {"grant_id": "G2"}),
        "access.share": (HOSPITAL, dict(share)),
        "access.emergency": (2, {"record_id": "R1", "reason": "outbreak tracing"}),
        "enckey.set": (HOSPITAL, {"key_id": 2, "public_key": b"\x05" * 32}),
        "access.rewrap": (HOSPITAL, {"record_id": "R1", "sealed_key": bytes(80)}),
        "record.erase": (CITIZEN, {"record_id": "R1"}),
        "notice.publish": (
            AUTH,
            {
                "notice_id": "N1",
                "title": "Masks on buses",
                "body": "Masks are required on public transport.",
                "effective_date": "2026-12-01",
                "region": "district-1",
            },
        ),
        "credkey.register": (AUTH, {"inst_id": 3, "public_key": b"\x0b" * 32}),
        "data.request": (HOSPITAL, {"request_id": "Q3", "dataset_id": "DS1", "purpose": "study",
                               "days": 30}),
        "data.approve": (AUTH, {"request_id": "Q1", "sealed_key": bytes(80)}),
        "data.deny": (AUTH, {"request_id": "Q1", "reason": "not needed"}),
        "data.revoke": (AUTH, {"request_id": "Q2", "reason": "study ended"}),
        "data.fetch": (LAB, {"dataset_id": "DS1", "version": 1}),
        "credkey.revoke": (AUTH, {"kid": credential_key_id(b"\x0a" * 32).hex(), "reason": "rotated"}),
    }
    base["access.share/emergency"] = (HOSPITAL, dict(fulfil))
    qr = parse_venue_qr(make_venue_qr(VENUE, c.genesis.chain_id, "V1", now // DAY_MS), c.genesis.chain_id)
    checkin = alice.checkin(now, [(qr, now)], record_ids=["ci-000000000000000000000001"]).payload
    v2 = {**HEALTHCODE_RULES[2], "quarantine_days": 7}
    base.update(
        {
            "venue.register": (AUTH, venue_register_payload("V3", bytes(VENUE.verify_key))),
            "venue.revoke": (AUTH, {"venue_id": "V2"}),
            "checkin.record": (CITIZEN, dict(checkin)),
            "exposure.publish": (
                2,
                exposure_publish_payload("E2", "V1", 0, now, "low", case_ref="case-7"),
            ),
            "exposure.declare": (CITIZEN, {"exposure_id": "E1"}),
            "recovery.record": (HOSPITAL, recovery_payload(alice.pseudonym, now, "discharged")),
            "healthcode.appeal": (
                CITIZEN,
                appeal_payload(alice.pseudonym, "A2", 1, "wrong_result", bytes(32)),
            ),
            "healthcode.resolve": (
                AUTH,
                resolve_payload(alice.pseudonym, "A1", "corrected", "sample mix-up", "green"),
            ),
            "rules.propose": (AUTH, rules_propose_payload("healthcode", v2, 10**6)),
        }
    )
    return c, base


CHAIN, BASE = _setup()
TYPES = sorted(BASE)

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 2**53, 2**62, 10**18]),
    st.text(max_size=12),
    st.sampled_from(["", " ", "L1", "S1", "R1", "G1", "x\n", "a/b", "diagnosis", "grant"]),
    st.binary(max_size=90),
)
value = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
mutation = st.tuples(
    st.sampled_from(TYPES),
    st.sampled_from(["keep", "set", "drop", "add", "replace", "deep"]),
    st.integers(0, 20),
    value,
)


def _payload(typ: str, how: str, which: int, v: Any) -> dict[str, Any]:
    p = dict(BASE[typ][1])
    names = sorted(p)
    if how == "set":
        p[names[which % len(names)]] = v
    elif how == "drop":
        del p[names[which % len(names)]]
    elif how == "add":
        p[f"extra{which}"] = v
    elif how == "replace":
        p = v if isinstance(v, dict) else {"x": v}
    elif how == "deep":  # inside a nested map or list (record envelope, readings, request)
        nested = [n for n in names if isinstance(p[n], dict | list) and p[n]]
        if nested:
            name = nested[which % len(nested)]
            inner = p[name]
            if isinstance(inner, list):
                inner = list(inner)
                j = which % len(inner)
                if isinstance(inner[j], dict) and inner[j]:
                    item = dict(inner[j])
                    item[sorted(item)[which % len(item)]] = v
                    inner[j] = item
                else:
                    inner[j] = v
            else:
                inner = dict(inner)
                inner[sorted(inner)[which % len(inner)]] = v
            p[name] = inner
    return p


def test_every_registered_type_has_a_fuzz_base() -> None:
    real = {t for t in HANDLERS if not t.startswith("test.")}
    assert real == {t.split("/")[0] for t in BASE}


@settings(max_examples=300)
@given(st.lists(mutation, min_size=1, max_size=6))
def test_fuzzed_payloads_are_rejected_with_reasons_never_crash(muts: list[Any]) -> None:
    c = CHAIN.fork()
    txs: list[Transaction] = []
    for n, (typ, how, which, v) in enumerate(muts):
        signer, _ = BASE[typ]
        txs.append(c.tx(signer, typ.split("/")[0], _payload(typ, how, which, v), nonce=10**9 + n))
    res = c.run(txs)
    for tx, verdict in zip(txs, res.verdicts, strict=True):
        if not verdict.applied:
            assert verdict.reason and "contract error" not in verdict.reason, (
                tx.tx_type,
                dict(tx.payload),
                verdict.reason,
            )
    assert state_digest(c.state) == recompute_digest(c.state) == res.state_digest_after


def test_unmutated_bases_apply() -> None:
    """The fuzz starts from payloads that are valid, so mutations reach the deep checks."""
    for typ in TYPES:
        signer, p = BASE[typ]
        c = CHAIN.fork()
        v = c.run([c.tx(signer, typ.split("/")[0], p)]).verdicts[0]
        assert v.applied, (typ, v.reason)


@settings(max_examples=40)
@given(st.lists(st.lists(mutation, max_size=5), min_size=1, max_size=4))
def test_domain_blocks_replay_identically_from_genesis_and_from_a_snapshot(
    blocks: list[list[Any]],
) -> None:
    """Determinism over every contract: the set-up chain plus generated blocks of all
    transaction types (valid ones and mutated ones) give the same verdicts and digests on
    two fresh states, and on a node restarting from a snapshot taken half-way."""
    c = CHAIN.fork()
    nonce = 2 * 10**9
    for muts in blocks:
        txs = []
        for typ, how, which, v in muts:
            nonce += 1
            signer, _ = BASE[typ]
            txs.append(c.tx(signer, typ.split("/")[0], _payload(typ, how, which, v), nonce=nonce))
        c.run(txs)
    a = DictState(genesis_state_writes(c.genesis))
    b = DictState(genesis_state_writes(c.genesis))
    mid = len(c.blocks) - len(blocks) // 2 - 1
    snapshot: DictState | None = None
    for h, raw in enumerate(c.blocks, start=1):
        ra = execute_block(a, decode_block(raw), c.genesis)
        rb = execute_block(b, decode_block(raw), c.genesis)
        assert ra.verdicts == rb.verdicts == c.results[h - 1].verdicts
        assert ra.state_digest_after == rb.state_digest_after == c.results[h - 1].state_digest_after
        a.apply(ra.writes)
        b.apply(rb.writes)
        if h == mid:
            snapshot = DictState(dict(a.data))
    assert a.data == b.data == c.state.data
    assert snapshot is not None and recompute_digest(snapshot) == state_digest(snapshot)
    for raw in c.blocks[mid:]:
        snapshot.apply(execute_block(snapshot, decode_block(raw), c.genesis).writes)
    assert snapshot.data == a.data
