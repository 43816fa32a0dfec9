"""Reading intervals (cold-chain rules v3): `lot.monitor`, "readings overdue" on block time,
and the time-driven events of `admin watch` (overdue readings, overdue appeals)."""

from __future__ import annotations

import pytest
from domain_helpers import DAY, World, key

from hzp2p.client import (
    appeal_payload,
    coldchain_readings_payload,
    lab_result_payload,
    lot_register_payload,
    lot_transfer_payload,
    sensor_register_payload,
)
from hzp2p.contracts import vaccine_views as vv
from hzp2p.contracts.codelife import HEALTHCODE_RULES
from hzp2p.contracts.events import time_events
from hzp2p.ledger.genesis import DEFAULT_RULES

MIN = 60_000


class Site:
    def __init__(self, coldchain: int = 3) -> None:
        w = self.w = World({"healthcode": 2, "privacy": 1, "coldchain": coldchain})
        self.maker = w.member("maker", 1, "manufacturer")
        self.site = w.member("site", 2, "vaccination_site")
        self.other = w.member("carrier", 3, "carrier")
        self.sensor = key("fridge")
        w.apply(self.maker.tx("lot.register", lot_register_payload(
            "L1", "covax", 10, w.now + 90 * DAY, 200, 800), w.now))
        w.apply(self.maker.tx("lot.transfer", lot_transfer_payload("L1", 2), w.now))
        w.apply(self.site.tx("sensor.register", sensor_register_payload(
            "F1", bytes(self.sensor.verify_key)), w.now))

    def monitor(self, interval_ms: int) -> None:
        self.w.apply(self.site.tx("lot.monitor", {"lot_id": "L1", "interval_ms": interval_ms},
                                  self.w.now))

    def reading(self, t_ms: int, temp: int = 500) -> None:
        p = coldchain_readings_payload(self.sensor, "F1", "L1", [(t_ms, temp)])
        self.w.apply(self.site.tx("coldchain.readings", p, self.w.now))

    def tick(self, ms: int) -> tuple[int, int, int]:
        """Advance the clock and commit a block (a reading-less transaction): its
        (height, time, previous block time)."""
        prev = self.w.now
        self.w.now += ms
        self.w.apply(self.maker.tx("lot.register", lot_register_payload(
            f"X{self.w.now}", "flu", 1, self.w.now + DAY, 200, 800), self.w.now))
        return self.height(), self.w.now, prev

    def height(self) -> int:
        from hzp2p.contracts.domain_queries import head_of

        return head_of(self.w.state)[0]

    def overdue(self) -> bool:
        summary = vv.lot_summary(self.w.state, "L1", self.w.now)
        assert summary is not None
        return bool(summary["readings"]["overdue"])


def test_new_chains_name_rules_v3() -> None:
    assert DEFAULT_RULES["coldchain"] == 3


def test_monitor_is_refused_before_v3_and_checked() -> None:
    old = Site(coldchain=2)
    old.w.refused(old.site.tx("lot.monitor", {"lot_id": "L1", "interval_ms": 10 * MIN},
                              old.w.now), "needs coldchain rules version 3")
    s = Site()
    for who, payload, says in (
        (s.maker, {"lot_id": "L1", "interval_ms": 10 * MIN}, "not the custodian"),
        (s.site, {"lot_id": "NOPE", "interval_ms": 10 * MIN}, "unknown lot"),
        (s.site, {"lot_id": "L1", "interval_ms": 10}, "interval_ms must be 0"),
        (s.site, {"lot_id": "L1", "interval_ms": 0}, "is not monitored"),
    ):
        s.w.refused(who.tx("lot.monitor", payload, s.w.now), says)


def test_a_lot_whose_readings_stopped_is_overdue_on_block_time() -> None:
    s = Site()
    summary = vv.lot_summary(s.w.state, "L1", s.w.now)
    assert summary is not None and summary["readings"]["interval_ms"] is None
    s.monitor(10 * MIN)
    assert not s.overdue()
    h, t, prev = s.tick(9 * MIN)
    assert not s.overdue() and time_events(s.w.state, h, t, prev, {}) == []
    s.reading(s.w.now - MIN)  # the fridge reports: the deadline moves on
    h, t, prev = s.tick(5 * MIN)
    assert not s.overdue()
    h, t, prev = s.tick(4 * MIN)  # exactly 10 min after the reading: not yet
    assert not s.overdue() and time_events(s.w.state, h, t, prev, {}) == []
    h, t, prev = s.tick(2 * MIN)
    assert s.overdue()
    (ev,) = time_events(s.w.state, h, t, prev, {})
    assert (ev["type"], ev["lot_id"], ev["height"], ev["interval_ms"]) == (
        "overdue", "L1", h, 10 * MIN)
    assert ev["due_ms"] < t and ev["last_t_ms"] is not None
    h2, t2, prev2 = s.tick(MIN)  # still overdue: no second event
    assert s.overdue() and time_events(s.w.state, h2, t2, prev2, {}) == []
    assert time_events(s.w.state, h, t, prev, {}) == [ev]  # the past block, judged again
    s.reading(s.w.now)
    assert not s.overdue()
    s.w.apply(s.site.tx("lot.monitor", {"lot_id": "L1", "interval_ms": 0}, s.w.now))
    s.tick(60 * MIN)
    assert not s.overdue()  # no longer monitored


def test_a_recalled_lot_needs_no_readings() -> None:
    s = Site()
    s.monitor(MIN)
    s.w.apply(s.maker.tx("lot.recall", {"lot_id": "L1", "reason": "defect"}, s.w.now))
    s.tick(10 * MIN)
    assert not s.overdue()


def test_an_appeal_past_its_limit_is_an_event_once() -> None:
    s = Site()
    lab = s.w.member("lab", 4, "lab")
    alice = s.w.citizen("alice")
    s.w.apply(lab.tx("lab.result", lab_result_payload(alice.pseudonym, "T1", "positive",
                                                      s.w.now), s.w.now))
    s.w.apply(alice.tx("healthcode.appeal", appeal_payload(
        alice.pseudonym, "A1", 0, "not_my_sample", None), s.w.now))
    limit = HEALTHCODE_RULES[2]["appeal_limit_days"] * DAY
    h, t, prev = s.tick(limit - MIN)
    assert time_events(s.w.state, h, t, prev, {}) == []
    h, t, prev = s.tick(2 * MIN)
    (ev,) = time_events(s.w.state, h, t, prev, {})
    assert (ev["type"], ev["subject"], ev["appeal_id"]) == (
        "appeal_overdue", alice.pseudonym, "A1")
    h, t, prev = s.tick(MIN)
    assert time_events(s.w.state, h, t, prev, {}) == []


@pytest.mark.parametrize("interval", [1000, 30 * 86_400_000])
def test_interval_bounds_accepted(interval: int) -> None:
    s = Site()
    s.monitor(interval)
