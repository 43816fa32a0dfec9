"""A real daemon and a real gateway process on 127.0.0.1 (tests, benchmark, demo).

One voting node (node 1, an authority) runs; the genesis also names learners 2
(authority), 3 (lab) and 4 (hospital) whose daemons do not run: their signing
keys sign transactions in the test, which reach node 1 through the gateway's
POST /v1/tx or the admin socket's submit_raw, so one daemon carries the whole story.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nacl.signing

from hzp2p.client import Client
from hzp2p.ledger.genesis import load_genesis
from hzp2p.node.keys import load_signing_key
from hzp2p.node.localcluster import LocalCluster, free_base_port

AUTH, AUTH2, LAB, HOSPITAL = 1, 2, 3, 4


@dataclass
class Gateway:
    cluster: LocalCluster
    proc: subprocess.Popen[bytes]
    base_url: str
    metrics_url: str
    chain_id: str
    log: Path

    def key(self, node_id: int) -> nacl.signing.SigningKey:
        return load_signing_key(self.cluster.files[node_id].directory / "signing.key")

    def client(self, node_id: int) -> Client:
        return Client(self.key(node_id), self.chain_id, node_id)

    def submit_raw(self, wire: bytes, wait_s: float = 10.0) -> dict[str, Any]:
        r: dict[str, Any] = self.cluster.call(1, "submit_raw", {"tx": wire.hex(), "wait_s": wait_s},
                                              timeout_s=wait_s + 5)
        return r

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_gateway(
    root: Path, extra: str = "", *, https: bool = False, cluster: LocalCluster | None = None,
) -> Gateway:
    c = cluster or LocalCluster(root, 1, learners=3)
    port, mport = free_base_port(2), 0
    mport = port + 1
    cfg = c.config(1)
    with cfg.open("a") as f:
        f.write(
            f'\n[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{mport}"\n'
            f'credential_key = "credential.key"\n{extra}'
        )
    # the credential key file, as `hzp2p gateway --new-credential-key` writes it
    made = subprocess.run(
        [sys.executable, "-m", "hzp2p.cli", "gateway", "--config", str(cfg), "--new-credential-key", "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert "register_payload" in made.stdout
    c.start(1)
    c.wait_leader(30)
    log = c.files[1].directory / "gateway.log"
    err = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hzp2p.cli", "gateway", "--config", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    finally:
        err.close()
    scheme = "https" if https else "http"
    gw = Gateway(c, proc, f"{scheme}://127.0.0.1:{port}", f"http://127.0.0.1:{mport}",
                 load_genesis(c.files[1].directory.parent / "genesis.toml").chain_id, log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(f"{gw.base_url}/healthz", verify=False, timeout=2)
            if r.status_code == 200:
                return gw
        if time.monotonic() > deadline:
            gw.stop()
            raise RuntimeError(f"gateway not up: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def register_credential_key(gw: Gateway) -> None:
    """Node 1 (an authority) registers its gateway's credential key on chain."""
    key = load_signing_key(gw.cluster.files[1].directory / "credential.key")
    r = gw.cluster.submit(1, "credkey.register", {"inst_id": 1, "public_key": bytes(key.verify_key).hex()})
    assert r["status"] == "committed", r
