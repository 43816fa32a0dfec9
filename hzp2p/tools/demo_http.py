"""The citizen's app (and the hospital's records client) in `hzp2p demo`, over HTTP.

Alice has no admin socket: her phone holds her key file (`hzp2p citizen-key`) and talks
to a real gateway (`hzp2p gateway`, started by the node's operator). Each method is one
thing her app does: sign a transaction on the phone and POST /v1/tx (a check-in sealed
to her alone, the declaration of a matched exposure, an appeal, a grant), read her code,
her code's history, her records and her access log, and match her own check-ins
against the published exposures (GET /v1/exposures) on the phone (nothing is sent for
a miss). The hospital fetches a record it
was handed, signed with its member key, and decrypts it on its side; a venue verifies
her QR credential offline against the downloaded trust list. The operators' steps are
`hzp2p` commands (hzp2p.tools.demo_story); only what an app does is here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from hzp2p.client import Client, parse_venue_qr
from hzp2p.credentials.verify import TrustList, verify
from hzp2p.gateway.client import GatewayClient, open_record
from hzp2p.ledger.tx import Transaction
from hzp2p.node.keys import KeyFileError, load_signing_key
from hzp2p.tools.gatewayrun import Gateway, GatewayStartError, add_gateway, launch_gateway
from hzp2p.tools.localcluster import ClusterError, LocalCluster


class DemoHttpFailed(ClusterError):
    """A step over HTTP went wrong (the demo reports it as it reports a cluster failure)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CitizenApp:
    """Alice's app against the gateway of one node (and the venue's and hospital's clients)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        # every daemon shares its database from the start: any of them may host the gateway
        self.ports = {k: add_gateway(cluster, k) for k in cluster.ids}
        self.gw: Gateway | None = None
        self.me: GatewayClient | None = None
        self.client: Client | None = None
        self.chain_id = ""
        self.code: dict[str, Any] = {}
        self.posted = 0
        """Transactions her app posted (for the demo's count)."""

    # ------------------------------------------------------------ the gateway
    def start_gateway(self, node: int) -> tuple[str, str]:
        """`hzp2p gateway --config` for `node`; (its URL, its credential public key hex)."""
        try:
            self.gw = launch_gateway(self.cluster, node, self.ports[node])
        except GatewayStartError as exc:
            raise DemoHttpFailed(str(exc)) from None
        self._ok(httpx.get(f"{self.gw.base_url}/v1/status"), "status")
        return self.gw.base_url, self.gw.credential_public_key().hex()

    def open(self, key_file: Path, chain_id: str) -> str:
        """Alice's app with her key file; returns her pseudonym."""
        assert self.gw is not None, "start_gateway() first"
        try:
            key = load_signing_key(key_file)
        except KeyFileError as exc:
            raise DemoHttpFailed(str(exc)) from None
        self.chain_id = chain_id
        self.client = Client(key, chain_id)
        self.me = GatewayClient(self.gw.base_url, key)
        return self.me.pseudonym

    def _ok(self, r: httpx.Response, what: str) -> Any:
        if r.status_code != 200:
            raise DemoHttpFailed(f"{what}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def _app(self) -> tuple[GatewayClient, Client]:
        assert self.me is not None and self.client is not None, "open() first"
        return self.me, self.client

    def post(self, tx: Transaction) -> dict[str, Any]:
        """POST /v1/tx: the gateway hands her signed transaction to its node."""
        me, _ = self._app()
        receipt: dict[str, Any] = self._ok(me.post_tx(tx.encode(), wait_s=15), "POST /v1/tx")
        self.posted += 1
        return receipt

    # ------------------------------------------------------------ what her app does
    def health_code(self) -> dict[str, Any]:
        me, _ = self._app()
        self.code = self._ok(me.get("/v1/me/health-code", subject=me.pseudonym), "health code")
        return self.code

    def checkin(self, qr_text: str) -> tuple[dict[str, Any], int]:
        """Scan a venue's QR code (its signature checked on the phone) and record the visit,
        sealed to her alone; (the receipt, the time of the visit)."""
        _, app = self._app()
        qr = parse_venue_qr(qr_text, self.chain_id)
        t = _now_ms()
        return self.post(app.checkin(t, [(qr, t)])), t

    def my_checkins(self) -> list[dict[str, Any]]:
        """Her check-ins, decrypted on her phone: venue_id and time of each."""
        me, _ = self._app()
        assert me.key is not None
        out = []
        for rec in self._ok(me.get("/v1/me/records", subject=me.pseudonym), "records"):
            if rec["type"] != "checkin" or rec["erased"]:
                continue
            view = self._ok(me.get(f"/v1/me/records/{rec['record_id']}", subject=me.pseudonym),
                            "record")
            f = open_record(view, me.key)
            out.append({"venue_id": f["venue_id"], "t_ms": f["t_ms"]})
        return out

    def exposures(self) -> list[dict[str, Any]]:
        """The published exposures (GET /v1/exposures, public)."""
        assert self.gw is not None
        found: list[dict[str, Any]] = self._ok(httpx.get(f"{self.gw.base_url}/v1/exposures"),
                                               "exposures")
        return found

    def match(self) -> list[str]:
        """The published exposures one of her check-ins falls in, matched on the phone:
        what she downloads is the public list; her visits never leave it."""
        exposures = self.exposures()
        visits = self.my_checkins()
        return [e["exposure_id"] for e in exposures
                if any(v["venue_id"] == e["venue_id"] and e["from_ms"] <= v["t_ms"] <= e["to_ms"]
                       for v in visits)]

    def code_history(self) -> list[dict[str, Any]]:
        """Her code's changes with their event numbers (what an appeal names)."""
        me, _ = self._app()
        hist: list[dict[str, Any]] = self._ok(
            me.get("/v1/me/health-code/history", subject=me.pseudonym), "code history")
        return hist

    def declare(self, exposure_id: str) -> dict[str, Any]:
        _, app = self._app()
        return self.post(app.declare_exposure(_now_ms(), exposure_id))

    def appeal(self, appeal_id: str, event: int, reason: str) -> dict[str, Any]:
        _, app = self._app()
        return self.post(app.appeal(_now_ms(), appeal_id=appeal_id, event=event, reason=reason))

    def grant(self, grant_id: str, grantee: int, purpose: str) -> dict[str, Any]:
        _, app = self._app()
        t = _now_ms()
        return self.post(app.grant(t, grant_id=grant_id, grantee=grantee,
                                   record_types=["vaccination"], purpose=purpose,
                                   expiry_ms=t + 86_400_000))

    def own_record(self, record_id: str) -> dict[str, Any]:
        me, _ = self._app()
        assert me.key is not None
        view = self._ok(me.get(f"/v1/me/records/{record_id}", subject=me.pseudonym), "own record")
        return open_record(view, me.key)

    def access_log(self) -> list[dict[str, Any]]:
        me, _ = self._app()
        log: list[dict[str, Any]] = self._ok(
            me.get("/v1/me/access-log", subject=me.pseudonym), "access log")
        return log

    # ------------------------------------------------------------ other institutions' software
    def institution_reads(self, key_file: Path, record_id: str) -> dict[str, Any]:
        """An institution fetches a record it holds a key of, signed with its member key,
        and decrypts it on its side."""
        assert self.gw is not None
        try:
            key = load_signing_key(key_file)
        except KeyFileError as exc:
            raise DemoHttpFailed(str(exc)) from None
        inst = GatewayClient(self.gw.base_url, key)
        try:
            view = self._ok(inst.get(f"/v1/institution/records/{record_id}"), "institution record")
        finally:
            inst.close()
        return open_record(view, key)

    def venue_check(self) -> str:
        """A venue checks Alice's QR credential offline against the downloaded trust list."""
        assert self.gw is not None
        trust = TrustList.from_json(self._ok(httpx.get(f"{self.gw.base_url}/v1/trust-list"),
                                             "trust list"))
        result = verify(self.code["credential"], trust, now_s=time.time())
        if not result.ok or result.colour != self.code["colour"]:
            raise DemoHttpFailed(f"venue check failed: {result.problems}")
        late = verify(self.code["credential"], trust, now_s=(result.valid_until_s or 0) + 1)
        if late.ok:
            raise DemoHttpFailed("an expired credential verified")
        return (f"valid, {result.colour}, issued by {result.issuer_name}, valid "
                f"{(result.valid_until_s or 0) - time.time():.0f} s more")

    def stop(self) -> None:
        if self.me is not None:
            self.me.close()
            self.me = None
        if self.gw is not None:
            self.gw.stop()
            self.gw = None
