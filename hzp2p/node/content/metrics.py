"""Prometheus metrics of data-set content delivery, refreshed from the service's counters
before every render (the service itself stays free of the metrics library)."""

from __future__ import annotations

from dataclasses import asdict

from prometheus_client import Counter

from hzp2p.node.content.service import ContentService
from hzp2p.node.metrics import MetricsRegistry


def register_metrics(registry: MetricsRegistry, service: ContentService) -> None:
    """`hzp2p_content_chunks_total{event}` (served, fetched, corrupt, retried, busy_answers),
    `hzp2p_content_bytes_total{direction}` (served, fetched) and
    `hzp2p_content_requests_total{outcome}` (manifest, refused, busy, send_drop)."""
    chunks = Counter("hzp2p_content_chunks_total", "Data-set content chunks, by event.",
                     ["event"], registry=registry)
    nbytes = Counter("hzp2p_content_bytes_total", "Data-set content bytes, served and fetched.",
                     ["direction"], registry=registry)
    requests = Counter("hzp2p_content_requests_total",
                       "Content requests from peers, by outcome other than chunks served.",
                       ["outcome"], registry=registry)
    where = {
        "served_chunks": (chunks, "served"), "fetched_chunks": (chunks, "fetched"),
        "corrupt_chunks": (chunks, "corrupt"), "retried_chunks": (chunks, "retried"),
        "busy_answers": (chunks, "busy_answers"),
        "served_bytes": (nbytes, "served"), "fetched_bytes": (nbytes, "fetched"),
        "served_manifests": (requests, "manifest"), "refused": (requests, "refused"),
        "busy": (requests, "busy"), "send_drops": (requests, "send_drop"),
    }
    counted: dict[str, int] = dict.fromkeys(where, 0)

    def collect() -> None:
        now = asdict(service.stats)
        for key, (metric, label) in where.items():
            delta = now[key] - counted[key]
            if delta > 0:
                metric.labels(label).inc(delta)
                counted[key] = now[key]

    registry.add_collect_hook(collect)
