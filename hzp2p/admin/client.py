"""Admin-socket clients: an async one for tests and harnesses, a sync wrapper for the CLI.

It owns connecting to a daemon's admin socket, matching responses to requests
by id (so many calls may be in flight on one connection), and turning every
failure into a typed error with a one-line message:

- AdminUnavailable: no daemon at the socket (missing file, connection refused);
- AdminTimeout: no response within the call's timeout;
- AdminConnectionLost: the daemon closed the connection or sent garbage;
- AdminError (from hzp2p.admin.protocol): the daemon answered with an error.

    async with open_admin_client(path) as client:
        status = await client.call("status", timeout_s=5)

    status = call_sync(path, "status", {}, timeout_s=5)     # trio.run inside

Batch submits: `client.submit_many(items, wait_s=...)` sends any number of
{type, payload, idempotency_key?} items as `submit_many` requests of at most
MAX_SUBMIT_MANY items and SUBMIT_MANY_BYTES bytes (under the daemon's default
frame bound), a few in flight at once, and returns one receipt per item, in order.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket as stdlib_socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import trio

from hzp2p.admin.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_SUBMIT_MANY,
    AdminError,
    AdminProtocolError,
    FrameDecoder,
    Request,
    Response,
    pack_message,
    parse_response,
    unpack_message,
)

DEFAULT_TIMEOUT_S = 10.0
SUBMIT_MANY_BYTES = DEFAULT_MAX_FRAME_BYTES // 2
"""Bytes of items per submit_many request: half the daemon's default frame bound."""
SUBMIT_MANY_IN_FLIGHT = 4
_READ_CHUNK_BYTES = 65536
_CONNECT_RETRY_S = 0.01
"""Pause before re-trying a connect refused because the daemon's accept queue is full."""


class AdminClientError(Exception):
    """The call could not be completed; str() is a one-line reason for the operator."""


class AdminUnavailable(AdminClientError):
    def __init__(
        self, socket_path: str | os.PathLike[str], detail: str, *, permission: bool = False
    ) -> None:
        path = os.fspath(socket_path)
        if permission:
            text = f"cannot reach the daemon at {path}: permission denied (run as the daemon's user)"
        else:
            text = f"cannot reach the daemon at {path}: is `hzp2p run` running? ({detail})"
        super().__init__(text)


class AdminTimeout(AdminClientError):
    pass


class AdminConnectionLost(AdminClientError):
    pass


class _Pending:
    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.response: Response | None = None


class AsyncAdminClient:
    """One connection; `call` may be used concurrently from many tasks (pipelined by id)."""

    def __init__(self, stream: trio.SocketStream, *, max_frame_bytes: int) -> None:
        self._stream = stream
        self._max_frame_bytes = max_frame_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock = trio.Lock()
        self._lost: str | None = None

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """Send one request and return its result; raises AdminError or AdminClientError."""
        if self._lost is not None:
            raise AdminConnectionLost(self._lost)
        request = Request(id=next(self._ids), method=method, params=dict(params or {}))
        try:
            frame = pack_message(request.to_wire(), max_frame_bytes=self._max_frame_bytes)
        except AdminProtocolError as exc:
            raise AdminClientError(f"cannot send {method}: {exc}") from exc
        pending = _Pending()
        self._pending[request.id] = pending
        try:
            with trio.move_on_after(timeout_s) as scope:
                async with self._send_lock:
                    sent = False
                    try:
                        await self._stream.send_all(frame)
                        sent = True
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self._lost = "the daemon closed the admin connection"
                        raise AdminConnectionLost(self._lost) from exc
                    finally:
                        if not sent and self._lost is None:
                            # Cut off mid-frame: the stream's framing is gone for good.
                            self._lost = "a request was interrupted while being sent"
                await pending.event.wait()
            if scope.cancelled_caught:
                raise AdminTimeout(f"{method}: no answer from the daemon within {timeout_s:g} s")
        finally:
            self._pending.pop(request.id, None)
        if pending.response is None:
            raise AdminConnectionLost(self._lost or "the admin connection was lost")
        return pending.response.unwrap()

    async def submit_many(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        wait_s: float = DEFAULT_TIMEOUT_S,
        batch: int = MAX_SUBMIT_MANY,
        in_flight: int = SUBMIT_MANY_IN_FLIGHT,
        timeout_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """One receipt per item, in order (see the module docstring); an AdminError from the
        daemon (a malformed item) is raised as is, and earlier requests may have committed."""
        chunks = list(chunk_items(items, min(batch, MAX_SUBMIT_MANY), SUBMIT_MANY_BYTES))
        out: list[list[dict[str, Any]]] = [[] for _ in chunks]
        todo = iter(enumerate(chunks))
        limit = timeout_s if timeout_s is not None else wait_s + DEFAULT_TIMEOUT_S

        failed: list[Exception] = []

        async def worker(cancel: trio.CancelScope) -> None:
            for k, (start, end) in todo:
                params = {"items": [dict(i) for i in items[start:end]], "wait_s": wait_s}
                try:
                    reply = await self.call("submit_many", params, timeout_s=limit)
                except (AdminError, AdminClientError) as exc:
                    # The first failure ends the whole batch, raised as itself (not wrapped in
                    # an exception group) so callers see one typed error.
                    failed.append(exc)
                    cancel.cancel()
                    return
                out[k] = list(reply["receipts"])

        async with trio.open_nursery() as nursery:
            for _ in range(max(1, in_flight)):
                nursery.start_soon(worker, nursery.cancel_scope)
        if failed:
            raise failed[0]
        return [r for part in out for r in part]

    async def _read_loop(self) -> None:
        decoder = FrameDecoder(self._max_frame_bytes)
        try:
            while True:
                data = await self._stream.receive_some(_READ_CHUNK_BYTES)
                if not data:
                    self._fail("the daemon closed the admin connection")
                    return
                for body in decoder.feed(data):
                    response = parse_response(unpack_message(body))
                    if response.id is None:
                        # The daemon could not tell which request this answers: fail them all.
                        err = response.error
                        self._fail(f"daemon refused the connection's input: {err}")
                        return
                    pending = self._pending.get(response.id)
                    if pending is not None:
                        pending.response = response
                        pending.event.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._fail("the admin connection broke")
        except AdminProtocolError as exc:
            self._fail(f"the daemon sent an invalid response: {exc}")

    def _fail(self, reason: str) -> None:
        self._lost = reason
        for pending in self._pending.values():
            pending.event.set()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _connect_unix(socket_path: Path) -> trio.SocketStream:
    """Connect, retrying while the daemon's accept queue is full (the caller bounds the time).

    A Unix-socket connect never completes later: it succeeds at once, or fails with EAGAIN
    when the listener's backlog is full (another local process flooding the socket), or
    fails for good. trio's connect would wait for writability after EAGAIN and report an
    unconnected socket as connected, so the first send would fail as if the daemon had
    closed the connection; here EAGAIN is a short wait and a fresh attempt instead.
    """
    while True:
        raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        raw.setblocking(False)
        try:
            raw.connect(os.fspath(socket_path))
        except BlockingIOError:
            raw.close()
            await trio.sleep(_CONNECT_RETRY_S)
            continue
        except OSError as exc:
            raw.close()
            denied = exc.errno in (errno.EACCES, errno.EPERM)
            raise AdminUnavailable(socket_path, exc.strerror or str(exc), permission=denied) from exc
        except BaseException:
            raw.close()
            raise
        return trio.SocketStream(trio.socket.from_stdlib_socket(raw))


@asynccontextmanager
async def open_admin_client(
    socket_path: str | os.PathLike[str],
    *,
    max_frame_bytes: int = 64 << 20,
    connect_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AsyncIterator[AsyncAdminClient]:
    """Connect to the admin socket; the client is usable inside the `async with` block."""
    path = Path(socket_path)
    with trio.move_on_after(connect_timeout_s) as scope:
        stream = await _connect_unix(path)
    if scope.cancelled_caught:
        raise AdminUnavailable(path, f"no connection within {connect_timeout_s:g} s")
    client = AsyncAdminClient(stream, max_frame_bytes=max_frame_bytes)
    # The body's exception is re-raised outside the nursery so callers see it as is,
    # not wrapped in an ExceptionGroup.
    raised: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read_loop)
            try:
                yield client
            except BaseException as exc:
                raised = exc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
    if raised is not None:
        raise raised


def chunk_items(
    items: Sequence[Mapping[str, Any]], max_items: int, max_bytes: int
) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of `items`, each at most `max_items` long and about `max_bytes` of
    msgpack (an item larger than that goes alone; the daemon refuses it if over its bound)."""
    start, size = 0, 0
    for i, item in enumerate(items):
        n = len(msgpack.packb(item, use_bin_type=True))
        if i > start and (i - start >= max_items or size + n > max_bytes):
            yield start, i
            start, size = i, 0
        size += n
    if start < len(items):
        yield start, len(items)


def call_sync(
    socket_path: str | os.PathLike[str],
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """One call from synchronous code (runs its own Trio loop)."""

    async def one() -> Any:
        with trio.move_on_after(timeout_s) as scope:
            async with open_admin_client(socket_path, connect_timeout_s=timeout_s) as client:
                return await client.call(method, params, timeout_s=timeout_s)
        assert scope.cancelled_caught
        raise AdminTimeout(f"{method}: no answer from the daemon within {timeout_s:g} s")

    return trio.run(one)


__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "AdminClientError",
    "AdminConnectionLost",
    "AdminError",
    "AdminTimeout",
    "AdminUnavailable",
    "AsyncAdminClient",
    "call_sync",
    "chunk_items",
    "open_admin_client",
]
