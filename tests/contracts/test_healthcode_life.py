"""A health code's whole life (rules v2): venues, private check-ins, exposures, recovery."""

from __future__ import annotations

import base64

import pytest
from domain_helpers import DAY, World, key
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.client import (
    Client,
    VenueQRError,
    exposure_publish_payload,
    health_code,
    health_code_history,
    healthcode_set_payload,
    lab_result_payload,
    make_venue_qr,
    parse_venue_qr,
    recovery_payload,
    venue_register_payload,
    verify_venue_qr,
)
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts.codelife import HEALTHCODE_RULES, effective_health_code
from hzp2p.contracts.exposure import VenueQR
from hzp2p.crypto.records import RecordCryptoError
from hzp2p.ledger.tx import Transaction
from hzp2p.sim.ledger_sm import LedgerWorld
from hzp2p.tools.testkit import LocalChain

HOUR = 3_600_000
V2 = HEALTHCODE_RULES[2]
QUARANTINE = V2["quarantine_days"] * DAY


class Life:
    def __init__(self, rules: dict[str, int] | None = None) -> None:
        w = self.w = World(rules or {"healthcode": 2, "privacy": 1})
        self.lab = w.member("lab", 1, "lab")
        self.cdc = w.member("cdc", 2, "authority")
        self.hospital = w.member("hospital", 3, "hospital")
        self.mall = w.member("mall-operator", 4, "observer")
        self.alice = w.citizen("alice")
        self.bob = w.citizen("bob")
        self.venue_key = key("venue/cafe")
        self.n = 0
        w.apply(self.mall.tx("venue.register", venue_register_payload("cafe", self.vk), w.now))
        w.apply(
            self.mall.tx("venue.register", venue_register_payload("cinema-12", self.vk), w.now)
        )

    @property
    def vk(self) -> bytes:
        return bytes(self.venue_key.verify_key)

    def qr(self, venue_id: str = "cafe", at_ms: int | None = None) -> VenueQR:
        day = (self.w.now if at_ms is None else at_ms) // DAY
        text = make_venue_qr(self.venue_key, self.w.genesis.chain_id, venue_id, day)
        return parse_venue_qr(text, self.w.genesis.chain_id)

    def publish(self, eid: str = "E1", venue: str = "cafe", start: int = 0, end: int = 0) -> None:
        p = exposure_publish_payload(eid, venue, start or self.w.now - 3 * HOUR,
                                     end or self.w.now - HOUR, "high", case_ref="case-1")
        self.w.apply(self.cdc.tx("exposure.publish", p, self.w.now))

    def declare(self, who: Client | None = None, eid: str = "E1") -> Transaction:
        tx = (who or self.alice).declare_exposure(self.w.now, eid)
        self.w.apply(tx)
        return tx

    def result(self, result: str, sample_ms: int, subject: str | None = None) -> Transaction:
        self.n += 1
        p = lab_result_payload(subject or self.alice.pseudonym, f"T{self.n}", result, sample_ms)
        tx = self.lab.tx("lab.result", p, self.w.now)
        self.w.apply(tx)
        return tx

    def colour(self, who: Client | None = None) -> str:
        return health_code(self.w.state, (who or self.alice).pseudonym)

    def code(self) -> dict[str, object]:
        return effective_health_code(self.w.state, self.alice.pseudonym)


@pytest.fixture
def life() -> Life:
    return Life()


# ---------------------------------------------------------------- venues and check-ins


def test_venue_qr_rotates_daily_and_verifies_against_the_registered_key(life: Life) -> None:
    w = life.w
    qr = life.qr()
    assert verify_venue_qr(w.state, qr, w.now)["inst_id"] == 4
    assert life.qr(at_ms=w.now + DAY).signature != qr.signature  # a new code every day
    with pytest.raises(VenueQRError, match="not today's"):
        verify_venue_qr(w.state, qr, w.now + DAY)
    forged = make_venue_qr(key("someone"), w.genesis.chain_id, "cafe", w.now // DAY)
    with pytest.raises(VenueQRError, match="registered key"):
        verify_venue_qr(w.state, parse_venue_qr(forged, w.genesis.chain_id), w.now)
    with pytest.raises(VenueQRError, match="signature"):
        parse_venue_qr(make_venue_qr(life.venue_key, "other-chain", "cafe", 1), w.genesis.chain_id)
    for junk in ("hello", "HZV1.!!!", "HZV1.AAAA"):
        with pytest.raises(VenueQRError):
            parse_venue_qr(junk, w.genesis.chain_id)
    unknown = make_venue_qr(life.venue_key, w.genesis.chain_id, "nowhere", w.now // DAY)
    with pytest.raises(VenueQRError, match="not registered"):
        verify_venue_qr(w.state, parse_venue_qr(unknown, w.genesis.chain_id), w.now)


def test_venue_register_and_revoke_refusals(life: Life) -> None:
    w = life.w
    again = venue_register_payload("cafe", life.vk)
    w.refused(life.lab.tx("venue.register", again, w.now), "already registered")
    w.refused(life.lab.tx("venue.register", venue_register_payload("x", bytes(32)), w.now), "zeros")
    w.refused(life.alice.tx("venue.register", venue_register_payload("y", life.vk), w.now), "member")
    w.refused(life.lab.tx("venue.revoke", {"venue_id": "cafe"}, w.now), "not registered by this")
    w.apply(life.mall.tx("venue.revoke", {"venue_id": "cafe"}, w.now))
    w.refused(life.mall.tx("venue.revoke", {"venue_id": "cafe"}, w.now), "already revoked")
    with pytest.raises(VenueQRError, match="not registered"):
        verify_venue_qr(w.state, life.qr(), w.now)


def test_checkins_are_sealed_to_the_citizen_alone(life: Life) -> None:
    w = life.w
    t = w.now - HOUR
    w.apply(life.alice.checkin(w.now, [(life.qr("cafe"), t), (life.qr("cinema-12"), t + 5)]))
    recs = life.alice.my_records(w.state)
    assert [r["type"] for r in recs] == ["checkin", "checkin"]
    for r in recs:
        assert list(r["holders"]) == ["subject"] and r["writer"] is None
        assert len(r["record_id"]) == len(recs[0]["record_id"])
    # the same ciphertext size whatever the venue's id: its length does not show
    assert len({len(r["ciphertext"]) for r in recs}) == 1
    assert dq.held_records(w.state, 4) == []  # not even the venue's institution holds a key
    mine = life.alice.my_checkins(w.state)
    assert {(c["venue_id"], c["t_ms"]) for c in mine} == {("cafe", t), ("cinema-12", t + 5)}
    with pytest.raises(RecordCryptoError):
        life.mall.read_record(w.state, recs[0]["record_id"])
    with pytest.raises(RecordCryptoError):
        life.bob.read_record(w.state, recs[0]["record_id"])


def test_checkin_refusals(life: Life) -> None:
    w = life.w
    ok = life.alice.checkin(w.now, [(life.qr(), w.now)], record_ids=["ci-1"])
    w.refused(life.mall.tx("checkin.record", ok.payload, w.now), "subject's own key")
    # an envelope also sealed to an institution is refused: check-ins are hers alone
    env = life.hospital.seal_record("ci-2", life.alice.verify_key, "checkin", {"v": 1})
    w.refused(life.alice.tx("checkin.record", {"records": [env]}, w.now), "exactly 'subject'")
    w.refused(life.alice.tx("checkin.record", {"records": []}, w.now), "1..64 items")
    w.apply(ok)
    w.refused(life.alice.checkin(w.now, [(life.qr(), w.now)], record_ids=["ci-1"]), "already exists")
    with pytest.raises(ValueError):
        life.hospital.checkin(w.now, [(life.qr(), w.now)])
    # a day's worth at once fits one transaction
    w.apply(life.bob.checkin(w.now, [(life.qr("cinema-12"), w.now - i) for i in range(64)]))
    assert len(life.bob.my_checkins(w.state)) == 64


def test_travel_history_read_only_by_her_grant_or_a_logged_emergency(life: Life) -> None:
    w = life.w
    w.apply(life.alice.checkin(w.now, [(life.qr(), w.now - HOUR)], record_ids=["ci-A"]))
    # another citizen cannot hand her key over; an institution holds none to hand
    share = {"record_id": "ci-A", "grantee": 2, "sealed_key": bytes(80), "basis": "emergency"}
    w.refused(life.bob.tx("access.share", share, w.now), "neither a member nor this record's")
    w.refused(life.mall.tx("access.share", share, w.now), "does not hold the key")
    w.refused(life.alice.tx("access.share", share, w.now), "no open emergency authorisation")
    # under her grant, her app reseals the key to the authority
    w.apply(life.alice.grant(w.now, grant_id="G1", grantee=2, record_types=["checkin"],
                             purpose="tracing", expiry_ms=w.now + DAY))
    w.apply(life.alice.share(w.state, w.now, record_id="ci-A", grantee=2, grant_id="G1",
                             purpose="tracing"))
    assert life.cdc.read_record(w.state, "ci-A")["venue_id"] == "cafe"
    # an emergency request is logged with its reason, and honoured by her app
    w.apply(life.alice.checkin(w.now, [(life.qr(), w.now - HOUR)], record_ids=["ci-B"]))
    cdc2 = w.member("cdc-2", 5, "authority")
    w.apply(cdc2.emergency(w.now, record_id="ci-B", reason="outbreak at the cafe"))
    w.apply(life.alice.fulfil_emergency(w.state, w.now, record_id="ci-B", authority=5))
    assert cdc2.read_record(w.state, "ci-B")["venue_id"] == "cafe"
    log = life.alice.my_access_log(w.state)
    assert [(e["kind"], e["by"], e["purpose"]) for e in log] == [
        ("share", "subject", "tracing"),
        ("emergency", 5, "emergency"),
        ("share", "subject", "emergency"),
    ]
    # and she may erase a check-in for good
    w.apply(life.alice.erase(w.now, record_id="ci-B"))
    assert dq.held_records(w.state, 5) == []


# ---------------------------------------------------------------- exposures


def test_exposure_publish_refusals(life: Life) -> None:
    w = life.w
    good = exposure_publish_payload("E1", "cafe", w.now - 2 * HOUR, w.now - HOUR, "high")
    w.refused(life.lab.tx("exposure.publish", good, w.now), "lacks role authority")
    w.refused(life.cdc.tx("exposure.publish", dict(good, venue_id="nowhere"), w.now),
              "not registered")
    w.refused(life.cdc.tx("exposure.publish", dict(good, to_ms=w.now + 1), w.now), "after the block")
    w.refused(life.cdc.tx("exposure.publish", dict(good, from_ms=w.now - HOUR, to_ms=w.now - 2 * HOUR),
                          w.now), "after from_ms")
    w.refused(life.cdc.tx("exposure.publish", dict(good, from_ms=w.now - 9 * DAY), w.now),
              "longer than 7 days")
    w.refused(life.cdc.tx("exposure.publish", dict(good, level="extreme"), w.now), "level")
    w.apply(life.cdc.tx("exposure.publish", good, w.now))
    w.refused(life.cdc.tx("exposure.publish", good, w.now), "already published")


def test_declared_exposure_turns_yellow_and_refusals(life: Life) -> None:
    w = life.w
    w.refused(life.alice.declare_exposure(w.now, "E1"), "was not published")
    life.publish()
    w.refused(life.mall.tx("exposure.declare", {"exposure_id": "E1"}, w.now), "subject's own key")
    tx = life.declare()
    code = life.code()
    assert code["colour"] == "yellow" and code["source"] == "exposure"
    assert code["cause_tx"] == tx.hash and "E1" in str(code["reason"])
    w.refused(life.alice.declare_exposure(w.now, "E1"), "already declared")
    assert life.colour(life.bob) == "green"  # nothing about anyone else
    # expired: its quarantine period after the window is over
    w.now += QUARANTINE
    w.refused(life.bob.declare_exposure(w.now, "E1"), "expired")


def test_declare_needs_rules_with_the_lifecycle() -> None:
    life = Life({"healthcode": 1, "privacy": 1})
    life.publish()
    life.w.refused(life.alice.declare_exposure(life.w.now, "E1"), "version 1 has no exposures")


def test_quarantine_ends_on_block_time_and_is_written_by_the_next_touch(life: Life) -> None:
    w = life.w
    life.publish(end=w.now - HOUR)
    decl = life.declare()
    end = w.now - HOUR + QUARANTINE
    assert effective_health_code(w.state, life.alice.pseudonym, end - 1)["colour"] == "yellow"
    eff = effective_health_code(w.state, life.alice.pseudonym, end)
    assert eff["colour"] == "green" and eff["cause_tx"] == decl.hash and eff["since_ms"] == end
    # nothing ran at `end`: the stored code is still yellow, the query derives green
    w.now = end + DAY
    life.publish("E2", start=w.now - 5 * HOUR, end=w.now - 4 * HOUR)  # a block at the new time
    assert dq.health_code(w.state, life.alice.pseudonym)["colour"] == "yellow"  # type: ignore[index]
    assert life.colour() == "green"
    hist = health_code_history(w.state, life.alice.pseudonym)
    assert hist[-1]["event"] == "quarantine.end" and hist[-1]["derived"] is True
    # the next transaction touching her code writes the change first, with its cause
    life.result("negative", w.now)
    hist = health_code_history(w.state, life.alice.pseudonym)
    assert [e["event"] for e in hist] == ["exposure.declare", "quarantine.end", "lab.result"]
    assert hist[1]["cause_tx"] == decl.hash and "derived" not in hist[1]
    assert hist[1]["effective_ms"] == end and hist[1]["colour"] == "green"


def test_negative_sampled_after_the_exposure_ends_the_yellow(life: Life) -> None:
    w = life.w
    life.publish(end=w.now - HOUR)
    life.declare()
    life.result("negative", w.now - 2 * HOUR)  # sampled during the exposure window: no
    assert life.colour() == "yellow"
    tx = life.result("negative", w.now)
    code = life.code()
    assert code["colour"] == "green" and code["source"] == "lab" and code["cause_tx"] == tx.hash
    assert "after exposure E1" in str(code["reason"])


def test_positive_turns_yellow_red_and_a_later_exposure_keeps_red(life: Life) -> None:
    w = life.w
    life.publish()
    life.declare()
    life.result("positive", w.now)
    assert life.colour() == "red"
    life.publish("E2")
    life.declare(eid="E2")
    assert life.colour() == "red"
    assert health_code_history(w.state, life.alice.pseudonym)[-1]["changed"] is False


def test_second_exposure_extends_the_quarantine(life: Life) -> None:
    w = life.w
    life.publish("E1", start=w.now - 5 * HOUR, end=w.now - 4 * HOUR)
    life.publish("E2", start=w.now - 2 * HOUR, end=w.now - HOUR)
    life.declare(eid="E1")
    life.declare(eid="E2")
    until = life.code()["exposure"]["until_ms"]  # type: ignore[index]
    assert until == w.now - HOUR + QUARANTINE


def test_red_needs_the_rules_number_of_negatives_at_the_interval(life: Life) -> None:
    w = life.w
    t_pos = w.now
    life.result("positive", t_pos)
    w.now += 30 * DAY
    start = t_pos + V2["green_after_days"] * DAY
    life.result("negative", start - HOUR)  # too early: does not count
    life.result("negative", start)
    assert life.colour() == "red"
    life.result("negative", start + V2["negative_interval_hours"] * HOUR - 1)  # too close
    assert life.colour() == "red"
    tx = life.result("negative", start + V2["negative_interval_hours"] * HOUR)
    code = life.code()
    assert code["colour"] == "green" and code["cause_tx"] == tx.hash
    assert "2 negative tests" in str(code["reason"])
    # a new positive makes it red again, and the old negatives no longer count
    life.result("positive", w.now)
    life.result("negative", w.now)
    assert life.colour() == "red"


def test_authority_red_is_lifted_only_by_an_authority(life: Life) -> None:
    w = life.w
    w.apply(life.cdc.tx("healthcode.set", healthcode_set_payload(life.alice.pseudonym, "red",
                                                                 "confirmed case"), w.now))
    w.now += 20 * DAY
    for d in (10, 8, 6):
        life.result("negative", w.now - d * DAY)
    assert life.colour() == "red"
    rec = recovery_payload(life.alice.pseudonym, w.now, "discharged")
    w.refused(life.hospital.tx("recovery.record", rec, w.now), "only an authority lifts it")


def test_authority_green_during_lab_red_needs_override(life: Life) -> None:
    w = life.w
    life.result("positive", w.now)
    green = healthcode_set_payload(life.alice.pseudonym, "green", "cleared")
    w.refused(life.cdc.tx("healthcode.set", green, w.now), "set override")
    tx = life.cdc.tx("healthcode.set", dict(green, override=True), w.now)
    w.apply(tx)
    assert life.code()["cause_tx"] == tx.hash and life.code()["source"] == "authority"


def test_authority_yellow_does_not_expire(life: Life) -> None:
    w = life.w
    w.apply(life.cdc.tx("healthcode.set", healthcode_set_payload(life.alice.pseudonym, "yellow",
                                                                 "close contact"), w.now))
    assert effective_health_code(w.state, life.alice.pseudonym, w.now + 400 * DAY)["colour"] == "yellow"


def test_recovery_lifts_a_lab_red(life: Life) -> None:
    w = life.w
    rec = recovery_payload(life.alice.pseudonym, w.now, "discharged")
    w.refused(life.hospital.tx("recovery.record", rec, w.now), "not red")
    t_pos = w.now
    life.result("positive", t_pos)
    w.refused(life.lab.tx("recovery.record", rec, w.now), "lacks role hospital")
    w.refused(life.hospital.tx("recovery.record", dict(rec, recovered_ms=t_pos - 1), w.now),
              "before the last positive")
    w.refused(life.hospital.tx("recovery.record", dict(rec, recovered_ms=w.now + 1), w.now),
              "after the block")
    tx = life.hospital.tx("recovery.record", rec, w.now)
    w.apply(tx)
    code = life.code()
    assert code["colour"] == "green" and code["source"] == "recovery" and code["cause_tx"] == tx.hash
    # a recovered subject's green needs no override, and a negative changes nothing
    life.result("negative", w.now)
    w.apply(life.cdc.tx("healthcode.set", healthcode_set_payload(life.alice.pseudonym, "green",
                                                                 "confirm"), w.now))
    assert life.colour() == "green"


def test_recovery_needs_rules_with_the_lifecycle() -> None:
    life = Life({"healthcode": 1, "privacy": 1})
    life.result("positive", life.w.now)
    rec = recovery_payload(life.alice.pseudonym, life.w.now, "discharged")
    life.w.refused(life.hospital.tx("recovery.record", rec, life.w.now), "version 1 has no")


def test_every_change_names_its_reason_and_transaction(life: Life) -> None:
    w = life.w
    life.publish()
    life.declare()
    life.result("positive", w.now)
    w.apply(life.hospital.tx("recovery.record",
                             recovery_payload(life.alice.pseudonym, w.now, "discharged"), w.now))
    hist = health_code_history(w.state, life.alice.pseudonym)
    changes = [e for e in hist if e["changed"]]
    assert [e["colour"] for e in changes] == ["yellow", "red", "green"]
    for e in changes:
        assert e["reason"] and len(e["tx_hash"]) == 32 and e["rules_version"] == 2


def test_v1_default_genesis_still_behaves_as_before() -> None:
    """Version 1 is untouched: one negative 14 days after the positive clears a lab red."""
    life = Life({"healthcode": 1, "privacy": 1})
    t = life.w.now
    life.result("positive", t)
    life.w.now += 30 * DAY
    life.result("negative", t + 14 * DAY)
    assert life.colour() == "green"
    assert "cause_tx" not in dq.health_code(life.w.state, life.alice.pseudonym)  # type: ignore[operator]



def test_simulator_workload_registers_venues() -> None:
    """The deterministic simulator's workload can include venue.register (its generator)."""
    world = LedgerWorld(3, 0, [("venue.register", 1.0)])
    c = LocalChain(genesis=(world.genesis, world.secrets))
    txs = [world.decode(world.next_tx("venue.register")) for _ in range(5)]
    assert all(v.applied for v in c.run(txs).verdicts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40 * 24)), min_size=1, max_size=12))
def test_lab_only_colour_follows_the_v2_rule(results: list[tuple[bool, int]]) -> None:
    """Lab results only, in any arrival order (sample times in hours): the code is red
    exactly when there is a positive and fewer than `red_negatives` negatives sampled
    `green_after_days` after the latest positive, `negative_interval_hours` apart."""
    life = Life()
    base = life.w.now
    life.w.now = base + 41 * DAY
    for positive, hour in results:
        life.result("positive" if positive else "negative", base + hour * HOUR)
    pos = [base + h * HOUR for p, h in results if p]
    neg = sorted(base + h * HOUR for p, h in results if not p)
    count, prev = 0, None
    if pos:
        for n in neg:  # the longest chain of spaced negatives after the start (greedy)
            if n >= max(pos) + V2["green_after_days"] * DAY and (
                prev is None or n >= prev + V2["negative_interval_hours"] * HOUR
            ):
                count, prev = count + 1, n
    assert life.colour() == ("red" if pos and count < V2["red_negatives"] else "green")


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=120).map(
    lambda b: "HZV1." + base64.urlsafe_b64encode(b).decode())))
def test_a_scanned_text_is_a_venue_qr_or_a_typed_error(text: str) -> None:
    try:
        qr = parse_venue_qr(text, "hzp2p-test")
    except VenueQRError:
        return
    assert isinstance(qr, VenueQR)  # (only a validly signed code gets here)
