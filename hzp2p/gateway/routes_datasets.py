"""Data-set content through the gateway: public data sets for anyone, restricted ones as
ciphertext for a signed request from an institution that may have them.

* `GET /v1/datasets/{id}/content[?version=V]` — a public data set's content, no signature.
* `GET /v1/datasets/{id}/blob[?version=V]` — a restricted data set's stored blob (the
  ciphertext), signed with a member's key; served only as an honest node serves a peer
  (hzp2p.contracts.datasets.may_serve: a current key and a logged `data.fetch`, submitted
  e.g. through `POST /v1/tx`). The institution decrypts on its side with its sealed key
  (hzp2p.gateway.client.open_dataset: its sealed key comes in X-HZ-Sealed-Key, as on
  chain); the gateway never holds a data-set key.
Content not yet on this node is pulled from its peers first (admin `dataset` pull).
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import FileResponse

from hzp2p.contracts import datasets as ds
from hzp2p.contracts import members
from hzp2p.gateway.context import GatewayContext
from hzp2p.gateway.link import LinkError, LinkRefused
from hzp2p.gateway.problems import ApiProblem
from hzp2p.gateway.routes_signed import SIGNED_DOC, Key, _problems
from hzp2p.node.content.store import ContentStore

_ID = r"^[A-Za-z0-9._:\-]{1,128}$"


def _ctx(request: Request) -> GatewayContext:
    c: GatewayContext = request.app.state.ctx
    return c


def _store(c: GatewayContext) -> ContentStore:
    return ContentStore(FsPath(c.store.path).parent / "content")


async def _held(c: GatewayContext, rec: dict[str, Any]) -> FsPath:
    store = _store(c)
    h = bytes(rec["content_hash"])
    if not store.has(h):
        try:
            await c.link.call("dataset", {"action": "pull", "dataset_id": rec["dataset_id"],
                                          "version": rec["version"]}, timeout_s=120)
        except LinkRefused as exc:
            if exc.code == "rejected":  # this node may not get it (its institution holds no key)
                raise ApiProblem(404, "content-not-held", exc.message) from None
            raise ApiProblem(503, f"daemon-{exc.code}", exc.message) from None
        except LinkError as exc:
            raise ApiProblem(503, "daemon-unreachable", str(exc),
                             headers={"Retry-After": "1"}) from None
    return store.blob_path(h)


def _record(c: GatewayContext, did: str, version: int | None) -> dict[str, Any]:
    with c.store.snapshot() as s:
        rec = ds.dataset(s, did, version)
    if rec is None:
        raise ApiProblem(404, "unknown-dataset", f"no data set {did!r}"
                         + (f" version {version}" if version is not None else ""))
    return rec


def _headers(rec: dict[str, Any]) -> dict[str, str]:
    return {"X-HZ-Content-Hash": bytes(rec["content_hash"]).hex(),
            "X-HZ-Dataset-Version": str(rec["version"])}


def register(app: FastAPI) -> None:
    router = APIRouter()

    @router.get("/v1/datasets/{dataset_id}/content", tags=["public"],
                response_class=FileResponse,
                responses={200: {"content": {"application/octet-stream": {}}},
                           **_problems({403: "Restricted data set",
                                        404: "Unknown data set, or content this node cannot get",
                                        503: "Content unavailable"})})
    async def dataset_content(
        request: Request,
        dataset_id: Annotated[str, Path(pattern=_ID)],
        version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    ) -> FileResponse:
        """A public data set's content (the latest version unless `version`), no signature."""
        c = _ctx(request)
        rec = _record(c, dataset_id, version)
        if rec.get("encrypted") or rec.get("access") != "public":
            raise ApiProblem(403, "restricted-dataset",
                             f"{dataset_id!r} is not public: a key holder asks for /blob, signed")
        if "size" not in rec:
            raise ApiProblem(404, "no-content", f"{dataset_id!r} was published without content")
        path = await _held(c, rec)
        return FileResponse(path, media_type="application/octet-stream", headers=_headers(rec),
                            filename=f"{dataset_id}-v{rec['version']}")

    @router.get("/v1/datasets/{dataset_id}/blob", tags=["institutions"],
                response_class=FileResponse, openapi_extra=SIGNED_DOC,
                responses={200: {"content": {"application/octet-stream": {}}},
                           **_problems({401: "Signature missing or invalid",
                                        403: "Not a current key holder with a logged data.fetch",
                                        404: "Unknown data set, or content this node cannot get",
                                        503: "Content unavailable"})})
    async def dataset_blob(
        request: Request, key: Key,
        dataset_id: Annotated[str, Path(pattern=_ID)],
        version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    ) -> FileResponse:
        """A data set's stored blob (ciphertext when restricted) for a member institution
        that may have it now; it decrypts with its own sealed key."""
        c = _ctx(request)
        rec = _record(c, dataset_id, version)
        with c.store.snapshot() as s:
            inst = members.institution_by_key(s, key)
            if inst is None or not inst.active:
                raise c.auth.refuse_forbidden("not-member",
                                              "this key is not an active member's signing key")
            why = ds.may_serve(s, dataset_id, int(rec["version"]), inst.inst_id, c.now_ms())
            holder = ds.live_holder(s, dataset_id, int(rec["version"]), inst.inst_id, c.now_ms())
        if why is not None:
            raise c.auth.refuse_forbidden("no-dataset-access", why)
        path = await _held(c, rec)
        headers = _headers(rec)
        if holder is not None:  # the caller's own sealed key, as on chain: it opens it there
            headers["X-HZ-Sealed-Key"] = bytes(holder["sealed_key"]).hex()
            headers["X-HZ-Key-Commitment"] = bytes(rec["key_commitment"]).hex()
        return FileResponse(path, media_type="application/octet-stream", headers=headers)

    app.include_router(router)
