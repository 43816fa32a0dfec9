"""Signed routes: a citizen's own data (/v1/me), transactions (/v1/tx), institutions' reads.

Citizens sign with the key that names their pseudonym and say which pseudonym
they ask about (X-HZ-Subject); the key must hash to it. Institutions sign with
their member signing key, checked against current membership at the height
read. Records come back encrypted with the caller's own sealed key only:
decryption happens on the caller's device (hzp2p.gateway.client).
"""

from __future__ import annotations

from typing import Annotated, Any

import trio
from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response

from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts import members
from hzp2p.contracts.api import Institution, TxRejected, decode_value
from hzp2p.contracts.codelife import (
    code_history,
    default_code,
    effective_code,
    healthcode_rules,
)
from hzp2p.contracts.credentials import credential_key, key_id
from hzp2p.contracts.domain_queries import jsonable
from hzp2p.contracts.engine import check_tx_payload
from hzp2p.credentials import cose
from hzp2p.crypto.records import SUBJECT_HOLDER, institution_holder, pseudonym
from hzp2p.gateway import models, signing
from hzp2p.gateway.auth import SignedRequest
from hzp2p.gateway.context import GatewayContext
from hzp2p.gateway.link import LinkError, LinkRefused
from hzp2p.gateway.problems import PROBLEM_TYPE, ApiProblem
from hzp2p.gateway.store import Snapshot
from hzp2p.ledger.tx import TxError, decode_tx

_ID = r"^[A-Za-z0-9._:\-]{1,64}$"
_SUBJECT = r"^[0-9a-f]{32}$"
_HASH = r"^[0-9a-f]{64}$"
LOT_READERS = frozenset({"authority", "manufacturer", "carrier", "vaccination_site", "observer"})
SIGNED = {401: "Signature missing or invalid", 403: "Signed by a key that may not ask this"}


def _ctx(request: Request) -> GatewayContext:
    c: GatewayContext = request.app.state.ctx
    return c


def _header(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": text,
            "schema": {"type": "string"}}


SIGNED_HEADERS = [
    _header("X-HZ-Key", "signer's Ed25519 public key, 64 hex digits"),
    _header("X-HZ-Timestamp", "milliseconds since the epoch, within ±60 s of the gateway's clock"),
    _header("X-HZ-Nonce", "16..64 of [A-Za-z0-9_-], used once"),
    _header("X-HZ-Signature", "Ed25519 signature (128 hex digits) of the request message"),
]
"""The signature headers, documented on every signed operation. They are read from the raw
request rather than declared as FastAPI parameters: declaring them costs more per request
than checking the signature (hzp2p.gateway.signing says what is signed)."""
SUBJECT_HEADER = _header("X-HZ-Subject", "the pseudonym asked about (the key must hash to it)")
SIGNED_DOC: dict[str, Any] = {"parameters": SIGNED_HEADERS}
CITIZEN_DOC: dict[str, Any] = {"parameters": [*SIGNED_HEADERS, SUBJECT_HEADER]}


async def signed_key(request: Request) -> bytes:
    """The verified key of a signed request (hzp2p.gateway.signing)."""
    c = _ctx(request)
    body = await request.body() if request.method != "GET" else b""
    scope = request.scope
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    req = SignedRequest(
        request.method,
        # the path as sent (percent-encoding included): what the client signed
        scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
        scope.get("query_string", b"").decode("latin-1"),
        headers,
        body,
    )
    return c.auth.check(req, c.now_ms(), trio.current_time())


Key = Annotated[bytes, Depends(signed_key)]


async def me(request: Request, key: Key) -> str:
    """The pseudonym a citizen request asks about (X-HZ-Subject), checked against its key."""
    c = _ctx(request)
    subject = request.headers.get(signing.H_SUBJECT)
    if not subject:
        raise c.auth.refuse_forbidden("no-subject", f"{signing.H_SUBJECT} is required on /v1/me")
    if pseudonym(key) != subject:
        raise c.auth.refuse_forbidden("wrong-subject", "this key does not name that pseudonym")
    return subject


Me = Annotated[str, Depends(me)]


def _problems(extra: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {
        k: {
            "model": models.Problem,
            "description": v,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for k, v in extra.items()
    }


def register(app: FastAPI) -> None:
    router = APIRouter(responses=_problems(SIGNED))

    def member_of(s: Snapshot, c: GatewayContext, key: bytes) -> Institution:
        inst = members.institution_by_key(s, key)
        if inst is None or not inst.active:
            raise c.auth.refuse_forbidden("not-member", "this key is not an active member's signing key")
        return inst

    # ------------------------------------------------------------ citizens

    @router.get("/v1/me/records", response_model=list[models.RecordSummary], tags=["citizen"], openapi_extra=CITIZEN_DOC)
    async def my_records(request: Request, subject: Me) -> list[models.RecordSummary]:
        """Her records (metadata only; fetch one to get its ciphertext)."""
        with _ctx(request).store.snapshot() as s:
            recs = dq.subject_records(s, subject)
        return [_summary(r) for r in recs]

    @router.get("/v1/me/records/{record_id}", response_model=models.RecordView, tags=["citizen"], openapi_extra=CITIZEN_DOC)
    async def my_record(
        request: Request, subject: Me, record_id: Annotated[str, Path(pattern=_ID)]
    ) -> models.RecordView:
        """One record: ciphertext and her own sealed key (decrypt on her device)."""
        with _ctx(request).store.snapshot() as s:
            rec = dq.record(s, record_id)
        if rec is None or rec["subject"] != subject:
            raise ApiProblem(404, "not-found", f"no record {record_id!r} of this subject")
        return _view(rec, SUBJECT_HOLDER)

    @router.get("/v1/me/access-log", response_model=list[models.AccessEntry], tags=["citizen"], openapi_extra=CITIZEN_DOC)
    async def my_access_log(request: Request, subject: Me) -> list[models.AccessEntry]:
        """Who received keys to her records (or asked in an emergency), when and why."""
        with _ctx(request).store.snapshot() as s:
            log = dq.access_log(s, subject)
        return [_access(e) for e in log]

    @router.get("/v1/me/grants", response_model=list[models.Grant], tags=["citizen"], openapi_extra=CITIZEN_DOC)
    async def my_grants(request: Request, subject: Me) -> list[models.Grant]:
        """Her consent grants, revoked ones included."""
        with _ctx(request).store.snapshot() as s:
            gs = dq.grants(s, subject)
        return [models.Grant(**{k: g[k] for k in models.Grant.model_fields}) for g in gs]

    @router.get("/v1/me/health-code", response_model=models.HealthCode, tags=["citizen"], openapi_extra=CITIZEN_DOC)
    async def my_health_code(request: Request, subject: Me) -> Response:
        """Her colour, since when and why, with a short-lived signed credential for a QR code."""
        # The hottest route (venues scan these): serialised straight from the model it built,
        # without FastAPI validating it a second time against response_model.
        code = health_code(_ctx(request), subject)
        return Response(code.model_dump_json(), media_type="application/json")

    @router.get("/v1/me/health-code/history", response_model=list[models.CodeEvent], tags=["citizen"], openapi_extra=CITIZEN_DOC)
    async def my_code_history(request: Request, subject: Me) -> list[models.CodeEvent]:
        """Every change of her code, oldest first, with why and its transaction; `seq` is what
        an appeal (`healthcode.appeal`) names."""
        with _ctx(request).store.snapshot() as s:
            hist = code_history(s, subject)
        return [models.CodeEvent(
            seq=e.get("seq"), event=e["event"], colour=e["colour"], changed=e.get("changed"),
            reason=str(e.get("reason") or ""), timestamp_ms=e.get("timestamp_ms"),
            height=e.get("height"),
            tx_hash=e["tx_hash"].hex() if isinstance(e.get("tx_hash"), bytes) else None)
            for e in hist]

    # ------------------------------------------------------------ transactions

    @router.post("/v1/tx", response_model=models.Receipt, tags=["citizen"], openapi_extra=SIGNED_DOC)
    async def post_tx(request: Request, key: Key, body: models.TxPost) -> models.Receipt:
        """Forward a transaction the caller signed (grant, revoke, erase, ...), after the
        contract's stateless payload check; waits up to wait_s for its commit."""
        c = _ctx(request)
        try:
            tx = decode_tx(bytes.fromhex(body.tx))
            tx.verify()
        except ValueError:
            raise ApiProblem(400, "bad-transaction", "tx must be hex") from None
        except TxError as exc:
            raise ApiProblem(400, "bad-transaction", str(exc)) from None
        if tx.signer != key:
            raise c.auth.refuse_forbidden("not-signer", "post transactions signed by the key that signs the request")
        try:
            check_tx_payload(tx)
        except TxRejected as exc:
            c.metrics.tx_forwarded.labels(outcome="refused").inc()
            raise ApiProblem(
                422, "invalid-payload", exc.reason,
                errors=[{"field": p.field, "reason": p.reason} for p in exc.problems]
                or [{"field": "type", "reason": exc.reason}],
            ) from None
        wait_s = min(body.wait_s, c.cfg.max_tx_wait_s)
        try:
            receipt = await c.link.submit_raw(tx.encode().hex(), wait_s)
        except LinkRefused as exc:
            c.metrics.tx_forwarded.labels(outcome="refused").inc()
            status = 503 if exc.code in ("not_leader", "unavailable", "timeout") else 422
            raise ApiProblem(status, f"daemon-{exc.code}", exc.message) from None
        except LinkError as exc:
            raise ApiProblem(503, "daemon-unreachable", str(exc), headers={"Retry-After": "1"}) from None
        c.metrics.tx_forwarded.labels(outcome=str(receipt.get("status"))).inc()
        return models.Receipt(
            tx_hash=str(receipt.get("tx_hash") or tx.hash.hex()),
            status=str(receipt.get("status")),
            height=receipt.get("height"), index=receipt.get("index"),
            type=tx.tx_type, reason=receipt.get("reason"),
        )

    @router.get("/v1/tx/{tx_hash}", response_model=models.Receipt, tags=["citizen"], openapi_extra=SIGNED_DOC)
    async def get_tx(
        request: Request, key: Key, tx_hash: Annotated[str, Path(pattern=_HASH)]
    ) -> models.Receipt:
        """Where a transaction landed (committed or rejected), from committed blocks."""
        with _ctx(request).store.snapshot() as s:
            t = s.tx(bytes.fromhex(tx_hash))
        if t is None:
            raise ApiProblem(404, "not-found", "no committed block holds this transaction (yet)")
        return models.Receipt(
            tx_hash=tx_hash, status="committed" if t.status == "applied" else "rejected",
            height=t.height, index=t.position, type=t.tx_type, reason=t.reason,
        )

    # ------------------------------------------------------------ institutions

    @router.get("/v1/institution/me", response_model=models.InstitutionView, tags=["institution"], openapi_extra=SIGNED_DOC)
    async def inst_me(request: Request, key: Key) -> models.InstitutionView:
        """The member the signing key belongs to."""
        c = _ctx(request)
        with c.store.snapshot() as s:
            inst = member_of(s, c, key)
        return models.InstitutionView(inst_id=inst.inst_id, name=inst.name, roles=sorted(inst.roles))

    @router.get("/v1/institution/records", response_model=list[models.RecordSummary], tags=["institution"], openapi_extra=SIGNED_DOC)
    async def inst_records(request: Request, key: Key) -> list[models.RecordSummary]:
        """The live records whose key this institution holds."""
        c = _ctx(request)
        with c.store.snapshot() as s:
            inst = member_of(s, c, key)
            recs = [dq.record(s, rid) for rid in dq.held_records(s, inst.inst_id)]
        return [_summary(r) for r in recs if r is not None]

    @router.get("/v1/institution/records/{record_id}", response_model=models.RecordView, tags=["institution"], openapi_extra=SIGNED_DOC)
    async def inst_record(
        request: Request, key: Key, record_id: Annotated[str, Path(pattern=_ID)]
    ) -> models.RecordView:
        """A record this institution holds a key to: ciphertext and its own sealed key."""
        c = _ctx(request)
        with c.store.snapshot() as s:
            inst = member_of(s, c, key)
            rec = dq.record(s, record_id)
        holder = institution_holder(inst.inst_id)
        if rec is None or holder not in rec["holders"]:
            raise ApiProblem(404, "not-found", f"institution {inst.inst_id} holds no key of {record_id!r}")
        return _view(rec, holder)

    @router.get(
        "/v1/institution/subjects/{subject}/access-log",
        response_model=list[models.AccessEntry], tags=["institution"], openapi_extra=SIGNED_DOC
    )
    async def inst_access_log(
        request: Request, key: Key, subject: Annotated[str, Path(pattern=_SUBJECT)]
    ) -> list[models.AccessEntry]:
        """Authorities (auditing): a subject's access log."""
        c = _ctx(request)
        with c.store.snapshot() as s:
            inst = member_of(s, c, key)
            if "authority" not in inst.roles:
                raise c.auth.refuse_forbidden("role", "only authorities read other subjects' access logs")
            log = dq.access_log(s, subject)
        return [_access(e) for e in log]

    @router.get("/v1/institution/lots/{lot_id}", response_model=models.LotView, tags=["institution"],
                openapi_extra=SIGNED_DOC)
    async def inst_lot(
        request: Request, key: Key, lot_id: Annotated[str, Path(pattern=_ID)]
    ) -> models.LotView:
        """A lot's record and history (register, transfers, quarantine, recall, release):
        supply-chain roles, authorities and observers."""
        c = _ctx(request)
        with c.store.snapshot() as s:
            inst = member_of(s, c, key)
            if not inst.roles & LOT_READERS:
                raise c.auth.refuse_forbidden("role", f"lot histories are for {', '.join(sorted(LOT_READERS))}")
            rec = dq.lot(s, lot_id)
            events = dq.lot_events(s, lot_id) if rec is not None else []
        if rec is None:
            raise ApiProblem(404, "not-found", f"no lot {lot_id!r}")
        return models.LotView(lot_id=lot_id, record=jsonable(rec), events=[jsonable(e) for e in events])

    app.include_router(router)


def _credential_state(c: GatewayContext, s: Snapshot, height: int) -> tuple[str | None, int]:
    """Why this gateway cannot sign credentials at `height` (None: it can), and how long a
    credential may be valid there: the configured lifetime, capped by the health-code rules'
    `credential_valid_hours` when the rules in force have one. Memoised per height."""
    memo = c.memo.get("credkey")
    if memo is not None and memo[0] == height:
        return memo[1], memo[2]
    key = c.credential_key
    problem = None
    if key is None:
        problem = "this gateway has no credential key"
    else:
        reg = credential_key(s, key_id(bytes(key.verify_key)))
        if reg is None or reg["inst_id"] != c.inst_id:
            problem = "this gateway's credential key is not registered on chain (credkey.register)"
        elif reg["revoked_ms"] is not None:
            problem = "this gateway's credential key was revoked"
    validity_s = c.cfg.credential_validity_s
    if height > 0:
        rule_hours = healthcode_rules(s, height).params.get("credential_valid_hours")
        if rule_hours is not None:
            validity_s = min(validity_s, int(rule_hours) * 3600)
    c.memo["credkey"] = (height, problem, validity_s)
    return problem, validity_s


def health_code(c: GatewayContext, subject: str) -> models.HealthCode:
    """The code in force now (a quarantine that ended by the wall clock has ended, as
    hzp2p.contracts.codelife.effective_code says) and, when this gateway can sign, a
    credential for it."""
    now_ms = c.now_ms()
    h, raw = c.store.tip_and_get(dq.k_code(subject))
    stored = default_code(subject) if raw is None else decode_value(raw)
    code = effective_code(stored, now_ms)
    key = c.credential_key
    memo = c.memo.get("credkey")
    if memo is not None and memo[0] == h:
        problem, validity_s = memo[1], memo[2]
    else:
        with c.store.snapshot() as s:
            problem, validity_s = _credential_state(c, s, h)
    colour, since = str(code["colour"]), int(code["since_ms"])
    credential = None
    until = None
    if problem is None and key is not None:
        iat = now_ms // 1000
        until = iat + validity_s
        credential = cose.issue(
            key,
            cose.Claims(c.inst_id, iat, until, subject, colour, since, c.store.chain_id, h),
        )
        c.metrics.credentials.inc()
    return models.HealthCode(
        subject=subject, colour=colour, since_ms=since, why=str(code["reason"]),
        source=str(code["source"]), height=h, credential=credential,
        credential_valid_until_s=until, credential_problem=problem,
    )


def _summary(r: dict[str, Any]) -> models.RecordSummary:
    return models.RecordSummary(
        record_id=r["record_id"], type=r["type"], writer=r["writer"],
        timestamp_ms=r["timestamp_ms"], height=r["height"], erased=r["erased"] is not None,
    )


def _view(rec: dict[str, Any], holder: str) -> models.RecordView:
    entry = rec["holders"].get(holder)
    if entry is None:
        raise ApiProblem(404, "not-found", f"record {rec['record_id']!r} holds no key for you (erased or revoked)")
    return models.RecordView(
        record_id=rec["record_id"], subject=rec["subject"], type=rec["type"], writer=rec["writer"],
        timestamp_ms=rec["timestamp_ms"], height=rec["height"], ciphertext=rec["ciphertext"].hex(),
        key_commitment=rec["key_commitment"].hex(), holder=holder,
        sealed_key=entry["sealed_key"].hex(), key_id=int(entry.get("key_id", 0)),
    )


def _access(e: dict[str, Any]) -> models.AccessEntry:
    return models.AccessEntry(
        kind=e["kind"], record_id=e["record_id"], record_type=e["record_type"], by=e.get("by"),
        grantee=e.get("grantee"), purpose=e.get("purpose"), reason=e.get("reason"),
        grant_id=e.get("grant_id"), timestamp_ms=e["timestamp_ms"], height=e["height"],
        tx_hash=e["tx_hash"].hex(),
    )
