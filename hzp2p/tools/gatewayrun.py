"""A real daemon and a real gateway process on 127.0.0.1 (tests, benchmark, demo).

`start_gateway(root)`: one voting node (node 1, an authority) runs; the genesis also
names learners 2 (authority), 3 (lab), 4 (hospital), 5 (vaccination site) and 6
(manufacturer) whose daemons do not run: their
signing keys sign transactions in the test, which reach node 1 through the gateway's
POST /v1/tx or the admin socket's submit_raw, so one daemon carries the whole story.
`add_gateway(cluster, k)` and `launch_gateway(cluster, k)` do the same for any node of
any LocalCluster (the [gateway] section must be in its config before its daemon starts,
so that the daemon shares its database).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nacl.signing

from hzp2p.client import Client
from hzp2p.ledger.genesis import load_genesis
from hzp2p.node.keys import generate_signing_key, load_signing_key, write_key_file
from hzp2p.tools.localcluster import LocalCluster, free_base_port

AUTH, AUTH2, LAB, HOSPITAL, SITE, MAKER = 1, 2, 3, 4, 5, 6
CREDENTIAL_KEY = "credential.key"


class GatewayStartError(Exception):
    """The gateway process exited or did not answer /healthz in time."""


@dataclass
class Gateway:
    cluster: LocalCluster
    node: int
    proc: subprocess.Popen[bytes]
    base_url: str
    metrics_url: str
    chain_id: str
    log: Path

    def key(self, node_id: int) -> nacl.signing.SigningKey:
        return load_signing_key(self.cluster.files[node_id].directory / "signing.key")

    def client(self, node_id: int) -> Client:
        return Client(self.key(node_id), self.chain_id, node_id)

    def credential_public_key(self) -> bytes:
        key = load_signing_key(self.cluster.files[self.node].directory / CREDENTIAL_KEY)
        return bytes(key.verify_key)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def add_gateway(cluster: LocalCluster, k: int, extra: str = "") -> tuple[int, int]:
    """Append a [gateway] section to node k's config and write its credential key;
    returns (api port, metrics port). Call before node k's daemon starts."""
    port = free_base_port(2)
    cfg = cluster.config(k)
    with cfg.open("a") as f:
        f.write(
            f'\n[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{port + 1}"\n'
            f'credential_key = "{CREDENTIAL_KEY}"\n{extra}'
        )
    key_file = cluster.files[k].directory / CREDENTIAL_KEY
    if not key_file.exists():
        write_key_file(key_file, generate_signing_key())
    return port, port + 1


def launch_gateway(
    cluster: LocalCluster, k: int, ports: tuple[int, int], *, https: bool = False, timeout_s: float = 30.0
) -> Gateway:
    """Start `hzp2p gateway` for node k (its daemon running) and wait for /healthz."""
    cfg = cluster.config(k)
    log = cluster.files[k].directory / "gateway.log"
    err = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hzp2p.cli", "gateway", "--config", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    finally:
        err.close()
    scheme = "https" if https else "http"
    gw = Gateway(cluster, k, proc, f"{scheme}://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}",
                 load_genesis(cluster.root / "genesis.toml").chain_id, log)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise GatewayStartError(f"gateway exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(f"{gw.base_url}/healthz", verify=False, timeout=2)
            if r.status_code == 200:
                return gw
        if time.monotonic() > deadline:
            gw.stop()
            raise GatewayStartError(f"gateway not up: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def start_gateway(root: Path, extra: str = "", *, https: bool = False) -> Gateway:
    """A one-voter cluster (plus five idle learners) and its gateway, both running."""
    c = LocalCluster(root, 1, learners=5)
    try:
        ports = add_gateway(c, 1, extra)
        c.start(1)
        c.wait_leader(30)
        return launch_gateway(c, 1, ports, https=https)
    except BaseException:
        c.close()
        raise


@contextlib.contextmanager
def running_gateway(root: Path, extra: str = "", *, https: bool = False,
                    credential_key: bool = True) -> Iterator[Gateway]:
    """`start_gateway` (and, by default, its credential key registered), stopped with its
    cluster when the block ends: the module fixture of every gateway test."""
    g = start_gateway(root, extra, https=https)
    try:
        if credential_key:
            register_credential_key(g)
        yield g
    finally:
        g.stop()
        g.cluster.close()


def register_credential_key(gw: Gateway, authority: int = AUTH) -> dict[str, Any]:
    """An authority registers the gateway's credential key for the gateway's institution."""
    r = gw.cluster.submit(authority, "credkey.register", {
        "inst_id": gw.node, "public_key": gw.credential_public_key().hex()})
    assert r["status"] == "committed", r
    return r
