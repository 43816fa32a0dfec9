"""The gateway over real HTTP: a real daemon and a real `hzp2p gateway` process on 127.0.0.1.

Public endpoints, signature failures (each refused and counted), rate limits, size
limits, the stateless payload check on POST /v1/tx, and a citizen's whole story:
her lab result turns her code red, she decrypts her record on her side, grants a
hospital access, the lab hands the key over, the hospital reads the record, she
reads her access log, and her credential verifies offline until it expires or is
tampered with.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest

from hzp2p.client import lab_result_payload, lot_register_payload
from hzp2p.credentials import qr
from hzp2p.crypto.records import encrypt_record, encryption_public_key, open_sealed_key, seal_key_to
from hzp2p.gateway.client import GatewayClient, open_record
from hzp2p.gateway.signing import sign_request
from hzp2p.tools.gatewayrun import (
    AUTH,
    HOSPITAL,
    LAB,
    MAKER,
    Gateway,
    running_gateway,
)

pytestmark = pytest.mark.slow

LIMITS = """rate_per_key_per_s = 5.0
burst_per_key = 30
rate_per_address_per_s = 10000.0
burst_per_address = 10000
max_body_bytes = 16384
max_header_bytes = 4096
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gw") / "c", LIMITS) as g:
        yield g


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def metric(g: Gateway, name: str, **labels: str) -> float:
    text = httpx.get(f"{g.metrics_url}/metrics").text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    return body


def test_public_endpoints(gw: Gateway) -> None:
    c = gw.cluster
    r = c.submit(AUTH, "notice.publish", {
        "notice_id": "N1", "title": "Masks on buses", "body": "Masks are required on buses.",
        "effective_date": "2026-12-10", "region": "district-1"})
    assert r["status"] == "committed", r
    for i, (period, value) in enumerate((("2026-W01", 5), ("2026-W02", 7), ("2026-W03", 11))):
        r = c.submit(AUTH, "epi.report", {"report_id": f"r{i}", "region": "district-1",
                                          "metric": "confirmed", "value": value, "period": period})
        assert r["status"] == "committed", r
    r = c.submit(AUTH, "data.publish", {"dataset_id": "weekly", "metadata": {"format": "csv"},
                                        "content_hash": "ab" * 32, "access": "public"})
    r2 = c.submit(AUTH, "data.publish", {"dataset_id": "private", "metadata": {"format": "csv"},
                                         "content_hash": "cd" * 32, "access": "members"})
    assert r["status"] == r2["status"] == "committed"
    http = httpx.Client(base_url=gw.base_url)
    st = http.get("/v1/status").json()
    assert st["chain_id"] == gw.chain_id and st["leader_known"] and st["height"] >= 5
    b = http.get(f"/v1/blocks/{r['height']}").json()
    assert any(t["tx_hash"] == r["tx_hash"] and t["type"] == "data.publish" for t in b["txs"])
    assert "payload" not in json.dumps(b)
    is_problem(http.get("/v1/blocks/999999"), 404)
    is_problem(http.get("/v1/blocks/0"), 422)
    tl = http.get("/v1/trust-list").json()
    assert [m["inst_id"] for m in tl["members"]] == [1, 2, 3, 4, 5, 6] and tl["voters"] == [1]
    assert len(tl["credential_keys"]) == 1 and tl["credential_keys"][0]["inst_id"] == 1
    s = http.get("/v1/epi/summary", params={"metric": "confirmed", "from": "2026-W02"}).json()
    assert [(x["period"], x["total"]) for x in s["buckets"]] == [("2026-W02", 7), ("2026-W03", 11)]
    assert [d["dataset_id"] for d in http.get("/v1/datasets").json()] == ["weekly"]
    notes = http.get("/v1/notices").json()
    assert notes[0]["title"] == "Masks on buses" and notes[0]["effective_date"] == "2026-12-10"
    assert http.get("/v1/notices", params={"region": "elsewhere"}).json() == []
    assert http.get("/openapi.json").json()["info"]["title"] == "hzp2p gateway"
    assert http.get("/docs").status_code == 200
    page = http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert all(p in page.text for p in ("/v1/status", "/v1/notices", "/v1/epi/summary"))
    is_problem(http.get("/v1/nothing-here"), 404)


def test_signature_failures_are_refused_and_counted(gw: Gateway) -> None:
    alice = nacl.signing.SigningKey.generate()
    mallory = nacl.signing.SigningKey.generate()
    me = GatewayClient(gw.base_url, alice)
    path = "/v1/me/records"
    http = me.http
    before = metric(gw, "hzp2p_gateway_auth_failures_total", reason="bad-signature")
    # unsigned
    is_problem(http.get(path), 401)
    # a wrong key: Mallory signs, claiming Alice's key
    h = sign_request(mallory, "GET", path, subject=me.pseudonym, timestamp_ms=now_ms())
    h["x-hz-key"] = bytes(alice.verify_key).hex()
    assert is_problem(http.get(path, headers=h), 401)["type"].endswith("auth-bad-signature")
    # Mallory's own valid signature, asking about Alice's pseudonym
    h = sign_request(mallory, "GET", path, subject=me.pseudonym, timestamp_ms=now_ms())
    assert is_problem(http.get(path, headers=h), 403)["type"].endswith("auth-wrong-subject")
    # an expired timestamp
    h = sign_request(alice, "GET", path, subject=me.pseudonym, timestamp_ms=now_ms() - 120_000)
    assert is_problem(http.get(path, headers=h), 401)["type"].endswith("auth-expired")
    # a replayed nonce
    h = sign_request(alice, "GET", path, subject=me.pseudonym, timestamp_ms=now_ms())
    assert http.get(path, headers=h).status_code == 200
    assert is_problem(http.get(path, headers=h), 401)["type"].endswith("auth-replayed")
    # a tampered body
    body = json.dumps({"tx": "00", "wait_s": 1}).encode()
    h = sign_request(alice, "POST", "/v1/tx", body=body, timestamp_ms=now_ms())
    h["content-type"] = "application/json"
    tampered = body.replace(b'"wait_s": 1', b'"wait_s": 2')
    assert is_problem(http.post("/v1/tx", content=tampered, headers=h), 401)["type"].endswith(
        "auth-bad-signature")
    # a signature for another path (query changed)
    h = sign_request(alice, "GET", path, subject=me.pseudonym, timestamp_ms=now_ms())
    is_problem(http.get(path + "?x=1", headers=h), 401)
    after = metric(gw, "hzp2p_gateway_auth_failures_total", reason="bad-signature")
    assert after - before == 3
    assert metric(gw, "hzp2p_gateway_auth_failures_total", reason="replayed") >= 1
    assert metric(gw, "hzp2p_gateway_auth_failures_total", reason="expired") >= 1
    assert metric(gw, "hzp2p_gateway_auth_failures_total", reason="wrong-subject") >= 1


def test_rate_limit_answers_429_with_retry_after(gw: Gateway) -> None:
    me = GatewayClient(gw.base_url, nacl.signing.SigningKey.generate())
    codes = [me.get("/v1/me/grants", subject=me.pseudonym) for _ in range(40)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and all(r.status_code in (200, 429) for r in codes)
    assert int(limited[0].headers["retry-after"]) >= 1
    is_problem(limited[0], 429)
    assert metric(gw, "hzp2p_gateway_limited_total", limit="key_rate") >= len(limited)


def test_size_limits(gw: Gateway) -> None:
    http = httpx.Client(base_url=gw.base_url)
    is_problem(http.post("/v1/tx", content=b"x" * 20_000, headers={"content-type": "application/json"}), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"x" * 1000

    is_problem(http.post("/v1/tx", content=chunks()), 413)
    is_problem(http.get("/v1/status", headers={"x-padding": "p" * 5000}), 431)
    assert metric(gw, "hzp2p_gateway_limited_total", limit="body_size") >= 2


def test_post_tx_runs_the_stateless_check_and_lists_every_problem(gw: Gateway) -> None:
    alice = nacl.signing.SigningKey.generate()
    me = GatewayClient(gw.base_url, alice)
    client = gw.client(AUTH).__class__(alice, gw.chain_id, None)
    bad = client.tx("consent.grant", {"grant_id": "g 1", "grantee": "four", "purpose": "x"}, now_ms())
    body = is_problem(me.post_tx(bad.encode()), 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"", "grant_id", "grantee"} <= fields, body  # missing fields, bad id, bad grantee
    other = nacl.signing.SigningKey.generate()
    foreign = gw.client(AUTH).__class__(other, gw.chain_id, None).tx("consent.revoke", {"grant_id": "g"}, now_ms())
    is_problem(me.post_tx(foreign.encode()), 403)  # not signed by the requester
    is_problem(me.post_json("/v1/tx", {"tx": "zz"}), 422)  # not hex: the model refuses it
    is_problem(me.post_json("/v1/tx", {"tx": "00ff"}), 400)  # hex, but no transaction
    is_problem(me.post_json("/v1/tx", {"nope": 1}), 422)


def verify_code(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hzp2p.cli", "verify-code", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_citizen_flow_end_to_end(gw: Gateway, tmp_path: Path) -> None:
    alice = nacl.signing.SigningKey.generate()
    me = GatewayClient(gw.base_url, alice)
    subject = me.pseudonym
    lab_key, hosp_key = gw.key(LAB), gw.key(HOSPITAL)
    lab_gw, hosp_gw = GatewayClient(gw.base_url, lab_key), GatewayClient(gw.base_url, hosp_key)
    lab = gw.client(LAB)

    # 1. the lab's positive result, with its encrypted record, posted through the gateway
    env = encrypt_record("LR1", subject, "lab_result", {"test": "PCR", "ct": 21},
                         {"subject": encryption_public_key(bytes(alice.verify_key)),
                          f"inst:{LAB}": encryption_public_key(bytes(lab_key.verify_key))})
    tx = lab.tx("lab.result", lab_result_payload(subject, "T1", "positive", now_ms() - 1000,
                                                 env.to_payload() | {"record_id": "LR1"}), now_ms())
    r = lab_gw.post_tx(tx.encode(), wait_s=10)
    assert r.status_code == 200 and r.json()["status"] == "committed", r.text

    # 2. her code is red, with why, and a credential
    code = me.get("/v1/me/health-code", subject=subject).json()
    assert code["colour"] == "red" and "T1" in code["why"] and code["source"] == "lab"
    assert code["credential"].startswith("HZ1:") and code["credential_problem"] is None

    # 3. her records; she decrypts one on her side
    recs = me.get("/v1/me/records", subject=subject).json()
    assert [x["record_id"] for x in recs] == ["LR1"]
    view = me.get("/v1/me/records/LR1", subject=subject).json()
    assert view["holder"] == "subject"
    assert open_record(view, alice) == {"test": "PCR", "ct": 21}
    is_problem(me.get("/v1/me/records/nope", subject=subject), 404)

    # 4. she signs a grant for the hospital and posts it
    citizen = lab.__class__(alice, gw.chain_id, None)
    g = citizen.grant(now_ms(), grant_id="G1", grantee=HOSPITAL, record_types=["lab_result"],
                      purpose="care", expiry_ms=now_ms() + 86_400_000)
    r = me.post_tx(g.encode(), wait_s=10)
    assert r.json()["status"] == "committed", r.text
    receipt = me.get(f"/v1/tx/{g.hash.hex()}").json()
    assert receipt["status"] == "committed" and receipt["type"] == "consent.grant"
    assert [x["grant_id"] for x in me.get("/v1/me/grants", subject=subject).json()] == ["G1"]

    # 5. before the hand-over the hospital holds nothing; the lab hands the key over
    is_problem(hosp_gw.get("/v1/institution/records/LR1"), 404)
    lab_view = lab_gw.get("/v1/institution/records/LR1").json()
    record_key = open_sealed_key(bytes.fromhex(lab_view["sealed_key"]), lab_key,
                                 bytes.fromhex(lab_view["key_commitment"]))
    share = lab.tx("access.share", {
        "record_id": "LR1", "grantee": HOSPITAL, "basis": "grant", "grant_id": "G1", "purpose": "care",
        "sealed_key": seal_key_to(record_key, encryption_public_key(bytes(hosp_key.verify_key)))},
        now_ms())
    assert lab_gw.post_tx(share.encode(), wait_s=10).json()["status"] == "committed"

    # 6. the hospital, signed as an institution, reads and decrypts it on its side
    assert "LR1" in [x["record_id"] for x in hosp_gw.get("/v1/institution/records").json()]
    hview = hosp_gw.get("/v1/institution/records/LR1").json()
    assert open_record(hview, hosp_key) == {"test": "PCR", "ct": 21}
    assert hosp_gw.get("/v1/institution/me").json()["roles"] == ["hospital"]
    is_problem(me.get("/v1/institution/me"), 403)  # a citizen's key is no member's
    is_problem(hosp_gw.get(f"/v1/institution/subjects/{subject}/access-log"), 403)  # not an authority

    # 7. she reads her access log
    log = me.get("/v1/me/access-log", subject=subject).json()
    assert [(e["kind"], e["by"], e["grantee"], e["purpose"]) for e in log] == [
        ("share", LAB, HOSPITAL, "care")]
    authority = GatewayClient(gw.base_url, gw.key(AUTH))
    auth_log = authority.get(f"/v1/institution/subjects/{subject}/access-log")
    assert auth_log.status_code == 200 and len(auth_log.json()) == 1
    is_problem(authority.get("/v1/institution/lots/NOPE"), 404)
    is_problem(lab_gw.get("/v1/institution/lots/NOPE"), 403)  # a lab reads no lot histories
    maker = gw.client(MAKER)
    reg = maker.tx("lot.register", lot_register_payload("LOT-1", "covax", 100, now_ms() + 86_400_000 * 30,
                                                         200, 800), now_ms())
    assert GatewayClient(gw.base_url, gw.key(MAKER)).post_tx(reg.encode(), wait_s=10).json()["status"] == "committed"
    lot = authority.get("/v1/institution/lots/LOT-1").json()
    assert lot["record"]["status"] == "active" and [e["kind"] for e in lot["events"]] == ["register"]

    # 8. her credential verifies offline; fails once expired or tampered; PNG too
    tl_file = tmp_path / "trust.json"
    tl_file.write_text(httpx.get(f"{gw.base_url}/v1/trust-list").text)
    cred = code["credential"]
    ok = verify_code([cred, "--trust-list", str(tl_file), "--json"])
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["ok"] and out["colour"] == "red" and out["issuer_id"] == 1 and out["subject"] == subject
    text_out = verify_code([cred, "--trust-list", str(tl_file)])
    assert "VALID: colour red" in text_out.stdout and "trust list: height" in text_out.stdout
    png = tmp_path / "code.png"
    png.write_bytes(qr.to_png(cred))
    assert verify_code([str(png), "--trust-list", str(tl_file)]).returncode == 0
    expired = verify_code([cred, "--trust-list", str(tl_file), "--json",
                           "--at", str(code["credential_valid_until_s"] + 1)])
    assert expired.returncode == 1 and "expired" in expired.stdout
    i = len(cred) // 2
    tampered = cred[:i] + ("A" if cred[i] != "A" else "B") + cred[i + 1 :]
    assert verify_code([tampered, "--trust-list", str(tl_file)]).returncode == 1
    stale = verify_code([cred, "--trust-list", str(tl_file), "--max-age-s", "0.001"])
    assert stale.returncode == 1 and "old" in stale.stderr
    assert verify_code(["nonsense", "--trust-list", str(tl_file)]).returncode == 2
