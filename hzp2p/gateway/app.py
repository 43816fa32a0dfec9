"""The FastAPI application: public routes here, signed ones in hzp2p.gateway.routes_signed.

`create_app(ctx)` builds the app around a GatewayContext; every path is under
/v1 except /healthz, /openapi.json, /docs and the web pages (hzp2p.gateway.page). Public routes
read committed state only and need no signature.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request

from hzp2p.analytics.aggregates import epi_summary as summarise_reports
from hzp2p.contracts import members
from hzp2p.contracts.api import decode_value
from hzp2p.contracts.credentials import credential_keys
from hzp2p.contracts.domain_queries import jsonable
from hzp2p.contracts.epi import k_dataset
from hzp2p.contracts.exposure import exposures
from hzp2p.contracts.notices import notices
from hzp2p.gateway import models, page, problems, routes_datasets, routes_proof, routes_signed
from hzp2p.gateway.context import GatewayContext
from hzp2p.gateway.problems import ApiProblem
from hzp2p.gateway.store import StoreUnavailable

API_VERSION = "1.0.0"
_LABEL = r"^[A-Za-z0-9._:\- ]{1,64}$"
MAX_LIST = 1000

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "model": models.Problem,
        "description": text,
        "content": {problems.PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for code, text in (
        (400, "Bad request"),
        (404, "Not found"),
        (413, "Body too large"),
        (422, "Invalid request"),
        (429, "Rate limited (see Retry-After)"),
        (431, "Headers too large"),
        (503, "Unavailable (daemon unreachable, busy)"),
        (504, "Timed out"),
    )
}

def ctx_of(request: Request) -> GatewayContext:
    c: GatewayContext = request.app.state.ctx
    return c


def create_app(ctx: GatewayContext) -> FastAPI:
    app = FastAPI(
        title="hzp2p gateway",
        version=API_VERSION,
        description="Citizens, venues, researchers and the public reach the hzp2p public-health "
        "ledger here. Personal data needs a signed request (docs/gateway.md); decryption "
        "happens on the caller's device, never here.",
        responses=PROBLEM_RESPONSES,
    )
    app.state.ctx = ctx
    problems.install(app)

    async def on_store(request: Request, exc: Exception) -> Any:
        return problems._response(
            problems.problem(503, "state-unavailable", str(exc), request.url.path), {"Retry-After": "1"}
        )

    app.add_exception_handler(StoreUnavailable, on_store)

    page.register(app)  # the web pages: /, /citizen, /venue and their /assets

    @app.get("/healthz", response_model=models.Health, tags=["operations"])
    async def healthz(request: Request) -> models.Health:
        """200 while committed state can be read."""
        with ctx_of(request).store.snapshot() as s:
            return models.Health(ok=True, height=s.tip_height())

    @app.get("/v1/status", response_model=models.Status, tags=["public"])
    async def status(request: Request) -> models.Status:
        """Chain id, height, whether a leader is known, time of the last block."""
        c = ctx_of(request)
        st = await c.link.status()
        with c.store.snapshot() as s:
            h = s.tip_height()
            head = s.block(h) if h else None
        leader = st.get("leader_id") if st else None
        return models.Status(
            chain_id=c.store.chain_id,
            height=h,
            head_hash=(head.hash if head else c.store.genesis_hash).hex(),
            last_block_ms=head.timestamp_ms if head else None,
            leader_known=leader is not None,
            leader_id=leader,
            node_reachable=st is not None,
        )

    @app.get("/v1/blocks/{height}", response_model=models.BlockView, tags=["public"])
    async def block(
        request: Request, height: Annotated[int, Path(ge=1, le=2**62)]
    ) -> models.BlockView:
        """A block's header and its transactions' hashes, types and verdicts (no payloads)."""
        with ctx_of(request).store.snapshot() as s:
            b = s.block(height)
            if b is None:
                raise ApiProblem(404, "not-found", f"no block at height {height} (height is {s.tip_height()})")
            txs = s.block_txs(height)
        return models.BlockView(
            height=b.height, hash=b.hash.hex(), prev_hash=b.prev_hash.hex(),
            merkle_root=b.merkle_root.hex(), state_digest=b.state_digest.hex(),
            proposer=b.proposer, timestamp_ms=b.timestamp_ms,
            txs=[
                models.BlockTx(
                    tx_hash=t.tx_hash.hex(), type=t.tx_type,
                    status="committed" if t.status == "applied" else "rejected", reason=t.reason,
                )
                for t in txs
            ],
        )

    @app.get("/v1/trust-list", response_model=models.TrustListView, tags=["public"])
    async def trust_list(request: Request) -> models.TrustListView:
        """Members, roles, keys, voters and health-code credential keys, valid at `height`.
        Venue verifiers download this and check credentials offline against it."""
        c = ctx_of(request)
        with c.store.snapshot() as s:
            h = s.tip_height()
            head = s.block(h) if h else None
            insts = members.institutions(s)
            keys = credential_keys(s)
        return models.TrustListView(
            chain_id=c.store.chain_id,
            height=h,
            block_time_ms=head.timestamp_ms if head else None,
            generated_ms=c.now_ms(),
            members=[
                models.Member(
                    inst_id=i.inst_id, name=i.name, roles=sorted(i.roles),
                    signing_key=i.signing_key.hex(), node_key=i.node_key.hex(),
                    voter=i.voter, active=i.active,
                )
                for i in insts
            ],
            voters=sorted(i.inst_id for i in insts if i.voter and i.active),
            credential_keys=[
                models.CredentialKey(
                    kid=k["kid"].hex(), inst_id=k["inst_id"], public_key=k["public_key"].hex(),
                    registered_ms=k["registered_ms"], revoked_ms=k["revoked_ms"],
                )
                for k in keys
            ],
        )

    @app.get("/v1/epi/summary", response_model=models.EpiSummary, tags=["public"])
    async def epi_summary(
        request: Request,
        metric: Annotated[str | None, Query(pattern=_LABEL)] = None,
        region: Annotated[str | None, Query(pattern=_LABEL)] = None,
        period_from: Annotated[str | None, Query(alias="from", pattern=_LABEL)] = None,
        period_to: Annotated[str | None, Query(alias="to", pattern=_LABEL)] = None,
    ) -> models.EpiSummary:
        """Totals of `epi.report` values by region, metric and period (from/to: inclusive
        period bounds, compared as text)."""
        with ctx_of(request).store.snapshot() as s:
            h = s.tip_height()
            buckets = summarise_reports(s, metric, region, period_from, period_to)
        return models.EpiSummary(
            metric=metric, region=region, period_from=period_from, period_to=period_to, height=h,
            buckets=[
                models.EpiBucket(region=b["region"], metric=b["metric"], period=b["period"],
                                 total=b["value"], reports=b["reports"])
                for b in buckets
            ],
        )

    @app.get("/v1/datasets", response_model=list[models.Dataset], tags=["public"])
    async def datasets(
        request: Request, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100
    ) -> list[models.Dataset]:
        """Data sets published with access "public" (latest version of each)."""
        out = []
        with ctx_of(request).store.snapshot() as s:
            prefix = k_dataset("")
            for _, raw in s.scan(prefix):
                d = decode_value(raw)
                if d["access"] != "public":
                    continue
                out.append(
                    models.Dataset(
                        dataset_id=d["dataset_id"], version=d["version"],
                        metadata=jsonable(d["metadata"]), content_hash=d["content_hash"].hex(),
                        publisher=d["publisher"], timestamp_ms=d["timestamp_ms"], height=d["height"],
                    )
                )
                if len(out) >= limit:
                    break
        return out

    @app.get("/v1/exposures", response_model=list[models.Exposure], tags=["public"])
    async def list_exposures(
        request: Request, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    ) -> list[models.Exposure]:
        """Published exposures (`exposure.publish`), newest first: venues and windows an app
        matches its own check-ins against, on the phone."""
        with ctx_of(request).store.snapshot() as s:
            found = exposures(s)
        found.sort(key=lambda e: (e["height"], e["exposure_id"]), reverse=True)
        return [models.Exposure(**{k: e[k] for k in models.Exposure.model_fields})
                for e in found[:limit]]

    @app.get("/v1/notices", response_model=list[models.Notice], tags=["public"])
    async def list_notices(
        request: Request,
        region: Annotated[str | None, Query(pattern=_LABEL)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    ) -> list[models.Notice]:
        """Policy notices published by authorities (`notice.publish`), newest first."""
        with ctx_of(request).store.snapshot() as s:
            found = notices(s)
        found = [n for n in found if region is None or n["region"] == region]
        found.sort(key=lambda n: (n["height"], n["notice_id"]), reverse=True)
        return [
            models.Notice(**{k: n[k] for k in models.Notice.model_fields}) for n in found[:limit]
        ]

    routes_signed.register(app)
    routes_proof.register(app)
    routes_datasets.register(app)
    return app

