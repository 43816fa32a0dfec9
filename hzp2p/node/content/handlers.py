"""The `dataset` admin method: publish, fetch, request, approve, deny, revoke, access-log,
show and list, served by the institution's own daemon (which holds its keys).

Publishing encrypts the file into the node's content store and submits data.publish;
fetching checks this institution holds a current key (else a clear refusal), logs the
fetch on chain (data.fetch) so that honest peers serve it, pulls the missing content
from the connected peers (hzp2p.node.content.service) and decrypts it to `out`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from hzp2p.admin.protocol import AdminError
from hzp2p.client import Client
from hzp2p.contracts import datasets as ds
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts import members
from hzp2p.node.content.publish import (
    DatasetError,
    Scope,
    approval_payload,
    describe,
    my_key,
    open_held,
    plan_open,
    plan_publish,
    seal_publication,
)
from hzp2p.node.content.service import ContentService, FetchError
from hzp2p.node.submit import SubmitError
from hzp2p.node.view_handlers import HandlerBase
from hzp2p.storage import SyncStorage

REFUSED_RETRIES = 20
"""A peer refuses until it applied our data.fetch: ask again this many times, 0.25 s apart."""


class DatasetHandlers(HandlerBase):
    """One admin method, `dataset`, whose `action` picks the operation."""

    def _client(self) -> Client:
        n = self.node
        return Client(n.signing_key, n.genesis.chain_id, n.node_id)

    def _content(self) -> ContentService:
        svc = self.node.stack.content
        assert svc is not None, "the daemon always runs a content service"
        return svc

    async def _submit(self, tx_type: str, payload: dict[str, Any], params: Mapping[str, Any],
                      idem: str | None = None) -> dict[str, Any]:
        svc = self.node.submit
        try:
            tx = svc.sign(tx_type, payload, idem)
        except SubmitError as exc:
            raise AdminError("bad_request", f"{tx_type}: {exc}") from None
        return dict(await svc.submit(tx, self._wait(params)))

    async def _state(self, fn: Any) -> Any:
        try:
            return await self.node.storage.call(fn)
        except DatasetError as exc:
            raise AdminError("rejected", str(exc)) from None

    async def dataset(self, params: Mapping[str, Any]) -> Any:
        action = params["action"]
        # Every action reads others' transactions (a request to approve, a grant to fetch
        # under): read at the leader's commit index, so what a receipt said is seen here.
        await self._barrier({"linearizable": True})
        handler = getattr(self, "_ds_" + action.replace("-", "_"))
        for name in _NEEDS[action]:
            if name not in params:
                raise AdminError("bad_request", f"dataset {action}: {name} is required")
        result: Any = await handler(params)
        return result

    # ---------------------------------------------------------------- owner
    async def _ds_publish(self, params: Mapping[str, Any]) -> Any:
        try:
            scope = Scope.parse(params["scope"])
        except DatasetError as exc:
            raise AdminError("bad_request", str(exc)) from None
        src = Path(params["file"])
        meta = dict(params.get("metadata") or {})
        if "title" in params:
            meta["title"] = params["title"]
        client, store = self._client(), self._content().store
        did = params["dataset_id"]
        work = self.node.cfg.data_dir / "content" / "tmp"

        plan = await self._state(lambda s: plan_publish(s, client, did, scope))
        try:
            prep = await trio.to_thread.run_sync(seal_publication, plan, store, src, meta, work)
        except DatasetError as exc:
            raise AdminError("rejected", f"dataset publish: {exc}") from None
        receipt = await self._submit("data.publish", prep.payload, params)
        return {**receipt, "dataset_id": did, "version": prep.version,
                "content_hash": prep.content_hash.hex(), "holders": prep.holders,
                "scope": str(scope)}

    async def _ds_approve(self, params: Mapping[str, Any]) -> Any:
        client, rid = self._client(), params["request_id"]
        payload = await self._state(lambda s: approval_payload(s, client, rid))
        return {**await self._submit("data.approve", payload, params), "request_id": rid}

    async def _ds_deny(self, params: Mapping[str, Any]) -> Any:
        payload = {"request_id": params["request_id"], "reason": params["reason"]}
        return {**await self._submit("data.deny", payload, params),
                "request_id": params["request_id"]}

    async def _ds_revoke(self, params: Mapping[str, Any]) -> Any:
        payload = {"request_id": params["request_id"], "reason": params["reason"]}
        return {**await self._submit("data.revoke", payload, params),
                "request_id": params["request_id"]}

    async def _ds_access_log(self, params: Mapping[str, Any]) -> Any:
        did, me = params["dataset_id"], self.node.node_id

        def read(s: SyncStorage) -> Any:
            rec = ds.dataset(s, did)
            if rec is None:
                raise DatasetError(f"unknown data set {did!r}")
            inst = members.get_institution(s, me)
            if rec["owner"] != me and (inst is None or not inst.has_role("authority")):
                raise DatasetError(f"the access log of {did!r} is for its owner (institution "
                                   f"{rec['owner']}) and the authorities")
            return {"dataset_id": did, "owner": rec["owner"],
                    "entries": dq.jsonable(ds.access_log(s, did)),
                    "requests": dq.jsonable(ds.requests(s, did))}

        return await self._state(read)

    # ---------------------------------------------------------------- anyone
    async def _ds_request(self, params: Mapping[str, Any]) -> Any:
        rid = str(params.get("request_id") or f"rq-{secrets.token_hex(6)}")
        payload = {"request_id": rid, "dataset_id": params["dataset_id"],
                   "purpose": params["purpose"], "days": params["days"]}
        return {**await self._submit("data.request", payload, params), "request_id": rid}

    async def _ds_list(self, params: Mapping[str, Any]) -> Any:
        client = self._client()
        rows = await self._state(lambda s: [describe(s, client, r) for r in ds.datasets(s)])
        return {"datasets": dq.jsonable(rows)}

    async def _ds_show(self, params: Mapping[str, Any]) -> Any:
        client, did = self._client(), params["dataset_id"]

        def read(s: SyncStorage) -> Any:
            vs = ds.versions(s, did)
            if not vs:
                raise DatasetError(f"unknown data set {did!r}")
            return {"dataset_id": did, "versions": [describe(s, client, r) for r in vs]}

        return dq.jsonable(await self._state(read))

    async def _ds_fetch(self, params: Mapping[str, Any]) -> Any:
        """Decrypt a version to `out`, pulling its content from the peers first if needed."""
        did, client, svc = params["dataset_id"], self._client(), self._content()
        out = Path(params["out"])
        rec, logged = await self._ensure_held(params)
        version, h = int(rec["version"]), bytes(rec["content_hash"])
        opening = await self._state(
            lambda s: plan_open(s, client, did, version, int(time.time() * 1000)))
        try:
            size = await trio.to_thread.run_sync(open_held, svc.store, opening, out)
        except DatasetError as exc:
            raise AdminError("rejected", f"dataset fetch: {exc}") from None
        return {"dataset_id": did, "version": version, "out": str(out), "size": size,
                "content_hash": h.hex(), "fetch_tx": logged}

    async def _ds_pull(self, params: Mapping[str, Any]) -> Any:
        """Only get a version's content into this node's store (the gateway serves from it)."""
        rec, logged = await self._ensure_held(params)
        return {"dataset_id": rec["dataset_id"], "version": rec["version"],
                "content_hash": bytes(rec["content_hash"]).hex(), "fetch_tx": logged}

    async def _ensure_held(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The version's record, once its content is in this node's store: checks this
        institution may have it (a clear refusal otherwise), logs the fetch on chain
        (data.fetch, restricted data sets) and pulls the content from the peers."""
        did, client, svc = params["dataset_id"], self._client(), self._content()
        now_ms = int(time.time() * 1000)

        def check(s: SyncStorage) -> dict[str, Any]:
            rec = ds.dataset(s, did, params.get("version"))
            if rec is None:
                raise DatasetError(f"unknown data set {did!r}"
                                   + (f" version {params['version']}" if "version" in params else ""))
            if "size" not in rec:
                raise DatasetError(f"{did!r} version {rec['version']} was published without "
                                   "content (data rules v1)")
            if rec.get("encrypted"):
                my_key(s, client, did, int(rec["version"]), now_ms)  # refuses a non-holder
            return rec

        rec = await self._state(check)
        version, h = int(rec["version"]), bytes(rec["content_hash"])
        logged = None
        if not svc.store.has(h):
            if rec.get("encrypted"):
                receipt = await self._submit("data.fetch", {"dataset_id": did, "version": version},
                                             params, idem=secrets.token_hex(8))
                if receipt.get("status") != "committed":
                    raise AdminError("rejected", "data.fetch: "
                                     f"{receipt.get('reason') or receipt.get('status')}")
                logged = receipt.get("tx_hash")
            await self._pull(svc, h, did, version)
        return rec, logged

    async def _pull(self, svc: ContentService, h: bytes, did: str, version: int) -> None:
        peers = self.node.transport.connected_peers
        for attempt in range(REFUSED_RETRIES + 1):
            try:
                await svc.fetch(h, did, version, peers)
                return
            except FetchError as exc:
                if not exc.refused or attempt == REFUSED_RETRIES:
                    raise AdminError("unavailable", f"dataset fetch: {exc}") from None
                await trio.sleep(0.25)  # peers that have not applied our data.fetch yet


_NEEDS: dict[str, tuple[str, ...]] = {
    "publish": ("dataset_id", "file", "scope"),
    "fetch": ("dataset_id", "out"),
    "pull": ("dataset_id",),
    "request": ("dataset_id", "purpose", "days"),
    "approve": ("request_id",),
    "deny": ("request_id", "reason"),
    "revoke": ("request_id", "reason"),
    "access-log": ("dataset_id",),
    "show": ("dataset_id",),
    "list": (),
}
ACTIONS = tuple(_NEEDS)
