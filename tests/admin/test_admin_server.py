"""The admin server with fake handlers: round trips, bad input, disconnects, the socket file."""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from admin_helpers import FakeDaemon

from hzp2p.admin.client import (
    AdminConnectionLost,
    AdminTimeout,
    AdminUnavailable,
    open_admin_client,
)
from hzp2p.admin.protocol import (
    AdminError,
    FrameDecoder,
    Param,
    pack_message,
    parse_response,
    unpack_message,
)
from hzp2p.admin.server import AdminServer, AdminSocketError

LIMIT_S = 10


async def start(nursery: trio.Nursery, path: Path, **kw: Any) -> tuple[AdminServer, FakeDaemon]:
    server = AdminServer(path, **kw)
    daemon = FakeDaemon()
    daemon.register_all(server)
    await nursery.start(server.serve)
    return server, daemon


async def raw_connect(path: Path) -> trio.SocketStream:
    return await trio.open_unix_socket(os.fspath(path))


async def read_responses(stream: trio.SocketStream, count: int) -> list[dict[str, Any]]:
    decoder = FrameDecoder(1 << 20)
    out: list[dict[str, Any]] = []
    while len(out) < count:
        data = await stream.receive_some(65536)
        if not data:
            break
        out += [unpack_message(b) for b in decoder.feed(data)]
    return out


async def test_round_trip_and_socket_mode(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server, _ = await start(nursery, path)
            st = os.stat(path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o600
            assert sorted(p.name for p in short_tmp.iterdir()) == ["admin.sock"]
            async with open_admin_client(path) as client:
                status = await client.call("status")
                assert status["role"] == "leader" and status["peers"] == [2, 3]
                with pytest.raises(AdminError) as info:
                    await client.call("block", {"height": 99})
                assert info.value.code == "not_found"
            nursery.cancel_scope.cancel()
    assert not path.exists(), "the socket file is removed on shutdown"
    assert server.statistics().requests_total == 2


async def test_pipelined_requests_answered_by_id(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    gate = trio.Event()

    async def slow(params: Mapping[str, Any]) -> Any:
        await gate.wait()
        return "slow"

    async def fast(params: Mapping[str, Any]) -> Any:
        gate.set()
        return "fast"

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server = AdminServer(path)
            server.register("slow", slow, params=())
            server.register("fast", fast, params=())
            await nursery.start(server.serve)
            stream = await raw_connect(path)
            await stream.send_all(
                pack_message({"id": 10, "method": "slow", "params": {}})
                + pack_message({"id": 11, "method": "fast", "params": {}})
            )
            responses = await read_responses(stream, 2)
            # The slow request was first but answers last: responses match by id, not order.
            assert [(r["id"], r["result"]) for r in responses] == [(11, "fast"), (10, "slow")]
            # The async client pipelines too.
            gate = trio.Event()
            async with open_admin_client(path) as client:
                results: dict[str, Any] = {}

                async def call(name: str) -> None:
                    results[name] = await client.call(name)

                async with trio.open_nursery() as inner:
                    inner.start_soon(call, "slow")
                    await trio.testing.wait_all_tasks_blocked()
                    inner.start_soon(call, "fast")
                assert results == {"slow": "slow", "fast": "fast"}
            await stream.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("request_obj", "code", "match", "rid"),
    [
        ({"id": 1, "method": "frobnicate", "params": {}}, "unknown_method", "unknown admin method", 1),
        ({"id": 2, "method": "block", "params": {"height": "three"}}, "bad_request", "'height' must be an integer", 2),
        ({"id": 3, "method": "block", "params": {}}, "bad_request", "missing param 'height'", 3),
        ({"id": 4, "method": "status", "params": {"x": 1}}, "bad_request", "unknown params: x", 4),
        ({"method": "status"}, "bad_request", "missing field 'id'", None),
        ({"id": 5}, "bad_request", "missing field 'method'", 5),
        (["not", "a", "map"], "bad_request", "must be a map", None),
        ({"id": 6, "method": "access_log", "params": {"subject": "a1" * 16}}, "internal", "RuntimeError: boom", 6),
    ],
)
async def test_bad_requests_get_clear_errors_and_connection_survives(
    short_tmp: Path, request_obj: Any, code: str, match: str, rid: int | None
) -> None:
    path = short_tmp / "admin.sock"
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server, _ = await start(nursery, path)
            stream = await raw_connect(path)
            await stream.send_all(pack_message(request_obj))
            await stream.send_all(pack_message({"id": 100, "method": "status", "params": {}}))
            first, second = await read_responses(stream, 2)
            err = parse_response(first).error
            assert err is not None and err.code == code and match in err.message
            assert first["id"] == rid
            assert second["id"] == 100 and second["ok"] is True
            assert server.statistics().errors_by_code[code] == 1
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_garbage_msgpack_in_a_frame_keeps_the_connection(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            await start(nursery, path)
            stream = await raw_connect(path)
            body = b"\xc1\xc1garbage"
            await stream.send_all(struct.pack(">I", len(body)) + body)
            await stream.send_all(pack_message({"id": 1, "method": "status", "params": {}}))
            first, second = await read_responses(stream, 2)
            assert first["id"] is None and first["error"]["code"] == "bad_request"
            assert "not valid msgpack" in first["error"]["message"]
            assert second["ok"] is True
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_oversized_frame_gets_error_then_close_and_server_keeps_serving(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server, _ = await start(nursery, path, max_request_bytes=1024)
            stream = await raw_connect(path)
            await stream.send_all(struct.pack(">I", 10_000_000) + b"x" * 100)
            responses = await read_responses(stream, 2)  # stops at EOF
            assert len(responses) == 1
            assert responses[0]["error"]["code"] == "bad_request"
            assert "exceeds the 1024-byte limit" in responses[0]["error"]["message"]
            await stream.aclose()
            # Pure garbage framing (a huge length prefix from random bytes) is treated the same.
            stream = await raw_connect(path)
            await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
            (resp,) = await read_responses(stream, 2)
            assert resp["error"]["code"] == "bad_request"
            await stream.aclose()
            async with open_admin_client(path) as client:
                assert (await client.call("status"))["node_id"] == 1
            assert server.statistics().bad_frames == 2
            nursery.cancel_scope.cancel()


async def test_client_disconnect_mid_request_cancels_handler(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    entered = trio.Event()
    cancelled = trio.Event()

    async def hang(params: Mapping[str, Any]) -> Any:
        entered.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server = AdminServer(path)
            server.register("hang", hang, params=())
            FakeDaemon().register_all(server)
            await nursery.start(server.serve)
            stream = await raw_connect(path)
            await stream.send_all(pack_message({"id": 1, "method": "hang", "params": {}}))
            await entered.wait()
            await stream.aclose()
            await cancelled.wait()
            async with open_admin_client(path) as client:
                assert (await client.call("status"))["term"] == 4
            await trio.testing.wait_all_tasks_blocked()
            stats = server.statistics()
            assert stats.requests_in_flight == 0 and stats.connections_open == 0
            nursery.cancel_scope.cancel()


async def test_client_timeout_and_lost_connection(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"

    async def hang(params: Mapping[str, Any]) -> Any:
        await trio.sleep_forever()

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server = AdminServer(path, max_request_bytes=1024)
            server.register("hang", hang, params=())
            server.register("echo", _echo, params=(Param("blob", "str"),))
            await nursery.start(server.serve)
            async with open_admin_client(path) as client:
                with pytest.raises(AdminTimeout, match=r"within 0\.05 s"):
                    await client.call("hang", timeout_s=0.05)
                with pytest.raises(AdminConnectionLost):
                    await client.call("echo", {"blob": "x" * 5000})
                with pytest.raises(AdminConnectionLost):
                    await client.call("echo", {"blob": "y"})
            nursery.cancel_scope.cancel()


async def _echo(params: Mapping[str, Any]) -> Any:
    return params["blob"]


async def test_handler_timeout_and_unencodable_result(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"

    async def hang(params: Mapping[str, Any]) -> Any:
        await trio.sleep_forever()

    async def weird(params: Mapping[str, Any]) -> Any:
        return object()

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server = AdminServer(path, handler_timeout_s=0.05)
            server.register("hang", hang, params=())
            server.register("weird", weird, params=())
            await nursery.start(server.serve)
            async with open_admin_client(path) as client:
                with pytest.raises(AdminError) as info:
                    await client.call("hang")
                assert info.value.code == "timeout"
                with pytest.raises(AdminError) as info:
                    await client.call("weird")
                assert info.value.code == "internal"
            nursery.cancel_scope.cancel()


async def test_stale_socket_replaced_live_one_refused(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))
    stale.close()  # the file stays behind, nobody listens: a crashed daemon's leftover
    assert path.exists()
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            await start(nursery, path)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            with pytest.raises(AdminSocketError, match="another daemon"):
                await AdminServer(path).serve()
            async with open_admin_client(path) as client:
                assert (await client.call("status"))["node_id"] == 1
            nursery.cancel_scope.cancel()


async def test_regular_file_at_socket_path_is_not_replaced(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    path.write_text("precious")
    with trio.fail_after(LIMIT_S), pytest.raises(AdminSocketError, match="not a socket"):
        await AdminServer(path).serve()
    assert path.read_text() == "precious"


async def test_missing_daemon_is_unavailable(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    with trio.fail_after(LIMIT_S), pytest.raises(AdminUnavailable, match="is `hzp2p run` running"):
        async with open_admin_client(path):
            pass


async def _server_with_hang(
    nursery: trio.Nursery, path: Path, entered: list[int], **kw: Any
) -> AdminServer:
    async def hang(params: Mapping[str, Any]) -> Any:
        entered.append(1)
        await trio.sleep_forever()

    server = AdminServer(path, **kw)
    server.register("hang", hang, params=())
    FakeDaemon().register_all(server)
    await nursery.start(server.serve)
    return server


async def _hang_on(path: Path, entered: list[int]) -> trio.SocketStream:
    """A connection with one request in flight (so it is not idle)."""
    n = len(entered)
    stream = await raw_connect(path)
    await stream.send_all(pack_message({"id": 1, "method": "hang", "params": {}}))
    while len(entered) == n:
        await trio.sleep(0.001)
    return stream


async def test_connection_limit_refuses_only_when_every_connection_is_busy(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    entered: list[int] = []
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server = await _server_with_hang(
                nursery, path, entered, max_connections=2, max_connections_per_peer=2
            )
            busy = [await _hang_on(path, entered), await _hang_on(path, entered)]
            stream = await raw_connect(path)
            (resp,) = await read_responses(stream, 2)
            assert resp["error"]["code"] == "unavailable"
            assert "too many admin connections" in resp["error"]["message"]
            await stream.aclose()
            stats = server.statistics()
            assert stats.connections_refused == 1
            assert stats.refusals == {"connection_limit": 1}
            for b in busy:
                await b.aclose()
            nursery.cancel_scope.cancel()


async def test_idle_connections_are_evicted_to_make_room(short_tmp: Path) -> None:
    """79 idle connections once locked every command out; now the idlest make room."""
    path = short_tmp / "admin.sock"
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server, _ = await start(nursery, path, max_connections=4)
            idle = [await raw_connect(path) for _ in range(10)]
            for _ in range(3):
                async with open_admin_client(path) as client:
                    assert (await client.call("status"))["node_id"] == 1
            # The oldest idle connections were told why, then closed.
            (notice,) = await read_responses(idle[0], 2)
            assert notice["id"] is None and notice["error"]["code"] == "unavailable"
            assert "evicted_idle" in notice["error"]["message"]
            stats = server.statistics()
            assert stats.connections_refused == 0
            assert stats.refusals["evicted_idle"] >= 9
            assert stats.connections_open <= 4
            for s in idle:
                await s.aclose()
            nursery.cancel_scope.cancel()


async def test_one_process_holds_at_most_its_share(short_tmp: Path) -> None:
    """All connections of this test come from one process: past its share it evicts its own
    idle connections first, and is refused alone once all of its share is busy."""
    path = short_tmp / "admin.sock"
    entered: list[int] = []
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server = await _server_with_hang(
                nursery, path, entered, max_connections=8, max_connections_per_peer=2
            )
            busy = [await _hang_on(path, entered)]
            idle = await raw_connect(path)
            busy.append(await _hang_on(path, entered))  # evicts `idle`, its own
            (notice,) = await read_responses(idle, 2)
            assert "evicted_idle" in notice["error"]["message"]
            refused = await raw_connect(path)
            (resp,) = await read_responses(refused, 2)
            assert resp["error"]["code"] == "unavailable"
            stats = server.statistics()
            assert stats.refusals == {"evicted_idle": 1, "peer_connection_limit": 1}
            assert stats.connections_open == 2
            for s in [*busy, idle, refused]:
                await s.aclose()
            nursery.cancel_scope.cancel()


async def test_idle_slow_and_malformed_connections_are_closed(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server, _ = await start(
                nursery, path, idle_timeout_s=0.2, frame_timeout_s=0.2, max_bad_requests=2
            )
            idle = await raw_connect(path)
            slow = await raw_connect(path)
            await slow.send_all(pack_message({"id": 1, "method": "status", "params": {}})[:7])
            garbage = await raw_connect(path)
            body = b"\xc1\xc1garbage"
            await garbage.send_all((struct.pack(">I", len(body)) + body) * 5)
            for stream, reason, before in ((idle, "idle_timeout", 0), (slow, "slow_frame", 0),
                                           (garbage, "bad_requests", 3)):
                responses = await read_responses(stream, before + 2)  # stops at EOF
                assert len(responses) == before + 1, reason
                assert reason in responses[-1]["error"]["message"]
                await stream.aclose()
            # A connection with a request in flight is never idle: it gets its answer.
            async with open_admin_client(path) as client:
                assert (await client.call("status"))["node_id"] == 1
            stats = server.statistics()
            assert stats.refusals == {"idle_timeout": 1, "slow_frame": 1, "bad_requests": 1}
            nursery.cancel_scope.cancel()


def test_register_rejects_duplicates_and_schemaless_methods(short_tmp: Path) -> None:
    server = AdminServer(short_tmp / "admin.sock")
    FakeDaemon().register_all(server)
    with pytest.raises(ValueError, match="already registered"):
        server.register("status", FakeDaemon().status)
    with pytest.raises(ValueError, match="no schema"):
        server.register("custom", FakeDaemon().status)
    assert "submit" in server.methods
    assert msgpack  # the wire format is msgpack


async def test_socket_is_0600_even_under_a_permissive_umask(short_tmp: Path) -> None:
    path = short_tmp / "admin.sock"
    old = os.umask(0)
    try:
        with trio.fail_after(LIMIT_S):
            async with trio.open_nursery() as nursery:
                await start(nursery, path)
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
                nursery.cancel_scope.cancel()
    finally:
        os.umask(old)
