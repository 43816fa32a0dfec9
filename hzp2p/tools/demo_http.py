"""The citizen's part of `hzp2p demo`, over HTTP through a real gateway.

hzp2p.tools.demo drives the story; when the `gateway` extra is installed it hands the
citizen's steps to this helper: a gateway starts beside a live node once every node
is up, an authority registers its credential key, and from then on Alice reads her
health code, posts her grant, opens her own record and reads her access log over
HTTP; the hospital reads the record it was handed as an institution; a venue
verifies her credential offline against the downloaded trust list.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import nacl.signing

from hzp2p.client import Client
from hzp2p.credentials.verify import TrustList, verify
from hzp2p.gateway.client import GatewayClient, open_record
from hzp2p.ledger.tx import Transaction
from hzp2p.tools.gatewayrun import Gateway, GatewayStartError, add_gateway, launch_gateway
from hzp2p.tools.localcluster import ClusterError, LocalCluster

AUTHORITIES = (1, 2)


class DemoHttpFailed(ClusterError):
    """A step over HTTP went wrong (the demo reports it as it reports a cluster failure)."""


class CitizenOverHttp:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        # every daemon shares its database from the start: any of them may host the gateway
        self.ports = {k: add_gateway(cluster, k) for k in cluster.ids}
        self.gw: Gateway | None = None
        self.alice: GatewayClient | None = None
        self.code: dict[str, Any] = {}
        # `hzp2p demo --keep`: the story's stop() leaves the gateway serving the web pages
        # until release() (hzp2p.tools.demo.run_demo prints their URLs and waits)
        self.hold = False

    def _me(self) -> GatewayClient:
        assert self.alice is not None, "start() first"
        return self.alice

    def start(self, story: Any, alice: Client) -> None:
        live = [k for k in self.cluster.ids if self.cluster.running(k)]
        node = live[0]
        try:
            self.gw = launch_gateway(self.cluster, node, self.ports[node])
        except GatewayStartError as exc:
            raise DemoHttpFailed(str(exc)) from None
        story.say(f"       gateway for node {node} at {self.gw.base_url} (OpenAPI at /openapi.json)")
        authority = next((k for k in AUTHORITIES if k in live), None)
        if authority is None:
            raise DemoHttpFailed("no authority's daemon is running to register the credential key")
        story.submit_as_node(authority, "credkey.register", {
            "inst_id": node, "public_key": self.gw.credential_public_key().hex()},
            f"authority {authority} registers node {node}'s health-code credential key")
        self.alice = GatewayClient(self.gw.base_url, alice.key)
        try:
            self._ok(self.alice.http.get("/v1/status"), "status")
        except httpx.HTTPError as exc:
            raise DemoHttpFailed(f"gateway: {exc}") from None

    def _ok(self, r: httpx.Response, what: str) -> Any:
        if r.status_code != 200:
            raise DemoHttpFailed(f"{what}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def health_code(self, story: Any) -> str:
        me = self._me()
        self.code = self._ok(me.get("/v1/me/health-code", subject=me.pseudonym), "health code")
        story.say(f"       (over HTTP) GET /v1/me/health-code: {self.code['colour']}, "
                  f"why: {self.code['why']!r}, credential {self.code['credential'][:24]}...")
        return str(self.code["colour"])

    def post_tx(self, tx: Transaction) -> dict[str, Any]:
        receipt: dict[str, Any] = self._ok(self._me().post_tx(tx.encode(), wait_s=15), "POST /v1/tx")
        return receipt

    def institution_reads(self, story: Any, key: nacl.signing.SigningKey, record_id: str) -> dict[str, Any]:
        assert self.gw is not None
        inst = GatewayClient(self.gw.base_url, key)
        view = self._ok(inst.get(f"/v1/institution/records/{record_id}"), "institution record")
        story.say(f"       (over HTTP) City Hospital fetches {record_id} signed with its member key, "
                  "decrypts it on its side")
        return open_record(view, key)

    def own_record(self, story: Any, record_id: str) -> None:
        me = self._me()
        assert me.key is not None
        view = self._ok(me.get(f"/v1/me/records/{record_id}", subject=me.pseudonym), "own record")
        fields = open_record(view, me.key)
        story.say(f"       (over HTTP) Alice opens {record_id} on her device: {fields}")

    def access_log(self, story: Any) -> list[tuple[Any, Any, Any]]:
        me = self._me()
        log = self._ok(me.get("/v1/me/access-log", subject=me.pseudonym), "access log")
        story.say(f"       (over HTTP) GET /v1/me/access-log: {len(log)} entr{'y' if len(log) == 1 else 'ies'}")
        return [(e["kind"], e["grantee"], e["record_id"]) for e in log]

    def venue_check(self, story: Any) -> None:
        assert self.gw is not None
        trust = TrustList.from_json(self._ok(httpx.get(f"{self.gw.base_url}/v1/trust-list"), "trust list"))
        result = verify(self.code["credential"], trust, now_s=time.time())
        story.say(f"       a venue checks Alice's QR credential offline: "
                  f"{'valid' if result.ok else 'INVALID'}, {result.colour}, issued by "
                  f"{result.issuer_name}, valid {result.valid_until_s - time.time() if result.valid_until_s else 0:.0f} s more")
        if not result.ok or result.colour != self.code["colour"]:
            raise DemoHttpFailed(f"venue check failed: {result.problems}")
        late = verify(self.code["credential"], trust, now_s=(result.valid_until_s or 0) + 1)
        if late.ok:
            raise DemoHttpFailed("an expired credential verified")

    def release(self) -> None:
        self.hold = False
        self.stop()

    def stop(self) -> None:
        if self.hold:
            return
        if self.alice is not None:
            self.alice.close()
            self.alice = None
        if self.gw is not None:
            self.gw.stop()
            self.gw = None
