"""The gateway's Prometheus metrics (prometheus-client), in a registry of their own.

Served on [gateway] metrics_listen at GET /metrics, never on the public listener.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "hzp2p_gateway_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "hzp2p_gateway_request_seconds", "Time to answer a request", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        self.in_flight = Gauge("hzp2p_gateway_in_flight", "Requests being handled", registry=r)
        self.auth_failures = Counter(
            "hzp2p_gateway_auth_failures", "Signed requests refused (401/403), by reason",
            ["reason"], registry=r,
        )
        self.limited = Counter(
            "hzp2p_gateway_limited",
            "Requests refused by an abuse limit (address_rate, key_rate, body_size, header_size,"
            " concurrency, timeout, replay_cache)",
            ["limit"], registry=r,
        )
        self.credentials = Counter(
            "hzp2p_gateway_credentials_issued", "Health-code credentials signed", registry=r
        )
        self.tx_forwarded = Counter(
            "hzp2p_gateway_tx_forwarded", "Transactions posted, by outcome", ["outcome"], registry=r
        )
