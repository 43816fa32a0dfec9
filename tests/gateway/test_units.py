"""Pure parts of the gateway: token buckets, the replay cache, request signing, the
credential format and the offline verifier (no processes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import base45
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hzp2p.contracts.credentials import key_id
from hzp2p.credentials import b45, cose, qr
from hzp2p.credentials.verify import TrustList, TrustListError, TrustListTooOld, verify
from hzp2p.gateway.auth import Authenticator, SignedRequest
from hzp2p.gateway.limits import ReplayCache, ReplayCacheFull, TokenBuckets
from hzp2p.gateway.metrics import GatewayMetrics
from hzp2p.gateway.problems import ApiProblem
from hzp2p.gateway.signing import sign_request

ISSUER = nacl.signing.SigningKey(b"\x01" * 32)
NOW_S = 1_800_000_000


def test_token_bucket_refills_at_its_rate_and_says_when() -> None:
    b = TokenBuckets(rate_per_s=2.0, burst=3)
    assert [b.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a", 0.0) == pytest.approx(0.5)
    assert b.take("b", 0.0) == 0.0  # buckets are per name
    assert b.take("a", 0.5) == 0.0
    assert b.take("a", 0.5) > 0


def test_token_buckets_are_bounded() -> None:
    b = TokenBuckets(rate_per_s=1.0, burst=1, max_entries=10)
    for i in range(100):
        b.take(str(i), 0.0)
    assert len(b) == 10


def test_replay_cache_refuses_a_nonce_twice_then_forgets_it_and_bounds_itself() -> None:
    c = ReplayCache(capacity=2, ttl_ms=1000)
    assert c.record(1, 0)
    assert not c.record(1, 500)
    assert c.record(2, 600)
    with pytest.raises(ReplayCacheFull):
        c.record(3, 700)
    assert c.record(3, 1001)  # 1 expired: room again
    assert len(c) == 2


def _auth() -> tuple[Authenticator, GatewayMetrics]:
    m = GatewayMetrics()
    return Authenticator(m, window_ms=60_000, replay_capacity=1000, rate_per_key_per_s=100,
                         burst_per_key=100), m


def _req(headers: dict[str, str], body: bytes = b"", path: str = "/v1/me/records") -> SignedRequest:
    return SignedRequest("GET", path, "", {k.lower(): v for k, v in headers.items()}, body)


def test_signed_request_checks() -> None:
    a, m = _auth()
    k = nacl.signing.SigningKey(b"\x02" * 32)
    now = NOW_S * 1000
    h = sign_request(k, "GET", "/v1/me/records", timestamp_ms=now)
    assert a.check(_req(h), now, 0.0) == bytes(k.verify_key)
    with pytest.raises(ApiProblem) as e:
        a.check(_req(h), now, 0.0)  # the same nonce again
    assert (e.value.status, e.value.kind) == (401, "auth-replayed")
    h2 = sign_request(k, "GET", "/v1/me/records", timestamp_ms=now)
    for tampered, kind in (
        ({**h2, "x-hz-timestamp": str(now + 1)}, "auth-bad-signature"),
        (sign_request(k, "GET", "/v1/me/records", timestamp_ms=now - 61_000), "auth-expired"),
        ({**h2, "x-hz-key": "00" * 32}, "auth-bad-signature"),
        ({}, "auth-missing"),
        ({**h2, "x-hz-nonce": "short"}, "auth-malformed"),
    ):
        with pytest.raises(ApiProblem) as e:
            a.check(_req(tampered), now, 0.0)
        assert (e.value.status, e.value.kind) == (401, kind)
    with pytest.raises(ApiProblem) as e:
        a.check(_req(h2, body=b"x"), now, 0.0)  # body not the one signed
    assert e.value.kind == "auth-bad-signature"
    assert m.auth_failures.labels(reason="bad-signature")._value.get() == 3


def _trust(keys: list[dict[str, Any]], generated_s: float = NOW_S, chain: str = "c1") -> TrustList:
    return TrustList.from_json({
        "chain_id": chain, "height": 5, "generated_ms": int(generated_s * 1000),
        "members": [{"inst_id": 1, "name": "health commission", "active": True}],
        "credential_keys": keys,
    })


def _key_entry(key: nacl.signing.SigningKey, inst: int = 1, revoked: int | None = None) -> dict[str, Any]:
    pk = bytes(key.verify_key)
    return {"kid": key_id(pk).hex(), "inst_id": inst, "public_key": pk.hex(), "revoked_ms": revoked}


def _cred(colour: str = "red", chain: str = "c1", key: nacl.signing.SigningKey = ISSUER) -> str:
    return cose.issue(key, cose.Claims(1, NOW_S, NOW_S + 300, "ab" * 16, colour, 7, chain, 5))


def test_credential_verifies_offline_and_every_fault_is_named() -> None:
    tl = _trust([_key_entry(ISSUER)])
    text = _cred()
    r = verify(text, tl, now_s=NOW_S + 10)
    assert r.ok and r.colour == "red" and r.issuer_name == "health commission", r
    assert not verify(text, tl, now_s=NOW_S + 301).ok  # expired
    assert "expired" in verify(text, tl, now_s=NOW_S + 301).problems[0]
    parsed = cose.parse(text)
    forged = cose.issue(nacl.signing.SigningKey(b"\x09" * 32), parsed.claims)
    assert not verify(forged, tl, now_s=NOW_S).ok  # unknown signer
    assert not verify(_cred(chain="other"), tl, now_s=NOW_S).ok
    assert not verify(text, _trust([_key_entry(ISSUER, revoked=1)]), now_s=NOW_S).ok
    assert not verify(text, _trust([_key_entry(ISSUER, inst=2)]), now_s=NOW_S).ok
    # tampering with any character of the text breaks it (parse or signature)
    for i in range(4, len(text), 7):
        c = "0" if text[i] != "0" else "1"
        assert not verify(text[:i] + c + text[i + 1 :], tl, now_s=NOW_S).ok
    with pytest.raises(TrustListTooOld):
        verify(text, _trust([_key_entry(ISSUER)], generated_s=NOW_S - 90_000), now_s=NOW_S)
    for junk in ("", "HZ1:", "HZ1:%%%", "HC1:ABC", "HZ1:" + "A" * 5000):
        assert not verify(junk, tl, now_s=NOW_S).ok


def test_trust_list_errors(tmp_path: Path) -> None:
    with pytest.raises(TrustListError):
        TrustList.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"chain_id": "x"}))
    with pytest.raises(TrustListError):
        TrustList.load(tmp_path / "bad.json")


def test_qr_png_round_trip(tmp_path: Path) -> None:
    text = _cred()
    (tmp_path / "q.png").write_bytes(qr.to_png(text))
    assert qr.read_png(tmp_path / "q.png") == text


def test_credential_is_small_enough_for_a_phone_qr() -> None:
    assert len(_cred()) < 400


@given(st.binary(max_size=600))
def test_base45_codec_matches_the_reference_package(data: bytes) -> None:
    text = b45.b45encode(data)
    assert text == base45.b45encode(data).decode()
    assert b45.b45decode(text) == data


@pytest.mark.parametrize("bad", ["a", "ABCD", "GGW", "::", "é"])
def test_base45_refuses_what_is_not_base45(bad: str) -> None:
    with pytest.raises(b45.Base45Error):
        b45.b45decode(bad)


def test_forgeries_naming_a_key_do_not_spend_its_bucket() -> None:
    m = GatewayMetrics()
    a = Authenticator(m, window_ms=60_000, replay_capacity=1000, rate_per_key_per_s=0.001, burst_per_key=2)
    victim, mallory = nacl.signing.SigningKey(b"\x03" * 32), nacl.signing.SigningKey(b"\x04" * 32)
    now = NOW_S * 1000
    for _ in range(10):
        forged = sign_request(mallory, "GET", "/v1/me/records", timestamp_ms=now)
        forged["x-hz-key"] = bytes(victim.verify_key).hex()
        with pytest.raises(ApiProblem) as e:
            a.check(_req(forged), now, 0.0)
        assert e.value.status == 401
    for _ in range(2):
        assert a.check(_req(sign_request(victim, "GET", "/v1/me/records", timestamp_ms=now)), now, 0.0)
    with pytest.raises(ApiProblem) as e:
        a.check(_req(sign_request(victim, "GET", "/v1/me/records", timestamp_ms=now)), now, 0.0)
    assert e.value.status == 429 and e.value.headers["Retry-After"]
