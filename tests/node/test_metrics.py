"""The metrics registry's Prometheus text output and the /metrics HTTP endpoint."""

from __future__ import annotations

import math

import pytest
import trio

from hzp2p.node.metrics import (
    CONTENT_TYPE,
    MetricsError,
    MetricsRegistry,
    NodeMetrics,
    handle_http_request,
    serve_metrics_http,
)


def sample_registry() -> MetricsRegistry:
    reg = MetricsRegistry()
    committed = reg.counter("hzp2p_txs_committed_total", "Transactions committed.")
    term = reg.gauge("hzp2p_raft_term", "Current Raft term.")
    role = reg.gauge("hzp2p_raft_role", 'Role (1 = current).\nOne "per" line.', labels=("role",))
    refused = reg.counter("hzp2p_frames_refused_total", "Frames refused.", labels=("reason",))
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
        "hzp2p_txs_committed_total 12\n"
        "# HELP hzp2p_raft_term Current Raft term.\n"
        "# TYPE hzp2p_raft_term gauge\n"
        "hzp2p_raft_term 3\n"
        '# HELP hzp2p_raft_role Role (1 = current).\\nOne "per" line.\n'
        "# TYPE hzp2p_raft_role gauge\n"
        'hzp2p_raft_role{role="follower"} 0\n'
        'hzp2p_raft_role{role="leader"} 1\n'
        "# HELP hzp2p_frames_refused_total Frames refused.\n"
        "# TYPE hzp2p_frames_refused_total counter\n"
        'hzp2p_frames_refused_total{reason="too \\"big\\"\\\\n"} 1\n'
    )


def test_values_and_hooks() -> None:
    reg = MetricsRegistry()
    g = reg.gauge("g", "a gauge")
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
    c = reg.counter("c_total", "c")
    with pytest.raises(MetricsError):
        c.inc(-1)
    with pytest.raises(MetricsError):
        c.set(3)
    with pytest.raises(MetricsError, match="already registered"):
        reg.gauge("c_total", "again")
    with pytest.raises(MetricsError, match="invalid metric name"):
        reg.gauge("bad-name", "x")
    with pytest.raises(MetricsError, match="_total"):
        reg.counter("no_suffix", "x")
    labelled = reg.gauge("l", "x", labels=("a",))
    with pytest.raises(MetricsError, match=r"use \.labels"):
        labelled.set(1)
    with pytest.raises(MetricsError, match="takes labels"):
        labelled.labels(b="1")
    with pytest.raises(MetricsError, match="invalid label name"):
        reg.gauge("m", "x", labels=("__reserved",))


def test_http_request_handling_sans_io() -> None:
    reg = sample_registry()
    ok = handle_http_request(reg, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = ok.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert f"Content-Type: {CONTENT_TYPE}".encode() in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert body.decode() == reg.render()
    assert handle_http_request(reg, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert handle_http_request(reg, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert handle_http_request(reg, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    head_only = handle_http_request(reg, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert head_only.endswith(b"\r\n\r\n")


async def _http(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        await stream.send_eof()
        chunks = []
        while data := await stream.receive_some(65536):
            chunks.append(data)
    return b"".join(chunks)


async def test_http_endpoint() -> None:
    reg = sample_registry()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_metrics_http, reg, "127.0.0.1", 0)
            resp = await _http(port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
            assert resp.startswith(b"HTTP/1.1 200 OK") and b"hzp2p_raft_term 3" in resp
            resp = await _http(port, b"GET /other HTTP/1.1\r\n\r\n")
            assert resp.startswith(b"HTTP/1.1 404")
            resp = await _http(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)
            assert resp.startswith(b"HTTP/1.1 431")
            nursery.cancel_scope.cancel()


def test_node_metrics_families() -> None:
    m = NodeMetrics()
    m.term.set(7)
    m.set_role("leader")
    m.txs_committed.inc(5)
    m.frames_refused.labels(reason="oversized").inc()
    text = m.render()
    assert "hzp2p_raft_term 7\n" in text
    assert 'hzp2p_raft_role{role="leader"} 1\n' in text
    assert 'hzp2p_raft_role{role="follower"} 0\n' in text
    assert "hzp2p_txs_committed_total 5\n" in text
    assert 'hzp2p_frames_refused_total{reason="oversized"} 1\n' in text
    for name in ("hzp2p_raft_commit_index", "hzp2p_raft_applied_index", "hzp2p_chain_height",
                 "hzp2p_mempool_txs", "hzp2p_txs_rejected_total", "hzp2p_elections_total",
                 "hzp2p_peers_connected"):
        assert f"# TYPE {name} " in text
    with pytest.raises(MetricsError):
        m.set_role("king")
