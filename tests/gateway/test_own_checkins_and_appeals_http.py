"""A citizen's check-ins, her code's history, her appeal and the published exposures over HTTP.

Regression: a check-in record has no writing institution and an appeal's access-log
entry names no record; GET /v1/me/records and /v1/me/access-log answered 500 for such a
citizen (found by the demo's story, issue 17). Her app finds the event number an appeal
names in GET /v1/me/health-code/history, and matches her check-ins against the public
GET /v1/exposures. A real daemon and `hzp2p gateway`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import nacl.signing
import pytest

from hzp2p.client import Client, lab_result_payload, make_venue_qr, parse_venue_qr
from hzp2p.gateway.client import GatewayClient, open_record
from hzp2p.tools.gatewayrun import AUTH, LAB, Gateway, running_gateway

pytestmark = pytest.mark.slow
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gw") / "c", credential_key=False) as g:
        yield g


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_her_check_ins_and_her_appeal_are_listed(gw: Gateway) -> None:
    venue = nacl.signing.SigningKey.generate()
    r = gw.cluster.submit(AUTH, "venue.register", {"venue_id": "hall",
                                                   "verify_key": bytes(venue.verify_key)})
    assert r["status"] == "committed", r
    alice = Client(nacl.signing.SigningKey.generate(), gw.chain_id)
    me = GatewayClient(gw.base_url, alice.key)
    qr = parse_venue_qr(make_venue_qr(venue, gw.chain_id, "hall", now_ms() // DAY_MS),
                        gw.chain_id)
    t = now_ms()
    assert me.post_tx(alice.checkin(t, [(qr, t)]).encode(), wait_s=10).json()["status"] == "committed"

    recs = me.get("/v1/me/records", subject=me.pseudonym)
    assert recs.status_code == 200, recs.text
    [rec] = recs.json()
    assert rec["type"] == "checkin" and rec["writer"] is None
    view = me.get(f"/v1/me/records/{rec['record_id']}", subject=me.pseudonym)
    assert view.status_code == 200 and view.json()["writer"] is None
    assert open_record(view.json(), alice.key)["venue_id"] == "hall"

    lab = gw.client(LAB)
    tx = lab.tx("lab.result", lab_result_payload(me.pseudonym, "T1", "positive", now_ms()),
                now_ms())
    assert gw.cluster.call(AUTH, "submit_raw", {"tx": tx.encode().hex(), "wait_s": 10},
                           timeout_s=15)["status"] == "committed"
    hist = me.get("/v1/me/health-code/history", subject=me.pseudonym)
    assert hist.status_code == 200, hist.text
    [event] = hist.json()
    assert (event["event"], event["colour"], event["seq"]) == ("lab.result", "red", 0)
    assert event["tx_hash"] == tx.hash.hex()
    appeal = alice.appeal(now_ms(), appeal_id="A1", event=event["seq"], reason="not_my_sample")
    assert me.post_tx(appeal.encode(), wait_s=10).json()["status"] == "committed"
    log = me.get("/v1/me/access-log", subject=me.pseudonym)
    assert log.status_code == 200, log.text
    assert [(e["kind"], e["record_id"]) for e in log.json()] == [("appeal", None)]


def test_published_exposures_are_public(gw: Gateway) -> None:
    venue = nacl.signing.SigningKey.generate()
    r = gw.cluster.submit(AUTH, "venue.register", {"venue_id": "cafe",
                                                   "verify_key": bytes(venue.verify_key)})
    assert r["status"] == "committed", r
    t = now_ms()
    r = gw.cluster.submit(AUTH, "exposure.publish", {
        "exposure_id": "E1", "venue_id": "cafe", "from_ms": t - 3_600_000, "to_ms": t - 1000,
        "level": "high"})
    assert r["status"] == "committed", r
    got = GatewayClient(gw.base_url).get("/v1/exposures", signed=False)
    assert got.status_code == 200, got.text
    [e] = got.json()
    assert (e["exposure_id"], e["venue_id"], e["level"], e["to_ms"]) == ("E1", "cafe", "high",
                                                                        t - 1000)
