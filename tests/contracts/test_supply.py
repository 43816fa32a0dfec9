"""Supply chain contract: lot registration, custody transfers, recalls."""

from __future__ import annotations

import pytest
from domain_helpers import DAY, World

from hzp2p.client import (
    Client,
    lot_custody,
    lot_recall_payload,
    lot_register_payload,
    lot_transfer_payload,
)
from hzp2p.contracts import domain_queries as dq


class Parties:
    def __init__(self) -> None:
        self.w = World()
        self.maker = self.w.member("maker", 1, "manufacturer")
        self.carrier = self.w.member("carrier", 2, "carrier")
        self.site = self.w.member("site", 3, "vaccination_site")
        self.auth = self.w.member("cdc", 4, "authority")
        self.observer = self.w.member("observer", 5, "observer")
        self.gone = self.w.member("gone", 6, "carrier", active=False)

    def register(self, lot_id: str = "L1", **kw: int) -> None:
        args = {"quantity": 100, "expiry_ms": self.w.now + 90 * DAY, "tmin": 200, "tmax": 800}
        args.update(kw)
        p = lot_register_payload(
            lot_id, "covax", args["quantity"], args["expiry_ms"], args["tmin"], args["tmax"]
        )
        self.w.apply(self.maker.tx("lot.register", p, self.w.now))

    def transfer(self, who: Client, to: int, lot_id: str = "L1") -> None:
        self.w.apply(who.tx("lot.transfer", lot_transfer_payload(lot_id, to), self.w.now))


@pytest.fixture
def p() -> Parties:
    return Parties()


def test_register_gives_manufacturer_custody(p: Parties) -> None:
    p.register()
    lot = dq.lot(p.w.state, "L1")
    assert lot is not None
    assert (lot["custodian"], lot["remaining"], lot["status"]) == (1, 100, "active")
    assert [e["kind"] for e in lot_custody(p.w.state, "L1")] == ["register"]


def test_register_refusals(p: Parties) -> None:
    w, now = p.w, p.w.now
    good = lot_register_payload("L1", "covax", 10, now + DAY, 200, 800)
    w.refused(p.carrier.tx("lot.register", good, now), "lacks role manufacturer")
    bad_range = lot_register_payload("L1", "covax", 10, now + DAY, 800, 200)
    w.refused(p.maker.tx("lot.register", bad_range, now), "temp_min_centi_c must be below")
    expired = lot_register_payload("L1", "covax", 10, now, 200, 800)
    w.refused(p.maker.tx("lot.register", expired, now), "expiry_ms")
    zero = lot_register_payload("L1", "covax", 0, now + DAY, 200, 800)
    w.refused(p.maker.tx("lot.register", zero, now), "quantity out of range")
    slash = lot_register_payload("L/1", "covax", 10, now + DAY, 200, 800)
    w.refused(p.maker.tx("lot.register", slash, now), "lot_id must match")
    w.apply(p.maker.tx("lot.register", good, now))
    w.refused(p.maker.tx("lot.register", good, now), "already registered")


def test_transfer_custody_chain(p: Parties) -> None:
    p.register()
    p.transfer(p.maker, 2)
    p.transfer(p.carrier, 3)
    chain = lot_custody(p.w.state, "L1")
    assert [(e["from"], e["to"]) for e in chain] == [(None, 1), (1, 2), (2, 3)]
    lot = dq.lot(p.w.state, "L1")
    assert lot is not None and lot["custodian"] == 3 and lot["custodians"] == [1, 2, 3]


def test_transfer_refusals(p: Parties) -> None:
    p.register()
    w, now = p.w, p.w.now
    w.refused(p.carrier.tx("lot.transfer", lot_transfer_payload("L1", 3), now), "not the custodian")
    w.refused(
        p.maker.tx("lot.transfer", lot_transfer_payload("L1", 99), now), "not an active member"
    )
    w.refused(
        p.maker.tx("lot.transfer", lot_transfer_payload("L1", 6), now), "not an active member"
    )
    w.refused(p.maker.tx("lot.transfer", lot_transfer_payload("L1", 5), now), "no custody role")
    w.refused(p.maker.tx("lot.transfer", lot_transfer_payload("L1", 1), now), "current custodian")
    w.refused(p.maker.tx("lot.transfer", lot_transfer_payload("L9", 2), now), "unknown lot")


def test_recalled_lot_only_returns_to_manufacturer(p: Parties) -> None:
    p.register()
    p.transfer(p.maker, 2)
    p.w.apply(p.auth.tx("lot.recall", lot_recall_payload("L1", "contamination"), p.w.now))
    p.w.refused(p.carrier.tx("lot.transfer", lot_transfer_payload("L1", 3), p.w.now), "recalled")
    p.transfer(p.carrier, 1)
    lot = dq.lot(p.w.state, "L1")
    assert lot is not None and lot["status"] == "recalled" and lot["custodian"] == 1


def test_recall_rules(p: Parties) -> None:
    p.register()
    w, now = p.w, p.w.now
    w.refused(
        p.carrier.tx("lot.recall", lot_recall_payload("L1", "x"), now),
        "manufacturer or an authority",
    )
    w.refused(p.maker.tx("lot.recall", lot_recall_payload("L1", " "), now), "reason must be")
    w.apply(p.maker.tx("lot.recall", lot_recall_payload("L1", "bad vials"), now))
    w.refused(p.auth.tx("lot.recall", lot_recall_payload("L1", "again"), now), "already recalled")
    events = dq.lot_events(w.state, "L1")
    assert events[-1]["kind"] == "recall" and events[-1]["reason"] == "bad vials"
