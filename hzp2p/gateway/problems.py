"""RFC 9457 problem details: every error the gateway answers is application/problem+json.

`ApiProblem` is the typed error a route or dependency raises for bad input from
outside (it drops that request; the middleware counts it by status); handlers
registered by `install` turn it, FastAPI's validation errors and Starlette's HTTP
errors into problem documents. Middleware that answers before the app runs (413,
429, 431, 503, 504) sends `problem_bytes` directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "https://hzp2p.invalid/problems/"
"""Problem type URIs name the kind of problem (documented in docs/gateway.md)."""


class ApiProblem(Exception):
    """A refused request: status, a short kind (the type URI's last part), a detail line,
    optional `errors` (each {field, reason}) and response headers (e.g. Retry-After)."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = [dict(e) for e in errors]
        self.headers = dict(headers or {})

    def body(self, instance: str = "") -> dict[str, Any]:
        return problem(self.status, self.kind, self.detail, instance, self.errors)


def problem(
    status: int, kind: str, detail: str, instance: str = "", errors: Sequence[Mapping[str, str]] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        out["instance"] = instance
    if errors:
        out["errors"] = [dict(e) for e in errors]
    return out


def problem_bytes(status: int, kind: str, detail: str, instance: str = "") -> bytes:
    return json.dumps(problem(status, kind, detail, instance)).encode()


def _response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return _response(exc.body(request.url.path), exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request",
                "reason": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]
        body = problem(422, "invalid-request", "the request does not fit the API", request.url.path, errors)
        return _response(body)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not-found" if exc.status_code == 404 else "http-error"
        body = problem(exc.status_code, kind, str(exc.detail), request.url.path)
        return _response(body, getattr(exc, "headers", None))

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
