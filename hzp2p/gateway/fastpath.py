"""The hot route without the framework: GET /v1/me/health-code as a plain ASGI handler.

Venues scan health codes all day, so this one route is answered here, in front of
FastAPI, with exactly the checks and the answer of the documented route
(hzp2p.gateway.routes_signed: the same `Authenticator.check`, the same subject check,
the same `health_code` and model); FastAPI's routing, dependency solving and
response validation cost more CPU than the signature check and the credential's
signature together. Everything else goes to the app. The limits middleware runs
before this, so the route is limited and counted like any other.
"""

from __future__ import annotations

import json

import trio

from hzp2p.crypto.records import pseudonym
from hzp2p.gateway import signing
from hzp2p.gateway.auth import SignedRequest
from hzp2p.gateway.context import GatewayContext
from hzp2p.gateway.middleware import ASGIApp, Receive, Scope, Send
from hzp2p.gateway.problems import PROBLEM_TYPE, ApiProblem, problem
from hzp2p.gateway.routes_signed import health_code
from hzp2p.gateway.store import StoreUnavailable

PATH = "/v1/me/health-code"


class _Route:
    path = PATH  # what the metrics label a request by (as Starlette's routes)


_ROUTE = _Route()


class HealthCodeFastPath:
    def __init__(self, app: ASGIApp, ctx: GatewayContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        c = self.ctx
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        extra: list[tuple[bytes, bytes]] = []
        try:
            req = SignedRequest(
                "GET",
                scope.get("raw_path", PATH.encode()).decode("latin-1"),
                scope.get("query_string", b"").decode("latin-1"),
                headers,
                b"",
            )
            key = c.auth.check(req, c.now_ms(), trio.current_time())
            subject = headers.get(signing.H_SUBJECT)
            if not subject:
                raise c.auth.refuse_forbidden("no-subject", f"{signing.H_SUBJECT} is required on /v1/me")
            if pseudonym(key) != subject:
                raise c.auth.refuse_forbidden("wrong-subject", "this key does not name that pseudonym")
            body = health_code(c, subject).model_dump_json().encode()
            status, media = 200, "application/json"
        except ApiProblem as p:
            status, media = p.status, PROBLEM_TYPE
            body = json.dumps(p.body(PATH)).encode()
            extra = [(k.lower().encode(), v.encode()) for k, v in p.headers.items()]
        except StoreUnavailable as exc:
            status, media = 503, PROBLEM_TYPE
            body = json.dumps(problem(503, "state-unavailable", str(exc), PATH)).encode()
            extra = [(b"retry-after", b"1")]
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode()), *extra],
        })
        await send({"type": "http.response.body", "body": body})

