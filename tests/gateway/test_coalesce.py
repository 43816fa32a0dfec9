"""hzp2p.gateway.coalesce: Hypercorn's Trio server, writing a response head with its body,
still answers byte for byte as before, and never holds back an interim 100 Continue."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from hzp2p.gateway import coalesce
from hzp2p.tools.localcluster import free_base_port


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    out = b"got " + body
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


async def _read_until(stream: trio.SocketStream, buf: bytearray, marker: bytes) -> None:
    while marker not in buf:
        chunk = await stream.receive_some(65536)
        assert chunk, "server closed the connection"
        buf += chunk


def test_heads_and_bodies_arrive_whole_and_100_continue_is_not_held() -> None:
    assert coalesce.install() and coalesce.install()  # idempotent
    port = free_base_port(1)
    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as n:
            await n.start(lambda task_status: serve(  # type: ignore[arg-type]
                _echo, cfg, shutdown_trigger=stop.wait, task_status=task_status))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                buf = bytearray()
                for i in range(3):  # keep-alive: several responses on one connection
                    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    await _read_until(stream, buf, b"got ")
                    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 4" in head, (i, head)
                    assert rest == b"got ", rest
                    buf.clear()
                # Expect: 100-continue: the interim answer must come before the body is sent
                await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                      b"Expect: 100-continue\r\n\r\n")
                with trio.fail_after(10):
                    await _read_until(stream, buf, b"\r\n\r\n")
                assert bytes(buf).startswith(b"HTTP/1.1 100"), bytes(buf)
                buf.clear()
                await stream.send_all(b"hi")
                with trio.fail_after(10):
                    await _read_until(stream, buf, b"got hi")
                assert bytes(buf).startswith(b"HTTP/1.1 200")
            stop.set()

    trio.run(main)


def test_only_final_heads_are_held() -> None:
    assert coalesce._is_final_head(b"HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\n")
    assert not coalesce._is_final_head(b"HTTP/1.1 100 \r\n\r\n")
    assert not coalesce._is_final_head(b"HTTP/1.1 200 in a body, without a blank line")
    assert not coalesce._is_final_head(b"")
