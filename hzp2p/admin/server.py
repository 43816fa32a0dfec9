"""The daemon's admin server: a Trio Unix-socket server dispatching to registered handlers.

It owns the socket file (created mode 0600, a stale one replaced, a live one
refused), per-connection request handling (pipelined ids, bounded concurrency,
clear errors for bad input) and the mapping from handler outcomes to responses.
What each method does is not its concern: the daemon registers one async
handler per method (see METHOD_PARAMS in hzp2p.admin.operations):

    server = AdminServer(config.admin.socket, max_request_bytes=config.admin.max_request_bytes)
    server.register("status", handle_status)      # async (params) -> result
    await nursery.start(server.serve)              # returns once the socket listens

A handler receives params already checked against its schema, returns a
msgpack-encodable result, or raises AdminError(code, message, hint=, leader_id=).
Any other exception becomes an "internal" error response and is logged; the
server keeps running. When a client disconnects (EOF or a broken pipe), its
in-flight handlers are cancelled; results for a vanished client are dropped.

Fairness (issue 22): one misbehaving local process must not lock the others out.
Every connection is served by its own task, so reading one client's request never
waits for another's. A connection is closed when it sits idle (nothing in flight,
nothing received) for `idle_timeout_s`, when a started frame does not complete
within `frame_timeout_s` (a slow writer), or after `max_bad_requests` malformed
requests. At the connection limit the server makes room rather than refusing the
newcomer: it evicts an idle connection of the process holding the most
connections (the kernel's SO_PEERCRED names it), the least recently active first;
a newcomer is refused only when every connection has requests in flight. One
process may hold at most `max_connections_per_peer` connections (default half the
limit; equal to the limit turns the share off), so others always find room. Each refusal is counted by reason in
`AdminServerStatistics.refusals` (exported as hzp2p_admin_refusals_total{reason}).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as stdlib_socket
import stat
import struct
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from hzp2p.admin.operations import METHOD_PARAMS
from hzp2p.admin.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    AdminError,
    AdminProtocolError,
    FrameDecoder,
    Param,
    RequestError,
    Response,
    check_params,
    error_response,
    ok_response,
    pack_message,
    parse_request,
    unpack_message,
)

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]

MAX_UNIX_PATH_BYTES = 107
"""sun_path is 108 bytes on Linux, including the terminating NUL."""
_READ_CHUNK_BYTES = 65536
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_BACKOFF_S = 0.1
_LISTEN_BACKLOG = 512
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

REFUSAL_REASONS = (
    "connection_limit",  # a newcomer refused: every connection had requests in flight
    "peer_connection_limit",  # a newcomer refused: its process holds its share, all busy
    "evicted_idle",  # an idle connection closed to make room for a newcomer
    "idle_timeout",  # nothing in flight and nothing received for idle_timeout_s
    "slow_frame",  # a started frame did not complete within frame_timeout_s
    "bad_requests",  # more than max_bad_requests malformed requests on one connection
    "oversized_frame",  # a frame over max_request_bytes (or garbage read as a length)
)

log = structlog.get_logger("hzp2p.admin")


class AdminSocketError(Exception):
    """The admin socket cannot be created: in use by a live daemon, bad path, not a socket."""


@dataclass
class AdminServerStatistics:
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    requests_total: int = 0
    requests_in_flight: int = 0
    bad_frames: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    """Connections refused or closed by the fairness rules, by reason (REFUSAL_REASONS)."""


class AdminServer:
    """Serves admin requests on a Unix socket; see the module docstring for the API."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        max_request_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_response_bytes: int = 64 << 20,
        max_concurrent_per_connection: int = 16,
        max_connections: int = 64,
        max_connections_per_peer: int | None = None,
        idle_timeout_s: float = 60.0,
        frame_timeout_s: float = 10.0,
        max_bad_requests: int = 16,
        handler_timeout_s: float | None = None,
    ) -> None:
        if max_request_bytes <= 0 or max_response_bytes <= 0:
            raise ValueError("frame bounds must be positive")
        if max_concurrent_per_connection <= 0 or max_connections <= 0:
            raise ValueError("concurrency bounds must be positive")
        if idle_timeout_s <= 0 or frame_timeout_s <= 0 or max_bad_requests < 0:
            raise ValueError("timeouts must be positive and max_bad_requests non-negative")
        per_peer = max_connections_per_peer or max(1, max_connections // 2)
        if not 0 < per_peer <= max_connections:
            raise ValueError("max_connections_per_peer must be in 1..max_connections")
        self.socket_path = Path(socket_path)
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes
        self.max_concurrent_per_connection = max_concurrent_per_connection
        self.max_connections = max_connections
        self.max_connections_per_peer = per_peer
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.max_bad_requests = max_bad_requests
        self.handler_timeout_s = handler_timeout_s
        self._handlers: dict[str, tuple[Handler, tuple[Param, ...]]] = {}
        self._stats = AdminServerStatistics()
        self._errors: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        self._conns: dict[_Connection, None] = {}  # open connections, oldest first
        self._bound_inode: int | None = None

    # -- registry ----------------------------------------------------------

    def register(
        self, method: str, handler: Handler, params: tuple[Param, ...] | None = None
    ) -> None:
        """Serve `method` with `handler`; params default to its operation's (hzp2p.admin
        .operations)."""
        if method in self._handlers:
            raise ValueError(f"admin method {method!r} is already registered")
        if params is None:
            if method not in METHOD_PARAMS:
                raise ValueError(f"admin method {method!r} has no schema; pass params=")
            params = METHOD_PARAMS[method]
        self._handlers[method] = (handler, params)

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def statistics(self) -> AdminServerStatistics:
        s = self._stats
        return AdminServerStatistics(
            connections_open=s.connections_open,
            connections_total=s.connections_total,
            connections_refused=s.connections_refused,
            requests_total=s.requests_total,
            requests_in_flight=s.requests_in_flight,
            bad_frames=s.bad_frames,
            errors_by_code=dict(self._errors),
            refusals=dict(self._refusals),
        )

    # -- socket ------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Create the socket, report started, serve until cancelled; remove the socket on exit."""
        sock = await self._bind()
        listener = trio.SocketListener(sock)
        try:
            task_status.started()
            log.info("admin_listening", socket=str(self.socket_path))
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                            raise
                        # Out of file descriptors or memory: back off, keep the socket.
                        log.warning("admin_accept_failed", error=str(exc))
                        await trio.sleep(_ACCEPT_BACKOFF_S)
                        continue
                    nursery.start_soon(self._connection, stream)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
            self._unlink_if_ours()

    async def _bind(self) -> trio.socket.SocketType:
        path = self.socket_path
        if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:
            raise AdminSocketError(
                f"admin socket path {path} is longer than {MAX_UNIX_PATH_BYTES} bytes"
            )
        await self._remove_stale(path)
        sock = self._bind_private(path)
        self._bound_inode = os.stat(path).st_ino
        return trio.socket.from_stdlib_socket(sock)

    @staticmethod
    def _bind_private(path: Path) -> stdlib_socket.socket:
        """Bind inside a fresh 0700 directory, chmod 0600, listen, then rename into place.

        The socket is never reachable by others, and no process-wide umask change
        races other threads.
        """
        if not path.parent.is_dir():
            raise AdminSocketError(f"admin socket directory {path.parent} does not exist")
        tmp_dir = Path(tempfile.mkdtemp(prefix=".adm", dir=path.parent))
        tmp_path = tmp_dir / "s"
        sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        try:
            if len(os.fsencode(tmp_path)) > MAX_UNIX_PATH_BYTES:
                raise AdminSocketError(f"admin socket directory path {path.parent} is too long")
            sock.bind(os.fspath(tmp_path))
            os.chmod(tmp_path, 0o600)
            sock.listen(_LISTEN_BACKLOG)
            os.rename(tmp_path, path)
        except BaseException:
            sock.close()
            tmp_path.unlink(missing_ok=True)
            raise
        finally:
            with contextlib.suppress(OSError):
                tmp_dir.rmdir()
        return sock

    async def _remove_stale(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AdminSocketError(f"{path} exists and is not a socket; refusing to replace it")
        probe = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        try:
            with trio.move_on_after(2):
                await probe.connect(os.fspath(path))
            # Connected, or the connect hangs (a live daemon with a full backlog): in use.
            raise AdminSocketError(
                f"another daemon is serving the admin socket {path}; refusing to start"
            )
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise AdminSocketError(f"cannot probe the admin socket {path}: {exc}") from exc
        finally:
            probe.close()
        log.info("admin_stale_socket_removed", socket=str(path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _unlink_if_ours(self) -> None:
        try:
            if os.stat(self.socket_path).st_ino == self._bound_inode:
                self.socket_path.unlink()
        except OSError:
            pass

    # -- connections -------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        stats = self._stats
        stats.connections_total += 1
        conn = _Connection(self, stream, _peer_pid(stream))
        refusal = self._make_room(conn.pid)
        if refusal is not None:
            stats.connections_refused += 1
            self._refuse(refusal)
            err = AdminError("unavailable", "too many admin connections", hint="retry later")
            self._count_error(err.code)
            with trio.move_on_after(1):
                await _send_quietly(stream, pack_message(error_response(None, err).to_wire()))
            await trio.aclose_forcefully(stream)
            return
        self._conns[conn] = None
        stats.connections_open += 1
        try:
            await conn.run()
        except Exception:
            log.exception("admin_connection_failed")
        finally:
            self._conns.pop(conn, None)
            stats.connections_open -= 1
            await trio.aclose_forcefully(stream)

    def _make_room(self, pid: int | None) -> str | None:
        """Evict an idle connection if the newcomer needs its slot; the refusal reason if none."""
        holders = Counter(c.pid for c in self._conns)
        share = self.max_connections_per_peer
        if pid is not None and share < self.max_connections and holders[pid] >= share:
            own = [c for c in self._conns if c.pid == pid and c.idle]
            if not own:
                return "peer_connection_limit"
            self._evict(min(own, key=lambda c: c.last_active_s))
        elif len(self._conns) >= self.max_connections:
            idle = [c for c in self._conns if c.idle]
            if not idle:
                return "connection_limit"
            # The process holding the most connections pays first; then the least recent.
            self._evict(min(idle, key=lambda c: (-holders[c.pid], c.last_active_s)))
        return None

    def _evict(self, conn: _Connection) -> None:
        self._conns.pop(conn, None)
        self._refuse("evicted_idle")
        conn.close("evicted_idle")

    def _refuse(self, reason: str) -> None:
        self._refusals[reason] += 1
        log.debug("admin_connection_refused", reason=reason)

    def _count_error(self, code: str) -> None:
        self._errors[code] += 1

    async def dispatch(self, method: str, params: Mapping[str, Any]) -> Any:
        """Check params and run the handler; raise AdminError for any failure."""
        entry = self._handlers.get(method)
        if entry is None:
            raise AdminError(
                "unknown_method",
                f"unknown admin method {method!r}",
                hint=f"known methods: {', '.join(sorted(self._handlers))}",
            )
        handler, schema = entry
        check_params(method, schema, params)
        if self.handler_timeout_s is None:
            return await handler(params)
        with trio.move_on_after(self.handler_timeout_s):
            return await handler(params)
        raise AdminError("timeout", f"{method} did not finish within {self.handler_timeout_s:g} s")


class _Connection:
    """One client: reads frames, runs requests concurrently (bounded), writes responses."""

    def __init__(self, server: AdminServer, stream: trio.SocketStream, pid: int | None) -> None:
        self.server = server
        self.stream = stream
        self.pid = pid
        self.send_lock = trio.Lock()
        self.slots = trio.Semaphore(server.max_concurrent_per_connection)
        self.decoder = FrameDecoder(server.max_request_bytes)
        self.cancel_scope = trio.CancelScope()
        self.in_flight = 0
        self.bad_requests = 0
        self.last_active_s = trio.current_time()
        self.frame_started_s: float | None = None
        self.closed_for: str | None = None

    @property
    def idle(self) -> bool:
        """Nothing in flight: closing it loses no request (a partial frame is no request)."""
        return self.in_flight == 0

    def close(self, reason: str) -> None:
        """End the connection (from the server or a timeout); a best-effort notice is sent."""
        if self.closed_for is None:
            self.closed_for = reason
        self.cancel_scope.cancel()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self.cancel_scope = nursery.cancel_scope
            if self.closed_for is not None:  # evicted before it started
                nursery.cancel_scope.cancel()
            try:
                await self._read_loop(nursery)
            finally:
                # EOF, a broken connection or a fatal frame: in-flight handlers are dropped.
                nursery.cancel_scope.cancel()
        if self.closed_for is not None:
            err = AdminError(
                "unavailable", f"admin connection closed: {self.closed_for}",
                hint="reconnect; idle connections are closed when the daemon needs room",
            )
            with trio.move_on_after(0.5):
                await _send_quietly(self.stream, pack_message(error_response(None, err).to_wire()))

    def _read_deadline(self) -> float:
        server = self.server
        if self.frame_started_s is not None:
            return self.frame_started_s + server.frame_timeout_s
        return self.last_active_s + server.idle_timeout_s

    def _timed_out(self) -> str | None:
        """Why the connection must close now that its read deadline passed, if it must."""
        now = trio.current_time()
        if self.frame_started_s is not None:
            if now >= self.frame_started_s + self.server.frame_timeout_s:
                return "slow_frame"
            return None
        if self.in_flight == 0 and now >= self.last_active_s + self.server.idle_timeout_s:
            return "idle_timeout"
        return None

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        server = self.server
        while True:
            data = b""
            with trio.move_on_at(self._read_deadline()):
                try:
                    data = await self.stream.receive_some(_READ_CHUNK_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
            if not data:
                reason = self._timed_out()
                if reason is None:  # requests were in flight: the idle clock restarts
                    self.last_active_s = max(self.last_active_s, trio.current_time())
                    continue
                server._refuse(reason)
                self.closed_for = reason
                return
            self.last_active_s = trio.current_time()
            try:
                bodies = self.decoder.feed(data)
            except AdminProtocolError as exc:
                server._stats.bad_frames += 1
                server._refuse("oversized_frame")
                # Framing is lost: say why, then close.
                await self._respond(error_response(None, AdminError("bad_request", str(exc))))
                return
            if self.decoder.buffered_bytes == 0:
                self.frame_started_s = None
            elif bodies or self.frame_started_s is None:
                self.frame_started_s = self.last_active_s
            for body in bodies:
                server._stats.requests_total += 1
                try:
                    request = parse_request(unpack_message(body))
                except AdminProtocolError as exc:
                    if not isinstance(exc, RequestError):
                        server._stats.bad_frames += 1
                    rid, code = (
                        (exc.request_id, exc.code) if isinstance(exc, RequestError)
                        else (None, "bad_request")
                    )
                    await self._respond(error_response(rid, AdminError(code, str(exc))))
                    self.bad_requests += 1
                    if self.bad_requests > server.max_bad_requests:
                        server._refuse("bad_requests")
                        self.closed_for = "bad_requests"
                        return
                    continue
                await self.slots.acquire()  # back-pressure: stop reading while saturated
                self.in_flight += 1
                nursery.start_soon(self._run_request, request.id, request.method, request.params)

    async def _run_request(self, request_id: int, method: str, params: Mapping[str, Any]) -> None:
        server = self.server
        server._stats.requests_in_flight += 1
        try:
            try:
                result = await server.dispatch(method, params)
                response = ok_response(request_id, result)
            except AdminError as exc:
                response = error_response(request_id, exc)
            except Exception as exc:
                log.exception("admin_handler_failed", method=method, request_id=request_id)
                response = error_response(
                    request_id,
                    AdminError("internal", f"{method} failed: {type(exc).__name__}: {exc}"),
                )
            await self._respond(response)
        finally:
            server._stats.requests_in_flight -= 1
            self.in_flight -= 1
            self.last_active_s = trio.current_time()
            self.slots.release()

    async def _respond(self, response: Response) -> None:
        server = self.server
        try:
            frame = pack_message(response.to_wire(), max_frame_bytes=server.max_response_bytes)
        except AdminProtocolError as exc:
            log.exception("admin_unencodable_result", request_id=response.id, error=str(exc))
            response = error_response(
                response.id, AdminError("internal", f"result cannot be sent: {exc}")
            )
            frame = pack_message(response.to_wire())
        if response.error is not None:
            server._count_error(response.error.code)
        async with self.send_lock:
            if not await _send_quietly(self.stream, frame):
                # The client is gone: drop this result and end the connection.
                self.cancel_scope.cancel()


def _peer_pid(stream: trio.SocketStream) -> int | None:
    """The connecting process's id (Linux SO_PEERCRED), or None where the kernel cannot say."""
    opt = getattr(stdlib_socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        raw = stream.socket.getsockopt(stdlib_socket.SOL_SOCKET, opt, _PEERCRED.size)
    except OSError:
        return None
    pid = int(_PEERCRED.unpack(raw)[0])
    return pid if pid > 0 else None


async def _send_quietly(stream: trio.SocketStream, frame: bytes) -> bool:
    try:
        await stream.send_all(frame)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True
