"""The ASGI layer in front of the routes: abuse limits, timeouts and request metrics.

In order, for every HTTP request: the request head is bounded (431), the client
address spends a token (429 + Retry-After), a body is read whole up to the limit
(413, also for chunked bodies without a Content-Length) and replayed to the app,
a concurrency slot is taken (waiting at most queue_timeout_ms, else 503), and the
app runs under a deadline (504). Every answer is counted by route and status;
every refusal here is also counted by limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from hzp2p.gateway.limits import TokenBuckets, retry_after_header
from hzp2p.gateway.metrics import GatewayMetrics
from hzp2p.gateway.problems import PROBLEM_TYPE, problem_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: GatewayMetrics,
        *,
        max_body_bytes: int,
        max_header_bytes: int,
        rate_per_address_per_s: float,
        burst_per_address: int,
        max_concurrency: int,
        queue_timeout_ms: int,
        request_timeout_s: float,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.max_header = max_header_bytes
        self.addresses = TokenBuckets(rate_per_address_per_s, burst_per_address)
        self.slots = trio.CapacityLimiter(max_concurrency)
        self.queue_timeout_s = queue_timeout_ms / 1000
        self.request_timeout_s = request_timeout_s
        self._metric_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        # Requests being handled are exactly the concurrency slots held: read at scrape time
        # rather than two locked gauge updates a request.
        metrics.in_flight.set_function(lambda: self.slots.borrowed_tokens)

    async def _refuse(
        self, scope: Scope, send: Send, status: int, kind: str, detail: str, limit: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.metrics.limited.labels(limit=limit).inc()
        self.metrics.requests.labels(route="-", status=str(status)).inc()
        body = problem_bytes(status, kind, detail, scope.get("path", ""))
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        })
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = sum(len(k) + len(v) for k, v in scope.get("headers", ()))
        if head > self.max_header:
            await self._refuse(scope, send, 431, "headers-too-large",
                               f"request headers exceed {self.max_header} bytes", "header_size")
            return
        client = scope.get("client")
        address = client[0] if client else "-"
        wait = self.addresses.take(address, trio.current_time())
        if wait > 0:
            await self._refuse(scope, send, 429, "rate-limited", "too many requests from this address",
                               "address_rate", [(b"retry-after", retry_after_header(wait).encode())])
            return
        if scope["method"] in _BODY_METHODS:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body:
                await self._refuse(scope, send, 413, "body-too-large",
                                   f"request body exceeds {self.max_body} bytes", "body_size")
                return
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await self._refuse(scope, send, 413, "body-too-large",
                                       f"request body exceeds {self.max_body} bytes", "body_size")
                    return
                chunks.append(chunk)
                more = bool(msg.get("more_body", False))
            body = b"".join(chunks)
            sent_body = False

            async def replay() -> Message:
                nonlocal sent_body
                if not sent_body:
                    sent_body = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive = replay
        try:  # a free slot is the common case: no cancel scope for the wait (they cost ~10 us)
            self.slots.acquire_nowait()
        except trio.WouldBlock:
            with trio.move_on_after(self.queue_timeout_s) as queued:
                await self.slots.acquire()
            if queued.cancelled_caught:
                await self._refuse(scope, send, 503, "busy", "the gateway is at its concurrency limit; retry",
                                   "concurrency", [(b"retry-after", b"1")])
                return
        try:
            await self._run(scope, receive, send)
        finally:
            self.slots.release()

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500
        started = False

        async def counting_send(msg: Message) -> None:
            nonlocal status, started
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
                started = True
            await send(msg)

        t0 = trio.current_time()
        with trio.move_on_after(self.request_timeout_s) as deadline:
            await self.app(scope, receive, counting_send)
        if deadline.cancelled_caught and not started:
            await self._refuse(scope, send, 504, "timeout",
                               f"no answer within {self.request_timeout_s:g} s", "timeout")
            return
        route = scope.get("route")
        name = getattr(route, "path", None) or "unmatched"
        counter, histogram = self._children(name, status)
        counter.inc()
        histogram.observe(trio.current_time() - t0)

    def _children(self, route: str, status: int) -> tuple[Any, Any]:
        """The labelled metric children of (route, status), looked up once (labels() costs
        a lock and a tuple per call; routes and statuses are few)."""
        key = (route, status)
        found = self._metric_children.get(key)
        if found is None:
            found = (
                self.metrics.requests.labels(route=route, status=str(status)),
                self.metrics.latency.labels(route=route),
            )
            self._metric_children[key] = found
        return found


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None
