"""`hzp2p citizen ...`, `hzp2p institution ...` and `hzp2p venue trust-list` against a real
daemon and a real `hzp2p gateway` process, each command run as an `hzp2p` subprocess.

A citizen's whole day as commands: her key, her code (with a QR code a venue verifies
offline), a lab's record she decrypts here, a check-in sealed to her alone, a published
exposure matched on her side and declared, her code's history and an appeal, a grant the
hospital reads under, her access log, a revocation, and an offline receipt. The bad
inputs: a missing or too-open key file, no or a malformed --gateway, an unreachable
gateway, a venue code that is not one, an unknown record, a payload the contract refuses
(422 rendered from the problem document), a citizen's key asking as an institution
(403), a rate limit (429 with Retry-After): one line on stderr, exit 2 or 1, never a
traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from hzp2p.client import lab_result_payload, make_venue_qr
from hzp2p.crypto.records import encrypt_record, encryption_public_key, pseudonym
from hzp2p.tools.gatewayrun import (
    AUTH,
    HOSPITAL,
    LAB,
    Gateway,
    running_gateway,
    start_gateway,
)
from hzp2p.tools.localcluster import free_base_port

pytestmark = pytest.mark.slow
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gw") / "c") as g:
        yield g


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hz(*argv: str, gateway: str | None = None, code: int = 0) -> tuple[Any, str]:
    """`hzp2p ARGV [--gateway URL]`: (its --json output or stdout, stderr); asserts the exit."""
    args = [*argv, *(["--gateway", gateway] if gateway else [])]
    p = subprocess.run([sys.executable, "-m", "hzp2p.cli", *args], capture_output=True,
                       text=True, timeout=60, check=False,
                       env={k: v for k, v in os.environ.items() if k != "HZP2P_GATEWAY"})
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    assert p.returncode == code, (args, p.returncode, p.stdout[-1500:], p.stderr[-1500:])
    if code != 0:
        assert p.stderr.strip().splitlines()[-1].startswith("hzp2p "), p.stderr  # one line why
    out: Any = p.stdout
    if "--json" in argv and p.stdout.strip():
        out = json.loads(p.stdout.strip().splitlines()[-1])
    return out, p.stderr


def test_a_citizens_day_as_commands(gw: Gateway, tmp_path: Path) -> None:
    url = gw.base_url
    key = str(tmp_path / "alice.key")
    made, _ = hz("citizen-key", key, "--json")
    alice = made["pseudonym"]

    def me(*argv: str, code: int = 0) -> tuple[Any, str]:
        return hz("citizen", argv[0], "--key", key, "--json", *argv[1:], gateway=url, code=code)

    who, _ = me("whoami")
    assert who["pseudonym"] == alice and who["chain_id"] == gw.chain_id
    text, _ = hz("citizen", "whoami", "--key", key, gateway=url)
    assert alice in text

    # her code, a credential file and a QR code a venue verifies offline
    code, _ = me("health-code", "--credential-out", str(tmp_path / "code.txt"),
                 "--qr", str(tmp_path / "code.png"))
    assert code["colour"] == "green" and code["credential"].startswith("HZ1:")
    assert (tmp_path / "code.txt").read_text().strip() == code["credential"]
    tl, _ = hz("venue", "trust-list", "--out", str(tmp_path / "tl.json"), "--json", gateway=url)
    assert tl["credential_keys"] == 1
    ok, _ = hz("verify-code", str(tmp_path / "code.png"), "--trust-list", str(tmp_path / "tl.json"),
               "--json")
    assert ok["ok"] and ok["subject"] == alice

    # a lab's record of her, which she decrypts here; an unknown one is a 404 problem
    lab_record(gw, made["public_key"], "LR1", {"test": "PCR", "ct": 30})
    recs, _ = me("records", "--decrypt")
    assert [(r["record_id"], r["fields"]) for r in recs["records"]] == [
        ("LR1", {"test": "PCR", "ct": 30})]
    one, _ = me("record", "LR1")
    assert one["fields"]["ct"] == 30 and one["writer"] == LAB
    _, err = me("record", "NOPE", code=1)
    assert "HTTP 404 not-found" in err

    # a check-in sealed to her alone; an exposure matched on her side and declared
    venue = nacl.signing.SigningKey.generate()
    assert gw.cluster.submit(AUTH, "venue.register", {
        "venue_id": "hall", "verify_key": bytes(venue.verify_key)})["status"] == "committed"
    qr = make_venue_qr(venue, gw.chain_id, "hall", now_ms() // DAY_MS)
    visit, _ = me("checkin", "--venue-qr", qr)
    assert visit["status"] == "committed" and visit["venue_id"] == "hall"
    mine, _ = me("records", "--decrypt")  # her check-in, opened here, as JSON
    [seen] = [r["fields"] for r in mine["records"] if r["type"] == "checkin"]
    assert seen["venue_id"] == "hall" and seen["t_ms"] == visit["t_ms"] and "pad" not in seen
    _, err = me("checkin", "--venue-qr", "not a code", code=2)
    assert "venue" in err
    assert gw.cluster.submit(AUTH, "exposure.publish", {
        "exposure_id": "E1", "venue_id": "hall", "from_ms": visit["t_ms"] - 3_600_000,
        "to_ms": now_ms(), "level": "high"})["status"] == "committed"
    listed, _ = me("exposures", "--match")
    assert listed["matched"] == ["E1"] and listed["checkins"] == 1
    declared, _ = me("declare", "E1")
    assert declared["status"] == "committed" and declared["type"] == "exposure.declare"
    assert me("health-code")[0]["colour"] == "yellow"
    hist, _ = me("health-code", "--history")
    event = [e for e in hist["history"] if e["event"] == "exposure.declare"][-1]["seq"]
    appealed, _ = me("appeal", "--event", str(event), "--reason", "exposure_not_mine", "--id", "AP-1")
    assert appealed["status"] == "committed" and appealed["appeal_id"] == "AP-1"
    _, err = me("appeal", "--event", "x", "--reason", "r", code=2)

    # a grant; the lab hands the key over; the hospital reads as an institution
    granted, _ = me("grant", "--to", str(HOSPITAL), "--types", "lab_result", "--purpose", "care",
                    "--days", "2", "--id", "G1")
    assert granted["status"] == "committed" and granted["grant_id"] == "G1"
    _, err = me("grant", "--to", str(HOSPITAL), "--types", "lab_result", "--purpose", "",
                code=1)
    assert "HTTP 422 invalid-payload" in err and "purpose" in err
    hosp = str(gw.cluster.files[HOSPITAL].directory / "signing.key")
    _, err = hz("institution", "record", "LR1", "--key", hosp, gateway=url, code=1)
    assert "HTTP 404" in err
    share_record(gw, "LR1", "G1")
    inst, _ = hz("institution", "whoami", "--key", hosp, "--json", gateway=url)
    assert inst["inst_id"] == HOSPITAL and inst["roles"] == ["hospital"]
    held, _ = hz("institution", "records", "--key", hosp, "--json", gateway=url)
    assert [x["record_id"] for x in held["records"]] == ["LR1"]
    read, _ = hz("institution", "record", "LR1", "--key", hosp, "--json", gateway=url)
    assert read["fields"] == {"test": "PCR", "ct": 30} and read["subject"] == alice
    _, err = hz("institution", "whoami", "--key", key, gateway=url, code=1)
    assert "HTTP 403" in err and "member" in err
    log, _ = me("access-log")
    assert ("share", HOSPITAL, "LR1") in [(e["kind"], e["grantee"], e["record_id"])
                                         for e in log["entries"]]
    revoked, _ = me("revoke", "G1")
    assert revoked["status"] == "committed"
    gs, _ = me("grants")
    assert [(g["grant_id"], g["revoked_ms"] is not None) for g in gs["grants"]] == [("G1", True)]

    # an offline receipt of her grant, checked against the genesis file alone
    out = tmp_path / "grant.receipt"
    got = None
    for _ in range(100):  # a receipt exists once its block is certified
        p = subprocess.run([sys.executable, "-m", "hzp2p.cli", "citizen", "receipt",
                            granted["tx_hash"], "--out", str(out), "--key", key, "--json",
                            "--gateway", url], capture_output=True, text=True, check=False)
        if p.returncode == 0:
            got = json.loads(p.stdout)
            break
        time.sleep(0.2)
    assert got is not None and got["verdict"] == "accepted" and got["type"] == "consent.grant"
    checked, _ = hz("verify-receipt", str(out), "--genesis", str(gw.cluster.root / "genesis.toml"),
                    "--json")
    assert checked["ok"] and checked["tx_hash"] == granted["tx_hash"]
    me("receipt", "abc", "--out", str(out), code=2)


def lab_record(gw: Gateway, public_key_hex: str, record_id: str, fields: dict[str, Any]) -> None:
    """The lab (a member without its own daemon here) writes a negative result with its
    record, sealed to the citizen whose public key this is and to itself."""
    subject_pk = bytes.fromhex(public_key_hex)
    subject = pseudonym(subject_pk)
    env = encrypt_record(record_id, subject, "lab_result", fields, {
        "subject": encryption_public_key(subject_pk),
        f"inst:{LAB}": encryption_public_key(bytes(gw.key(LAB).verify_key))})
    tx = gw.client(LAB).tx("lab.result", lab_result_payload(
        subject, f"T-{record_id}", "negative", now_ms() - 1000,
        env.to_payload() | {"record_id": record_id}), now_ms())
    assert gw.cluster.call(AUTH, "submit_raw", {"tx": tx.encode().hex(), "wait_s": 10},
                           timeout_s=15)["status"] == "committed"


def share_record(gw: Gateway, record_id: str, grant_id: str, purpose: str = "care") -> None:
    """The lab (a member without its own daemon here) hands the record key to the hospital."""
    from hzp2p.crypto.records import open_sealed_key, seal_key_to
    from hzp2p.gateway.client import GatewayClient

    lab_key, hosp_key = gw.key(LAB), gw.key(HOSPITAL)
    lab_gw = GatewayClient(gw.base_url, lab_key)
    view = lab_gw.get(f"/v1/institution/records/{record_id}").json()
    rk = open_sealed_key(bytes.fromhex(view["sealed_key"]), lab_key,
                         bytes.fromhex(view["key_commitment"]))
    tx = gw.client(LAB).tx("access.share", {
        "record_id": record_id, "grantee": HOSPITAL, "basis": "grant", "grant_id": grant_id,
        "purpose": purpose, "sealed_key": seal_key_to(rk, encryption_public_key(
            bytes(hosp_key.verify_key)))}, now_ms())
    assert lab_gw.post_tx(tx.encode(), wait_s=10).json()["status"] == "committed"
    lab_gw.close()


def test_bad_key_files_and_gateways_are_clear_errors(gw: Gateway, tmp_path: Path) -> None:
    key = tmp_path / "alice.key"
    hz("citizen-key", str(key))
    _, err = hz("citizen", "health-code", "--key", str(tmp_path / "none.key"), gateway=gw.base_url,
                code=2)
    assert "key file not found" in err
    open_key = tmp_path / "open.key"
    open_key.write_text(key.read_text())
    open_key.chmod(0o644)
    _, err = hz("citizen", "whoami", "--key", str(open_key), gateway=gw.base_url, code=2)
    assert "chmod 600" in err
    _, err = hz("citizen", "whoami", "--key", str(key), code=2)
    assert "--gateway" in err
    _, err = hz("citizen", "whoami", "--key", str(key), gateway="ftp://x", code=2)
    out, err = hz("citizen", "health-code", "--key", str(key), "--json",
                  gateway=f"http://127.0.0.1:{free_base_port(1)}", code=1)
    assert "cannot reach the gateway" in err and out["ok"] is False
    hz("citizen", code=2)
    hz("citizen", "grant", "--key", str(key), "--to", "0", "--types", "x", "--purpose", "p",
       gateway=gw.base_url, code=2)


def test_a_rate_limit_is_a_429_problem(tmp_path: Path) -> None:
    g = start_gateway(tmp_path / "c", "rate_per_key_per_s = 0.01\nburst_per_key = 1\n")
    try:
        key = str(tmp_path / "alice.key")
        hz("citizen-key", key)
        hz("citizen", "health-code", "--key", key, gateway=g.base_url)
        _, err = hz("citizen", "health-code", "--key", key, gateway=g.base_url, code=1)
        assert "HTTP 429" in err and "retry after" in err
    finally:
        g.stop()
        g.cluster.close()


def test_https_with_a_private_ca(tmp_path: Path) -> None:
    from tests.gateway.test_tls_and_config import self_signed

    cert, tls_key = self_signed(tmp_path)
    g = start_gateway(tmp_path / "c", f'tls_cert = "{cert}"\ntls_key = "{tls_key}"\n', https=True)
    try:
        key = str(tmp_path / "alice.key")
        hz("citizen-key", key)
        who, _ = hz("citizen", "whoami", "--key", key, "--ca", str(cert), "--json",
                    gateway=g.base_url)
        assert who["chain_id"] == g.chain_id
        failed, err = hz("citizen", "whoami", "--key", key, "--json", gateway=g.base_url, code=1)
        assert failed["ok"] is False and "not trusted here (--ca FILE" in err
    finally:
        g.stop()
        g.cluster.close()
