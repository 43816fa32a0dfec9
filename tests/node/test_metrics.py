"""The node's metrics (prometheus-client): their text, the collect hooks and the HTTP endpoint."""

from __future__ import annotations

import math
import threading

import pytest
import trio
from prometheus_client import Counter, Gauge

from hzp2p.node.metrics import MetricsError, MetricsRegistry, NodeMetrics, serve_metrics_http


def sample_registry() -> MetricsRegistry:
    reg = MetricsRegistry()
    committed = Counter("hzp2p_txs_committed_total", "Transactions committed.", registry=reg)
    term = Gauge("hzp2p_raft_term", "Current Raft term.", registry=reg)
    role = Gauge("hzp2p_raft_role", 'Role (1 = current).\nOne "per" line.', ["role"],
                 registry=reg)
    refused = Counter("hzp2p_frames_refused_total", "Frames refused.", ["reason"], registry=reg)
    committed.inc(12)
    term.set(3)
    role.labels(role="leader").set(1)
    role.labels(role="follower").set(0)
    refused.labels(reason='too "big"\\n').inc()
    return reg


def test_text_exposition_format() -> None:
    text = sample_registry().render()
    assert text == (
        "# HELP hzp2p_txs_committed_total Transactions committed.\n"
        "# TYPE hzp2p_txs_committed_total counter\n"
        "hzp2p_txs_committed_total 12.0\n"
        "# HELP hzp2p_raft_term Current Raft term.\n"
        "# TYPE hzp2p_raft_term gauge\n"
        "hzp2p_raft_term 3.0\n"
        '# HELP hzp2p_raft_role Role (1 = current).\\nOne "per" line.\n'
        "# TYPE hzp2p_raft_role gauge\n"
        'hzp2p_raft_role{role="leader"} 1.0\n'
        'hzp2p_raft_role{role="follower"} 0.0\n'
        "# HELP hzp2p_frames_refused_total Frames refused.\n"
        "# TYPE hzp2p_frames_refused_total counter\n"
        'hzp2p_frames_refused_total{reason="too \\"big\\"\\\\n"} 1.0\n'
    )


def test_values_and_hooks() -> None:
    reg = MetricsRegistry()
    g = Gauge("g", "a gauge", registry=reg)
    state = {"v": 2.5}
    reg.add_collect_hook(lambda: g.set(state["v"]))
    assert "g 2.5\n" in reg.render()
    for value, shown in ((math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (1e20, "1e+20")):
        state["v"] = value
        assert f"g {shown}\n" in reg.render()

    def broken() -> None:
        raise RuntimeError("collector bug")

    reg.add_collect_hook(broken)
    assert "g " in reg.render()  # a failing hook is logged, the render still works


def test_misuse_is_refused() -> None:
    reg = MetricsRegistry()
    c = Counter("c_total", "c", registry=reg)
    with pytest.raises(ValueError):
        c.inc(-1)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("c_total", "again", registry=reg)
    labelled = Gauge("l", "x", ["a"], registry=reg)
    with pytest.raises(ValueError, match="missing label values"):
        labelled.set(1)
    with pytest.raises(ValueError, match="Incorrect label names"):
        labelled.labels(b="1")
    with pytest.raises(ValueError, match="Reserved label"):
        Gauge("m", "x", ["__reserved"], registry=reg)


async def _http(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        chunks = []
        while data := await stream.receive_some(65536):
            chunks.append(data)
    return b"".join(chunks)


async def test_http_endpoint_runs_the_hooks_on_the_trio_thread() -> None:
    reg = sample_registry()
    term = Gauge("hzp2p_raft_commit_index", "x", registry=reg)
    hook_threads: list[int] = []

    def hook() -> None:
        hook_threads.append(threading.get_ident())
        term.set(41 + len(hook_threads))

    reg.add_collect_hook(hook)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_metrics_http, reg, "127.0.0.1", 0)
            resp = await _http(port, b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            head, body = resp.split(b"\r\n\r\n", 1)
            assert head.split(b" ", 2)[1] == b"200"
            assert b"text/plain; version=0.0.4" in head
            assert b"hzp2p_raft_term 3.0" in body and b"hzp2p_raft_commit_index 42.0" in body
            assert hook_threads == [threading.get_ident()]  # the hook ran on this (Trio) thread
            resp = await _http(port, b"POST /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert resp.split(b" ", 2)[1] == b"405"
            nursery.cancel_scope.cancel()


def test_node_metrics_families() -> None:
    m = NodeMetrics()
    m.term.set(7)
    m.set_role("leader")
    m.txs_committed.inc(5)
    m.frames_refused.labels(reason="oversized").inc()
    text = m.render()
    assert "hzp2p_raft_term 7.0\n" in text
    assert 'hzp2p_raft_role{role="leader"} 1.0\n' in text
    assert 'hzp2p_raft_role{role="follower"} 0.0\n' in text
    assert "hzp2p_txs_committed_total 5.0\n" in text
    assert 'hzp2p_frames_refused_total{reason="oversized"} 1.0\n' in text
    for name in ("hzp2p_raft_commit_index", "hzp2p_raft_applied_index", "hzp2p_chain_height",
                 "hzp2p_mempool_txs", "hzp2p_txs_rejected_total", "hzp2p_elections_total",
                 "hzp2p_peers_connected"):
        assert f"# TYPE {name} " in text
    assert "_created" not in text
    with pytest.raises(MetricsError):
        m.set_role("king")
