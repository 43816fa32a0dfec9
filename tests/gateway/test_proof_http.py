"""GET /v1/tx/{hash}/proof over real HTTP: a real daemon and a real `hzp2p gateway` process.

A citizen's transaction posted through the gateway gets an offline receipt from the
gateway (base64, and the QR-sized HZR1: form); both verify with `hzp2p verify-receipt`
and the genesis file only, a changed character fails; the whole transaction goes only
to its signer, its subject or a member; unknown hashes are 404.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest

from hzp2p.credentials.receipt_text import COMPACT_PREFIX, QR_ALNUM_CAPACITY
from hzp2p.gateway.client import GatewayClient
from hzp2p.ledger.genesis import load_genesis
from hzp2p.ledger.receipt import verify_receipt
from hzp2p.tools.gatewayrun import AUTH, HOSPITAL, Gateway, running_gateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("proof") / "c", credential_key=False) as g:
        yield g


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def verify(path: Path, genesis: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hzp2p.cli", "verify-receipt", str(path),
                           "--genesis", str(genesis)], capture_output=True, text=True,
                          timeout=60, check=False)


def proof_when_certified(c: GatewayClient, tx_hash: str, query: str = "") -> dict[str, Any]:
    """The proof, once the block's certificate is on chain (503 until then)."""
    deadline = time.monotonic() + 30
    while True:
        r = c.get(f"/v1/tx/{tx_hash}/proof", query=query)
        if r.status_code != 503 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body
        assert r.json()["type"].endswith("daemon-unavailable"), r.text
        time.sleep(0.05)


def test_proof_of_a_citizen_transaction_verifies_offline(gw: Gateway, tmp_path: Path) -> None:
    genesis_file = gw.cluster.root / "genesis.toml"
    genesis = load_genesis(genesis_file)
    alice = nacl.signing.SigningKey.generate()
    me = GatewayClient(gw.base_url, alice)
    citizen = gw.client(AUTH).__class__(alice, gw.chain_id, None)
    g = citizen.grant(now_ms(), grant_id="G1", grantee=HOSPITAL, record_types=["lab_result"],
                      purpose="care", expiry_ms=now_ms() + 86_400_000)
    assert me.post_tx(g.encode(), wait_s=10).json()["status"] == "committed"

    p = proof_when_certified(me, g.hash.hex())
    assert p["tx_hash"] == g.hash.hex() and p["verdict"] == "accepted"
    assert p["type"] == "consent.grant" and p["includes_tx"] is False
    assert p["certified_by"] and p["voters"] >= len(p["certified_by"])
    raw = base64.b64decode(p["receipt"])
    assert len(raw) == p["receipt_bytes"]
    proven = verify_receipt(raw, genesis)
    assert proven.transaction is None and proven.tx_hash == g.hash and proven.applied

    # the base64 text and the compact form, as files, verify with the genesis only
    b64_file, compact_file = tmp_path / "r.b64", tmp_path / "r.txt"
    b64_file.write_text(p["receipt"] + "\n")
    assert p["compact"].startswith(COMPACT_PREFIX)
    assert p["compact_chars"] == len(p["compact"]) <= QR_ALNUM_CAPACITY
    compact_file.write_text(p["compact"])
    for f in (b64_file, compact_file):
        out = verify(f, genesis_file)
        assert out.returncode == 0, out.stderr
        assert f"transaction {g.hash.hex()}, verdict accepted" in out.stdout
    c = p["compact"]
    i = len(c) * 2 // 3
    compact_file.write_text(c[:i] + ("A" if c[i] != "A" else "B") + c[i + 1:])
    bad = verify(compact_file, genesis_file)
    assert bad.returncode == 1 and "invalid: receipt" in bad.stderr, bad.stderr

    # the whole transaction: to its signer and to a member, not to a stranger
    full = proof_when_certified(me, g.hash.hex(), "include_tx=true")
    assert full["includes_tx"] is True
    proven = verify_receipt(base64.b64decode(full["receipt"]), genesis)
    assert proven.transaction is not None and proven.transaction.signer == alice.verify_key.encode()
    member = GatewayClient(gw.base_url, gw.key(AUTH))
    assert member.get(f"/v1/tx/{g.hash.hex()}/proof", query="include_tx=true").status_code == 200
    stranger = GatewayClient(gw.base_url, nacl.signing.SigningKey.generate())
    r = stranger.get(f"/v1/tx/{g.hash.hex()}/proof", query="include_tx=true")
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert stranger.get(f"/v1/tx/{g.hash.hex()}/proof").status_code == 200  # hash-only


def test_proof_errors(gw: Gateway) -> None:
    me = GatewayClient(gw.base_url, nacl.signing.SigningKey.generate())
    r = me.get(f"/v1/tx/{'ab' * 32}/proof")
    assert r.status_code == 404 and r.json()["status"] == 404
    assert me.get("/v1/tx/xyz/proof").status_code == 422
    assert httpx.get(f"{gw.base_url}/v1/tx/{'ab' * 32}/proof").status_code == 401  # unsigned
