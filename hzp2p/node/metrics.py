"""The node's metrics on prometheus-client: its families, their text and the /metrics endpoint.

It owns the daemon's metric families (`NodeMetrics`: names stay stable across
modules), a registry whose collect hooks refresh gauges and counters from live
state before every collection, the Prometheus text for `hzp2p admin metrics`
(`MetricsRegistry.render`, prometheus-client's exposition) and the `[metrics]
http` endpoint (prometheus-client's HTTP server, in its own thread).

    registry = MetricsRegistry()
    committed = Counter("hzp2p_txs_committed_total", "Transactions committed.", registry=registry)
    term = Gauge("hzp2p_raft_term", "Current Raft term.", registry=registry)
    registry.add_collect_hook(lambda: term.set(core.term))   # refreshed before each collection
    text = registry.render()

Collect hooks read Trio-owned state, so they always run on the Trio thread: a
collection from the HTTP server's thread hands them to the Trio loop
(`trio.from_thread`) and waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Final

import prometheus_client
import structlog
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import RestrictedRegistry

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
"""What `render` returns: the Prometheus text exposition format 0.0.4."""

# Counters carry no `<name>_created` series: the daemon's metric names stay the ones
# NodeMetrics lists (rates come from the counters; a restart shows as a reset).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

log = structlog.get_logger("hzp2p.metrics")


class MetricsError(Exception):
    """Invalid use of a metric family (an unknown Raft role)."""


def _in_trio_thread() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


class MetricsRegistry(CollectorRegistry):
    """prometheus-client's registry, plus hooks run before every collection."""

    def __init__(self) -> None:
        super().__init__()
        self._hooks: list[Callable[[], None]] = []
        self._trio_token: trio.lowlevel.TrioToken | None = None

    def add_collect_hook(self, hook: Callable[[], None]) -> None:
        """`hook` runs before every collection, to refresh metrics from live state."""
        self._hooks.append(hook)

    def bind_trio(self, token: trio.lowlevel.TrioToken) -> None:
        """Collections from other threads run the hooks on this Trio loop."""
        self._trio_token = token

    def _run_hooks(self) -> None:
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                log.exception("metrics_collect_hook_failed")

    def refresh(self) -> None:
        """Run the collect hooks (on the Trio thread; skipped once that loop has ended)."""
        token = self._trio_token
        if token is None or _in_trio_thread():
            self._run_hooks()
            return
        with contextlib.suppress(trio.RunFinishedError):  # the daemon is shutting down
            trio.from_thread.run_sync(self._run_hooks, trio_token=token)

    def collect(self) -> Iterable[Metric]:
        self.refresh()
        yield from super().collect()

    def restricted_registry(self, names: Iterable[str]) -> RestrictedRegistry:
        # `GET /metrics?name[]=...` collects through this, not through `collect`.
        self.refresh()
        return super().restricted_registry(names)

    def render(self) -> str:
        """The Prometheus text exposition (0.0.4) of every metric, hooks run first."""
        return prometheus_client.generate_latest(self).decode("utf-8")


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

        def gauge(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, help_text, labels, registry=reg)

        def counter(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, help_text, labels, registry=reg)

        self.term = gauge("hzp2p_raft_term", "Current Raft term.")
        self.role = gauge(
            "hzp2p_raft_role", "1 for this node's current Raft role, 0 otherwise.", ("role",)
        )
        self.commit_index = gauge("hzp2p_raft_commit_index", "Highest committed log index.")
        self.applied_index = gauge("hzp2p_raft_applied_index", "Highest applied log index.")
        self.height = gauge("hzp2p_chain_height", "Height of the local chain.")
        self.mempool_txs = gauge("hzp2p_mempool_txs", "Transactions waiting in the mempool.")
        self.mempool_bytes = gauge("hzp2p_mempool_bytes", "Bytes waiting in the mempool.")
        self.peers_connected = gauge("hzp2p_peers_connected", "Peers currently connected.")
        self.txs_committed = counter(
            "hzp2p_txs_committed_total", "Transactions applied with an accepted verdict."
        )
        self.txs_rejected = counter(
            "hzp2p_txs_rejected_total", "Transactions refused (at admission or by a contract)."
        )
        self.elections = counter("hzp2p_elections_total", "Elections this node started.")
        self.frames_refused = counter(
            "hzp2p_frames_refused_total", "Peer frames refused, by reason.", ("reason",)
        )
        self.admin_requests = counter(
            "hzp2p_admin_requests_total", "Admin requests served, by method.", ("method",)
        )
        self.admin_refusals = counter(
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


async def serve_metrics_http(
    registry: MetricsRegistry,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics over HTTP on host:port (prometheus-client's server, in a thread)
    until cancelled; reports the bound port when started."""
    registry.bind_trio(trio.lowlevel.current_trio_token())
    server, thread = await trio.to_thread.run_sync(
        lambda: prometheus_client.start_http_server(port, addr=host, registry=registry)
    )
    try:
        bound_port: int = server.server_port
        log.info("metrics_http_listening", host=host, port=bound_port)
        task_status.started(bound_port)
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):  # shutdown() waits for the serving loop to stop
            await trio.to_thread.run_sync(server.shutdown)
        server.server_close()
        thread.join()
