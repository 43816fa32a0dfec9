"""Cold-chain contract: sensors, signed readings, automatic quarantine."""

from __future__ import annotations

import pytest
from domain_helpers import DAY, World, key
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.admin.cli import payload_from_json
from hzp2p.client import (
    coldchain_readings_payload,
    lot_register_payload,
    lot_transfer_payload,
    sensor_register_payload,
    temperature_history,
)
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts.api import TxRejected


class Chain:
    def __init__(self) -> None:
        w = self.w = World()
        self.maker = w.member("maker", 1, "manufacturer")
        self.carrier = w.member("carrier", 2, "carrier")
        self.other = w.member("carrier-b", 3, "carrier")
        self.sensor = key("sensor-1")
        p = lot_register_payload("L1", "covax", 100, w.now + 90 * DAY, 200, 800)
        w.apply(self.maker.tx("lot.register", p, w.now))
        w.apply(self.maker.tx("lot.transfer", lot_transfer_payload("L1", 2), w.now))
        reg = sensor_register_payload("S1", bytes(self.sensor.verify_key))
        w.apply(self.carrier.tx("sensor.register", reg, w.now))

    def batch(self, readings: list[tuple[int, int]], sensor_id: str = "S1") -> dict[str, object]:
        return coldchain_readings_payload(self.sensor, sensor_id, "L1", readings)


@pytest.fixture
def c() -> Chain:
    return Chain()


def test_sensor_register_rules(c: Chain) -> None:
    vk = bytes(key("s2").verify_key)
    c.w.refused(
        c.maker.tx("sensor.register", sensor_register_payload("S2", vk), c.w.now),
        "lacks role carrier",
    )
    c.w.refused(
        c.other.tx("sensor.register", sensor_register_payload("S1", vk), c.w.now),
        "already registered",
    )
    c.w.refused(
        c.carrier.tx("sensor.register", sensor_register_payload("S2", b"x"), c.w.now), "verify_key"
    )
    c.w.refused(c.other.tx("sensor.revoke", {"sensor_id": "S1"}, c.w.now), "not registered to")


def test_in_range_readings_kept_in_time_order(c: Chain) -> None:
    now = c.w.now
    c.w.apply(c.carrier.tx("coldchain.readings", c.batch([(now - 10, 500), (now - 30, 450)]), now))
    c.w.apply(c.carrier.tx("coldchain.readings", c.batch([(now - 20, 600)]), now))
    hist = temperature_history(c.w.state, "L1")
    assert [(r["t_ms"], r["temp_centi_c"]) for r in hist] == [
        (now - 30, 450),
        (now - 20, 600),
        (now - 10, 500),
    ]
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None and lot["status"] == "active" and lot["quarantine"] is None


def test_out_of_range_quarantines_with_evidence(c: Chain) -> None:
    now = c.w.now
    batch = c.batch([(now - 50, 500), (now - 10, 950), (now - 20, 150), (now - 5, 100)])
    c.w.apply(c.carrier.tx("coldchain.readings", batch, now))
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None and lot["status"] == "quarantined"
    ev = lot["quarantine"]
    assert (ev["sensor_id"], ev["t_ms"], ev["temp_centi_c"]) == ("S1", now - 20, 150)
    assert ev["allowed_centi_c"] == [200, 800]
    assert dq.lot_events(c.w.state, "L1")[-1]["kind"] == "quarantine"
    assert len(temperature_history(c.w.state, "L1")) == 4
    # Later breaches keep the first evidence; readings are still recorded.
    c.w.apply(c.carrier.tx("coldchain.readings", c.batch([(now - 1, 2000)]), now))
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None and lot["quarantine"]["t_ms"] == now - 20
    assert len(temperature_history(c.w.state, "L1")) == 5


def test_boundaries_are_inside_the_range(c: Chain) -> None:
    now = c.w.now
    c.w.apply(c.carrier.tx("coldchain.readings", c.batch([(now, 200), (now, 800)]), now))
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None and lot["status"] == "active"


def test_readings_refusals(c: Chain) -> None:
    w, now = c.w, c.w.now
    good = c.batch([(now - 1, 500)])
    forged = dict(good, signature=bytes(64))
    w.refused(c.carrier.tx("coldchain.readings", forged, now), "signature does not verify")
    tampered = c.batch([(now - 1, 500)])
    tampered["readings"] = [{"sensor_id": "S1", "t_ms": now - 1, "temp_centi_c": 900}]
    w.refused(c.carrier.tx("coldchain.readings", tampered, now), "signature does not verify")
    w.refused(c.other.tx("coldchain.readings", good, now), "not registered to carrier 3")
    w.refused(c.maker.tx("coldchain.readings", good, now), "lacks role carrier")
    w.refused(
        c.carrier.tx("coldchain.readings", c.batch([(now - 1, 5)], "S9"), now), "unknown sensor"
    )
    future = c.batch([(now + 1, 500)])
    w.refused(c.carrier.tx("coldchain.readings", future, now), "not after the block")
    mixed = dict(good, readings=[{"sensor_id": "S2", "t_ms": now - 1, "temp_centi_c": 500}])
    w.refused(c.carrier.tx("coldchain.readings", mixed, now), "not the batch.s sensor_id")
    w.refused(c.carrier.tx("coldchain.readings", dict(good, readings=[]), now), "1..1000")
    w.apply(c.carrier.tx("coldchain.readings", good, now))
    w.refused(c.carrier.tx("coldchain.readings", good, now), "already recorded")


def test_carrier_must_have_had_custody(c: Chain) -> None:
    sk = key("sensor-b")
    w, now = c.w, c.w.now
    w.apply(c.other.tx("sensor.register", sensor_register_payload("SB", bytes(sk.verify_key)), now))
    batch = coldchain_readings_payload(sk, "SB", "L1", [(now - 1, 500)])
    w.refused(c.other.tx("coldchain.readings", batch, now), "never had custody")
    # A past custodian may still upload (e.g. on delivery).
    w.apply(c.carrier.tx("lot.transfer", lot_transfer_payload("L1", 3), now))
    w.apply(c.carrier.tx("coldchain.readings", c.batch([(now - 2, 500)]), now))
    w.apply(c.other.tx("coldchain.readings", batch, now))


def test_revoked_sensor_refused(c: Chain) -> None:
    now = c.w.now
    c.w.apply(c.carrier.tx("sensor.revoke", {"sensor_id": "S1"}, now))
    c.w.refused(c.carrier.tx("coldchain.readings", c.batch([(now, 500)]), now), "was revoked")


def test_authority_may_release_a_quarantine(c: Chain) -> None:
    auth = c.w.member("cdc", 9, "authority")
    now = c.w.now
    release = {"lot_id": "L1", "reason": "sensor fault confirmed"}
    c.w.refused(auth.tx("lot.release", release, now), "not quarantined")
    c.w.apply(c.carrier.tx("coldchain.readings", c.batch([(now, 1500)]), now))
    c.w.refused(c.carrier.tx("lot.release", release, now), "lacks role authority")
    c.w.apply(auth.tx("lot.release", release, now))
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None and lot["status"] == "active"
    last = dq.lot_events(c.w.state, "L1")[-1]
    assert last["kind"] == "release" and last["evidence"]["temp_centi_c"] == 1500


@settings(max_examples=60)
@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(0, 10_000), st.integers(-500, 1500)), min_size=1, max_size=8
        ),
        min_size=1,
        max_size=4,
    )
)
def test_quarantine_iff_a_reading_leaves_the_range(batches: list[list[tuple[int, int]]]) -> None:
    c = Chain()
    now = c.w.now
    first_breach = None
    for batch in batches:
        readings = [(now - t, temp) for t, temp in batch]
        p = c.batch(readings)
        try:
            c.w.apply(c.carrier.tx("coldchain.readings", p, now))
        except TxRejected as e:
            assert "already recorded" in e.reason  # an identical signed batch is a replay
            continue
        out = [(t, i, temp) for i, (t, temp) in enumerate(readings) if not 200 <= temp <= 800]
        if first_breach is None and out:
            first_breach = min(out)
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None
    if first_breach is None:
        assert lot["status"] == "active"
    else:
        assert lot["status"] == "quarantined"
        assert (lot["quarantine"]["t_ms"], lot["quarantine"]["temp_centi_c"]) == (
            first_breach[0],
            first_breach[2],
        )
    hist = temperature_history(c.w.state, "L1")
    assert [r["t_ms"] for r in hist] == sorted(r["t_ms"] for r in hist)


def test_sensor_register_from_an_admin_json_payload(c: Chain) -> None:
    """`hzp2p admin submit sensor.register --payload JSON`: the key as {"$hex": ...} (or
    {"$b64": ...}) becomes the bytes the contract requires; a bare hex string does not."""
    import base64
    import json

    vk = bytes(key("sensor-json").verify_key)
    as_hex = payload_from_json(json.dumps({"sensor_id": "SJ", "verify_key": {"$hex": vk.hex()}}))
    as_b64 = payload_from_json(
        json.dumps({"sensor_id": "SJ", "verify_key": {"$b64": base64.b64encode(vk).decode()}})
    )
    assert as_hex == as_b64 == sensor_register_payload("SJ", vk)
    c.w.refused(
        c.carrier.tx("sensor.register", {"sensor_id": "SJ", "verify_key": vk.hex()}, c.w.now),
        "verify_key must be bytes",
    )
    c.w.apply(c.carrier.tx("sensor.register", as_hex, c.w.now))
    stored = dq.sensor(c.w.state, "SJ")
    assert stored is not None and stored["verify_key"] == vk and stored["active"]


# ---------------------------------------------------------------- rules version 2 (issue 13)


def test_v2_readings_must_fall_in_the_uploaders_custody() -> None:
    """Readings dated before registration, in the future, or outside any period in which the
    uploading carrier held the lot are refused — and so cannot quarantine it."""
    w = World(rules={"healthcode": 1, "privacy": 1, "coldchain": 2})
    maker = w.member("maker", 1, "manufacturer")
    carrier = w.member("carrier", 2, "carrier")
    site = w.member("site", 3, "vaccination_site")
    sensor = key("sensor-v2")
    t_reg = w.now
    w.apply(maker.tx("lot.register", lot_register_payload("L1", "covax", 10, t_reg + 90 * DAY,
                                                          200, 800), w.now))
    w.now += 60_000
    t_in = w.now
    w.apply(maker.tx("lot.transfer", lot_transfer_payload("L1", 2), w.now))
    w.apply(carrier.tx("sensor.register",
                       sensor_register_payload("S1", bytes(sensor.verify_key)), w.now))
    w.now += 60_000
    t_out = w.now
    w.apply(carrier.tx("lot.transfer", lot_transfer_payload("L1", 3), w.now))
    w.now += 60_000

    def batch(t: int, temp: int = 500) -> dict[str, object]:
        return coldchain_readings_payload(sensor, "S1", "L1", [(t, temp)])

    w.refused(carrier.tx("coldchain.readings", batch(t_reg - 1, 5000), w.now),
              "dated before the lot was registered")
    w.refused(carrier.tx("coldchain.readings", batch(t_in - 1, 5000), w.now),
              "outside member 2's custody")  # the maker still held it
    w.refused(carrier.tx("coldchain.readings", batch(t_out + 1, 5000), w.now),
              "outside member 2's custody")  # the site held it by then
    w.refused(carrier.tx("coldchain.readings", batch(w.now + 6 * 60_000, 5000), w.now),
              "in the future")
    lot = dq.lot(w.state, "L1")
    assert lot is not None and lot["quarantine"] is None and lot["status"] == "active"
    # inside the custody period (uploaded after the hand-over): accepted, and it quarantines
    w.apply(carrier.tx("coldchain.readings", batch((t_in + t_out) // 2, 5000), w.now))
    lot = dq.lot(w.state, "L1")
    assert lot is not None and lot["status"] == "quarantined"
    assert site.inst_id == 3


def test_v1_chains_keep_their_rule() -> None:
    """A chain whose genesis names cold-chain rules version 1 judges as before."""
    c = Chain()  # World() names no coldchain version: version 1
    now = c.w.now
    c.w.apply(c.carrier.tx("coldchain.readings", c.batch([(now - 10_000_000, 500)]), now))


def test_lots_read_expired_past_expiry() -> None:
    w = World()
    maker = w.member("maker", 1, "manufacturer")
    w.apply(maker.tx("lot.register", lot_register_payload("L1", "covax", 5, w.now + DAY, 200,
                                                          800), w.now))
    lot = dq.lot(w.state, "L1")
    assert lot is not None and lot["status"] == "active"
    w.now += 2 * DAY
    # any block past the expiry moves the head's time; the lot then reads expired
    w.apply(maker.tx("lot.register", lot_register_payload("L2", "covax", 5, w.now + DAY, 200,
                                                          800), w.now))
    lot = dq.lot(w.state, "L1")
    assert lot is not None and lot["status"] == "expired"


def test_v2_any_custodian_registers_sensors_and_reports_for_lots_it_holds() -> None:
    """A clinic's fridge reports too (rules v2): the sensor's owner may be any custodian."""
    w = World(rules={"healthcode": 1, "privacy": 1, "coldchain": 2})
    maker = w.member("maker", 1, "manufacturer")
    site = w.member("site", 3, "vaccination_site")
    observer = w.member("observer", 4, "observer")
    fridge = key("fridge-1")
    w.apply(maker.tx("lot.register", lot_register_payload("L1", "covax", 10, w.now + 90 * DAY,
                                                          200, 800), w.now))
    w.refused(observer.tx("sensor.register",
                          sensor_register_payload("F0", bytes(fridge.verify_key)), w.now),
              "lacks role")
    w.apply(site.tx("sensor.register", sensor_register_payload("F1", bytes(fridge.verify_key)),
                    w.now))
    w.now += 1000
    t_in = w.now
    w.apply(maker.tx("lot.transfer", lot_transfer_payload("L1", 3), w.now))
    w.now += 1000
    ok = coldchain_readings_payload(fridge, "F1", "L1", [(t_in + 10, 450)])
    w.apply(site.tx("coldchain.readings", ok, w.now))
    early = coldchain_readings_payload(fridge, "F1", "L1", [(t_in - 10, 450)])
    w.refused(site.tx("coldchain.readings", early, w.now), "outside member 3's custody")
    assert [r["temp_centi_c"] for r in temperature_history(w.state, "L1")] == [450]
