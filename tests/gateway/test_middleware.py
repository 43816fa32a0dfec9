"""The limits middleware in-process (httpx's ASGI transport, Trio): the per-address bucket,
the concurrency bound and the request deadline, each answered as a problem and counted."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from hzp2p.gateway.metrics import GatewayMetrics
from hzp2p.gateway.middleware import LimitsMiddleware


def make(app: Any, **over: Any) -> tuple[httpx.AsyncClient, GatewayMetrics]:
    m = GatewayMetrics()
    limits: dict[str, Any] = dict(
        max_body_bytes=1024, max_header_bytes=4096, rate_per_address_per_s=1000.0,
        burst_per_address=1000, max_concurrency=10, queue_timeout_ms=1000, request_timeout_s=5.0,
    )
    limits.update(over)
    mw = LimitsMiddleware(app, m, **limits)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t"), m


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def count(m: GatewayMetrics, limit: str) -> float:
    v: float = m.limited.labels(limit=limit)._value.get()
    return v


async def test_per_address_bucket_answers_429_with_retry_after() -> None:
    client, m = make(ok_app, rate_per_address_per_s=1.0, burst_per_address=3)
    async with client:
        codes = [(await client.get("/")).status_code for _ in range(5)]
        r = await client.get("/")
    assert codes == [200, 200, 200, 429, 429] and r.status_code == 429
    assert r.headers["retry-after"] == "1" and r.headers["content-type"] == "application/problem+json"
    assert count(m, "address_rate") == 3


async def test_concurrency_bound_answers_503_after_the_queue_timeout() -> None:
    release = trio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await ok_app(scope, receive, send)

    client, m = make(slow_app, max_concurrency=1, queue_timeout_ms=50)
    statuses: list[int] = []
    async with client:

        async def one() -> None:
            statuses.append((await client.get("/")).status_code)

        async with trio.open_nursery() as n:
            n.start_soon(one)
            await trio.sleep(0.01)
            n.start_soon(one)
            await trio.sleep(0.2)
            release.set()
    assert sorted(statuses) == [200, 503]
    assert count(m, "concurrency") == 1


async def test_deadline_answers_504() -> None:
    async def stuck_app(scope: Any, receive: Any, send: Any) -> None:
        await trio.sleep_forever()

    client, m = make(stuck_app, request_timeout_s=0.05)
    async with client:
        r = await client.get("/")
    assert r.status_code == 504 and r.json()["type"].endswith("/timeout")
    assert count(m, "timeout") == 1
    assert m.in_flight._value.get() == 0
