"""The daemon's idempotent signing of submit requests (hzp2p.node.submit.IdempotentSigner)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from hzp2p.ledger.tx import check_envelope
from hzp2p.node.submit import DAY_MS, IdempotentSigner, SubmitError

KEY = SigningKey(bytes(range(32)))
CHAIN = "hzp2p-test"
T = 1_800_000_000_000  # some afternoon, UTC
PAYLOAD = {"report_id": "r1", "region": "north", "metric": "cases", "value": 3, "period": "p"}


def signer(now: list[int]) -> IdempotentSigner:
    return IdempotentSigner(KEY, CHAIN, clock_ms=lambda: now[0])


def test_same_request_same_transaction_and_valid_now() -> None:
    now = [T]
    s = signer(now)
    a = s.sign("epi.report", PAYLOAD, None)
    b = s.sign("epi.report", dict(reversed(list(PAYLOAD.items()))), None)
    assert a.hash == b.hash
    check_envelope(a, CHAIN, T)
    a.verify()
    assert s.sign("epi.report", PAYLOAD, "k1").hash != a.hash
    assert s.sign("epi.report", {**PAYLOAD, "value": 4}, None).hash != a.hash
    assert s.sign("epi.other", PAYLOAD, None).hash != a.hash


def test_restart_same_day_gives_the_same_hash() -> None:
    a = signer([T]).sign("epi.report", PAYLOAD, "k")
    b = signer([T + 3_600_000]).sign("epi.report", PAYLOAD, "k")
    assert a.hash == b.hash


def test_retry_across_midnight_keeps_the_hash() -> None:
    now = [T]
    s = signer(now)
    a = s.sign("epi.report", PAYLOAD, None)
    now[0] = T + DAY_MS
    assert s.sign("epi.report", PAYLOAD, None).hash == a.hash
    check_envelope(a, CHAIN, now[0])
    # A fresh node on another day signs anew (still valid at that time).
    c = signer([T + 3 * DAY_MS]).sign("epi.report", PAYLOAD, None)
    check_envelope(c, CHAIN, T + 3 * DAY_MS)


def test_unencodable_payload_is_a_submit_error() -> None:
    with pytest.raises(SubmitError):
        signer([T]).sign("epi.report", {"x": {1, 2}}, None)  # type: ignore[dict-item]


def test_bytes_from_a_json_payload_are_signed_as_bytes() -> None:
    """The admin CLI's {"$hex"}/{"$b64"} convention yields one transaction whichever is used."""
    import base64
    import json

    from hzp2p.admin.cli import payload_from_json

    vk = bytes(range(100, 132))
    s = signer([T])
    a = s.sign("sensor.register", payload_from_json(json.dumps({"sensor_id": "S1", "verify_key": {"$hex": vk.hex()}})), None)
    b = s.sign(
        "sensor.register",
        payload_from_json(json.dumps({"sensor_id": "S1", "verify_key": {"$b64": base64.b64encode(vk).decode()}})),
        None,
    )
    assert a.hash == b.hash and a.payload["verify_key"] == vk
    assert s.sign("sensor.register", {"sensor_id": "S1", "verify_key": vk.hex()}, None).hash != a.hash
