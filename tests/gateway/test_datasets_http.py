"""Data-set content through the gateway over real HTTP: a public data set for anyone without a
signature; a restricted one only for a signed request from a key holder that logged its
fetch, as ciphertext it opens on its side."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hzp2p.gateway.client import GatewayClient, open_dataset
from hzp2p.tools.gatewayrun import AUTH, HOSPITAL, LAB, Gateway, start_gateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = start_gateway(tmp_path_factory.mktemp("gwd") / "c")
    try:
        yield g
    finally:
        g.stop()
        g.cluster.close()


def _publish(g: Gateway, tmp: Path, did: str, body: bytes, scope: str) -> dict[str, object]:
    src = tmp / f"{did}.bin"
    src.write_bytes(body)
    r: dict[str, object] = g.cluster.call(AUTH, "dataset", {
        "action": "publish", "dataset_id": did, "file": str(src), "scope": scope,
        "title": did, "wait_s": 20}, timeout_s=60)
    assert r["status"] == "committed", r
    return r


def test_public_content_needs_no_signature(gw: Gateway, tmp_path: Path) -> None:
    body = b"week,cases\n" + os.urandom(700_000)
    _publish(gw, tmp_path, "open-weekly", body, "public")
    r = httpx.get(f"{gw.base_url}/v1/datasets/open-weekly/content", timeout=30)
    assert r.status_code == 200 and r.content == body
    assert r.headers["X-HZ-Dataset-Version"] == "1"
    listed = httpx.get(f"{gw.base_url}/v1/datasets", timeout=30).json()
    assert [d["dataset_id"] for d in listed] == ["open-weekly"]
    r = httpx.get(f"{gw.base_url}/v1/datasets/nope/content", timeout=30)
    assert r.status_code == 404


def test_restricted_content_only_for_a_logged_key_holder(gw: Gateway, tmp_path: Path) -> None:
    body = b"SECRET-LINE\n" + os.urandom(600_000)
    _publish(gw, tmp_path, "lab-cases", body, f"institutions:{LAB}")
    assert httpx.get(f"{gw.base_url}/v1/datasets/lab-cases/content", timeout=30).status_code == 403
    lab = GatewayClient(gw.base_url, gw.key(LAB))
    hospital = GatewayClient(gw.base_url, gw.key(HOSPITAL))
    try:
        assert lab.get("/v1/datasets/lab-cases/blob", signed=False).status_code == 401
        r = lab.get("/v1/datasets/lab-cases/blob")
        assert r.status_code == 403 and "data.fetch" in r.json()["detail"]  # not logged yet
        # the lab logs its fetch (signed with its key; its own node is not running here)
        tx = gw.client(LAB).tx("data.fetch", {"dataset_id": "lab-cases", "version": 1},
                               time.time_ns() // 1_000_000)
        rcpt = gw.cluster.call(AUTH, "submit_raw", {"tx": tx.encode().hex(), "wait_s": 10},
                               timeout_s=20)
        assert rcpt["status"] == "committed", rcpt
        r = lab.get("/v1/datasets/lab-cases/blob")
        assert r.status_code == 200, r.text
        assert b"SECRET-LINE" not in r.content  # ciphertext on the wire and on the gateway
        assert open_dataset(r, gw.key(LAB)) == body
        r = hospital.get("/v1/datasets/lab-cases/blob")  # outside the scope
        assert r.status_code == 403 and "holds no current key" in r.json()["detail"]
    finally:
        lab.close()
        hospital.close()
