"""Vaccination contract: lot checks, custody, dose order, remaining doses, encrypted record."""

from __future__ import annotations

import pytest
from domain_helpers import DAY, World, key

from hzp2p.client import (
    Client,
    coldchain_readings_payload,
    lot_recall_payload,
    lot_register_payload,
    lot_transfer_payload,
    sensor_register_payload,
)
from hzp2p.contracts import domain_queries as dq
from hzp2p.crypto.records import pseudonym
from hzp2p.ledger.tx import Transaction


class Clinic:
    def __init__(self, quantity: int = 100) -> None:
        w = self.w = World()
        self.maker = w.member("maker", 1, "manufacturer")
        self.carrier = w.member("carrier", 2, "carrier")
        self.site = w.member("site", 3, "vaccination_site")
        self.site2 = w.member("site-b", 4, "vaccination_site")
        self.hospital = w.member("hospital", 5, "hospital")
        self.alice = w.citizen("alice")
        self.expiry = w.now + 30 * DAY
        for lot in ("L1", "L2"):
            p = lot_register_payload(lot, "covax", quantity, self.expiry, 200, 800)
            w.apply(self.maker.tx("lot.register", p, w.now))
        w.apply(self.maker.tx("lot.transfer", lot_transfer_payload("L1", 2), w.now))
        w.apply(self.carrier.tx("lot.transfer", lot_transfer_payload("L1", 3), w.now))

    def vax(
        self,
        dose: int,
        lot: str = "L1",
        site: Client | None = None,
        rid: str = "",
        when: int | None = None,
    ) -> None:
        s = site or self.site
        self.w.apply(self.tx(dose, lot, s, rid, when))

    def tx(
        self,
        dose: int,
        lot: str = "L1",
        site: Client | None = None,
        rid: str = "",
        when: int | None = None,
    ) -> Transaction:
        s = site or self.site
        return s.vaccination_record(
            self.w.now,
            record_id=rid or f"vax-{lot}-{dose}",
            subject_verify_key=self.alice.verify_key,
            lot_id=lot,
            dose=dose,
            administered_ms=self.w.now if when is None else when,
            fields={"name": "Alice Example", "birth_year": 1990, "arm": "left"},
        )


@pytest.fixture
def c() -> Clinic:
    return Clinic()


def test_record_decrements_and_is_readable_by_subject_and_site(c: Clinic) -> None:
    c.vax(1)
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None and lot["remaining"] == 99
    doses = dq.doses(c.w.state, pseudonym(c.alice.verify_key))
    assert [(d["dose"], d["lot_id"], d["site"]) for d in doses] == [(1, "L1", 3)]
    assert c.alice.read_record(c.w.state, "vax-L1-1")["name"] == "Alice Example"
    assert c.site.read_record(c.w.state, "vax-L1-1")["arm"] == "left"
    rec = dq.record(c.w.state, "vax-L1-1")
    assert rec is not None and b"Alice" not in rec["ciphertext"]
    c.vax(2)
    lot = dq.lot(c.w.state, "L1")
    assert lot is not None and lot["remaining"] == 98


def test_refused_for_non_site_unknown_lot_and_custody(c: Clinic) -> None:
    c.w.refused(c.tx(1, site=c.hospital), "lacks role vaccination_site")
    c.w.refused(c.tx(1, lot="L9"), "unknown lot")
    c.w.refused(c.tx(1, lot="L2"), "not in the custody of site 3")
    c.w.refused(c.tx(1, site=c.site2), "not in the custody of site 4")


def test_refused_for_expired_lot(c: Clinic) -> None:
    c.w.now = c.expiry
    c.w.refused(c.tx(1), "expired")


def test_refused_for_recalled_lot(c: Clinic) -> None:
    c.w.apply(c.maker.tx("lot.recall", lot_recall_payload("L1", "bad batch"), c.w.now))
    c.w.refused(c.tx(1), "is recalled")


def test_refused_for_quarantined_lot(c: Clinic) -> None:
    sensor = key("sensor")
    w = c.w
    w.apply(
        c.carrier.tx(
            "sensor.register", sensor_register_payload("S1", bytes(sensor.verify_key)), w.now
        )
    )
    batch = coldchain_readings_payload(sensor, "S1", "L1", [(w.now - 1000, 1200)])
    w.apply(c.carrier.tx("coldchain.readings", batch, w.now))
    w.refused(c.tx(1), "is quarantined")


def test_refused_when_no_doses_remain() -> None:
    c = Clinic(quantity=1)
    c.vax(1)
    c.w.refused(c.tx(2), "no doses remaining")


def test_dose_order(c: Clinic) -> None:
    c.w.refused(c.tx(2), "needs dose 1 recorded first")
    c.vax(1)
    c.w.refused(c.tx(1, rid="again"), "dose 1 of covax already recorded")
    c.w.refused(c.tx(2, when=c.w.now - 1), "administered before dose 1")
    c.w.refused(c.tx(0), "dose out of range")
    c.vax(2)


def test_record_envelope_is_checked(c: Clinic) -> None:
    tx = c.tx(1)
    payload = dict(tx.payload)
    rec = dict(payload["record"])
    rec["sealed_keys"] = {**rec["sealed_keys"], "inst:5": rec["sealed_keys"]["inst:3"]}
    c.w.refused(
        c.site.tx("vaccination.record", dict(payload, record=rec), c.w.now),
        "must seal the key to exactly",
    )
    rec = dict(payload["record"], ciphertext=b"short")
    c.w.refused(c.site.tx("vaccination.record", dict(payload, record=rec), c.w.now), "ciphertext")
    c.vax(1)
    c.w.refused(c.tx(1, lot="L1", rid="vax-L1-1"), "already")
