"""A tiny metrics registry rendered in the Prometheus text exposition format (0.0.4).

It owns counters and gauges (with help text and labels), their rendering, and
an optional minimal HTTP/1.1 endpoint serving GET /metrics, so the daemon can
expose term, role, indices, mempool size, commits, rejections, elections,
peers and refused frames without a third-party client library.

    registry = MetricsRegistry()
    committed = registry.counter("hzp2p_txs_committed_total", "Transactions committed.")
    term = registry.gauge("hzp2p_raft_term", "Current Raft term.")
    role = registry.gauge("hzp2p_raft_role", "1 for the role this node has.", labels=("role",))
    committed.inc(12); term.set(3); role.labels(role="leader").set(1)
    registry.add_collect_hook(lambda: term.set(core.term))   # refreshed before each render
    text = registry.render()
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Final

import structlog
import trio

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_LABEL_SETS: Final = 1000
"""Bound on distinct label combinations per metric (protects against label explosions)."""

log = structlog.get_logger("hzp2p.metrics")


class MetricsError(Exception):
    """Invalid metric definition or use (bad name, label mismatch, negative counter increment)."""


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Child:
    """One time series: a metric with a fixed set of label values."""

    __slots__ = ("_counter", "value")

    def __init__(self, counter: bool) -> None:
        self._counter = counter
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if self._counter and amount < 0:
            raise MetricsError("counters only go up")
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        if self._counter:
            raise MetricsError("counters only go up")
        self.value -= amount

    def set(self, value: float) -> None:
        if self._counter:
            raise MetricsError("counters cannot be set")
        self.value = float(value)


class Metric:
    """A counter or gauge family; unlabelled metrics use inc/dec/set directly."""

    def __init__(self, name: str, help_text: str, kind: str, labels: tuple[str, ...]) -> None:
        if not _NAME_RE.match(name):
            raise MetricsError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL_RE.match(label) or label.startswith("__"):
                raise MetricsError(f"invalid label name {label!r} on {name}")
        if kind == "counter" and not name.endswith("_total"):
            raise MetricsError(f"counter {name!r} should end in _total")
        self.name = name
        self.help_text = help_text
        self.kind = kind
        self.label_names = labels
        self._children: dict[tuple[str, ...], _Child] = {}
        if not labels:
            self._children[()] = _Child(kind == "counter")

    def labels(self, **values: str) -> _Child:
        if set(values) != set(self.label_names):
            raise MetricsError(
                f"{self.name} takes labels {self.label_names}, got {tuple(sorted(values))}"
            )
        key = tuple(str(values[name]) for name in self.label_names)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_LABEL_SETS:
                raise MetricsError(f"{self.name} has too many label combinations")
            child = self._children[key] = _Child(self.kind == "counter")
        return child

    def _only(self) -> _Child:
        if self.label_names:
            raise MetricsError(f"{self.name} has labels; use .labels(...)")
        return self._children[()]

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def set(self, value: float) -> None:
        self._only().set(value)

    def value(self, **labels: str) -> float:
        return self.labels(**labels).value if self.label_names else self._only().value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help_text)}"
        yield f"# TYPE {self.name} {self.kind}"
        for key in sorted(self._children):
            child = self._children[key]
            if key:
                pairs = ",".join(
                    f'{n}="{_escape_label(v)}"' for n, v in zip(self.label_names, key, strict=True)
                )
                yield f"{self.name}{{{pairs}}} {_format_value(child.value)}"
            else:
                yield f"{self.name} {_format_value(child.value)}"


class MetricsRegistry:
    """Holds metric families in registration order and renders them."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._hooks: list[Callable[[], None]] = []

    def _add(self, name: str, help_text: str, kind: str, labels: Iterable[str]) -> Metric:
        if name in self._metrics:
            raise MetricsError(f"metric {name!r} is already registered")
        metric = Metric(name, help_text, kind, tuple(labels))
        self._metrics[name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Metric:
        return self._add(name, help_text, "counter", labels)

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Metric:
        return self._add(name, help_text, "gauge", labels)

    def get(self, name: str) -> Metric:
        return self._metrics[name]

    def add_collect_hook(self, hook: Callable[[], None]) -> None:
        """`hook` runs before every render, to refresh gauges from live state."""
        self._hooks.append(hook)

    def render(self) -> str:
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                log.exception("metrics_collect_hook_failed")
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


RAFT_ROLES: Final = ("leader", "follower", "candidate", "learner")


class NodeMetrics:
    """The daemon's standard metric families, so names stay stable across modules.

    The daemon updates them as events happen (or from a collect hook):
    gauges hzp2p_raft_term, hzp2p_raft_role{role}, hzp2p_raft_commit_index,
    hzp2p_raft_applied_index, hzp2p_chain_height, hzp2p_mempool_txs,
    hzp2p_mempool_bytes, hzp2p_peers_connected; counters
    hzp2p_txs_committed_total, hzp2p_txs_rejected_total, hzp2p_elections_total,
    hzp2p_frames_refused_total{reason}, hzp2p_admin_requests_total{method},
    hzp2p_admin_refusals_total{reason}.
    """

    def __init__(self, registry: MetricsRegistry | None = None) -> None:
        reg = self.registry = registry or MetricsRegistry()
        self.term = reg.gauge("hzp2p_raft_term", "Current Raft term.")
        self.role = reg.gauge(
            "hzp2p_raft_role", "1 for this node's current Raft role, 0 otherwise.", ("role",)
        )
        self.commit_index = reg.gauge("hzp2p_raft_commit_index", "Highest committed log index.")
        self.applied_index = reg.gauge("hzp2p_raft_applied_index", "Highest applied log index.")
        self.height = reg.gauge("hzp2p_chain_height", "Height of the local chain.")
        self.mempool_txs = reg.gauge("hzp2p_mempool_txs", "Transactions waiting in the mempool.")
        self.mempool_bytes = reg.gauge("hzp2p_mempool_bytes", "Bytes waiting in the mempool.")
        self.peers_connected = reg.gauge("hzp2p_peers_connected", "Peers currently connected.")
        self.txs_committed = reg.counter(
            "hzp2p_txs_committed_total", "Transactions applied with an accepted verdict."
        )
        self.txs_rejected = reg.counter(
            "hzp2p_txs_rejected_total", "Transactions refused (at admission or by a contract)."
        )
        self.elections = reg.counter("hzp2p_elections_total", "Elections this node started.")
        self.frames_refused = reg.counter(
            "hzp2p_frames_refused_total", "Peer frames refused, by reason.", ("reason",)
        )
        self.admin_requests = reg.counter(
            "hzp2p_admin_requests_total", "Admin requests served, by method.", ("method",)
        )
        self.admin_refusals = reg.counter(
            "hzp2p_admin_refusals_total",
            "Admin connections refused or closed by the fairness rules, by reason.",
            ("reason",),
        )
        self.set_role("follower")

    def set_role(self, role: str) -> None:
        if role not in RAFT_ROLES:
            raise MetricsError(f"unknown Raft role {role!r}")
        for name in RAFT_ROLES:
            self.role.labels(role=name).set(1 if name == role else 0)

    def render(self) -> str:
        return self.registry.render()


# ---------------------------------------------------------------------------
# HTTP endpoint

MAX_HTTP_REQUEST_BYTES: Final = 8192
HTTP_READ_TIMEOUT_S: Final = 5.0
MAX_HTTP_CONNECTIONS: Final = 16
HTTP_LINGER_S: Final = 1.0
MAX_HTTP_DRAIN_BYTES: Final = 65536


def _http_response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def handle_http_request(registry: MetricsRegistry, head: bytes) -> bytes:
    """The full response to one request head (sans IO, for the server and for tests)."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _http_response("400 Bad Request", b"bad request\n")
    method, target, _version = parts
    path = target.split("?", 1)[0]
    if path != "/metrics":
        return _http_response("404 Not Found", b"not found; try /metrics\n")
    if method not in ("GET", "HEAD"):
        return _http_response("405 Method Not Allowed", b"method not allowed\n")
    body = registry.render().encode("utf-8")
    response = _http_response("200 OK", body, CONTENT_TYPE)
    if method == "HEAD":
        return response[: len(response) - len(body)]
    return response


async def _lingering_close(stream: trio.abc.Stream) -> None:
    """Half-close, then discard (bounded) what the client still sends, so closing with
    unread input does not reset the connection before it has read our response."""
    if isinstance(stream, trio.abc.HalfCloseableStream):
        await stream.send_eof()
    drained = 0
    with trio.move_on_after(HTTP_LINGER_S):
        while drained < MAX_HTTP_DRAIN_BYTES:
            data = await stream.receive_some(4096)
            if not data:
                break
            drained += len(data)


async def _serve_http_connection(
    registry: MetricsRegistry, stream: trio.abc.Stream, limiter: trio.CapacityLimiter
) -> None:
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        await trio.aclose_forcefully(stream)
        return
    try:
        buf = bytearray()
        response: bytes | None = None
        with trio.move_on_after(HTTP_READ_TIMEOUT_S):
            while b"\r\n\r\n" not in buf:
                if len(buf) > MAX_HTTP_REQUEST_BYTES:
                    response = _http_response(
                        "431 Request Header Fields Too Large", b"request too large\n"
                    )
                    break
                data = await stream.receive_some(4096)
                if not data:
                    return
                buf += data
            if response is None:
                response = handle_http_request(registry, bytes(buf))
            await stream.send_all(response)
            await _lingering_close(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        limiter.release()
        await trio.aclose_forcefully(stream)


async def serve_metrics_http(
    registry: MetricsRegistry,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve GET /metrics on host:port until cancelled; reports the bound port when started."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    limiter = trio.CapacityLimiter(MAX_HTTP_CONNECTIONS)
    bound_port: int = listeners[0].socket.getsockname()[1]
    log.info("metrics_http_listening", host=host, port=bound_port)
    task_status.started(bound_port)

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_http_connection(registry, stream, limiter)

    await trio.serve_listeners(handler, listeners)
