"""Running the gateway: Hypercorn's Trio worker serves the app (and /metrics on its own port).

`run_gateway(cfg)` opens the node's database read-only, loads the credential key,
builds the app behind the limits middleware, and serves until SIGINT/SIGTERM,
then shuts down gracefully. Plain HTTP on a non-loopback address was already
refused by the config check unless `allow_plain_http` is set.
"""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path
from typing import Any

import nacl.signing
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CollectorRegistry, make_asgi_app

from hzp2p.config import GatewaySection, NodeConfig
from hzp2p.gateway.app import create_app
from hzp2p.gateway.auth import Authenticator
from hzp2p.gateway.context import GatewayContext
from hzp2p.gateway.fastpath import HealthCodeFastPath
from hzp2p.gateway.link import DaemonLink
from hzp2p.gateway.metrics import GatewayMetrics
from hzp2p.gateway.middleware import LimitsMiddleware
from hzp2p.gateway.store import Store
from hzp2p.node.keys import load_signing_key

log = structlog.get_logger("hzp2p.gateway")
CREDENTIAL_KEY_FILE = "credential.key"


def credential_key_path(cfg: NodeConfig) -> Path:
    assert cfg.gateway is not None
    return cfg.gateway.credential_key or cfg.data_dir / CREDENTIAL_KEY_FILE


def load_credential_key(cfg: NodeConfig) -> nacl.signing.SigningKey | None:
    """The configured credential key; None when unset and the default file does not exist."""
    assert cfg.gateway is not None
    path = credential_key_path(cfg)
    if cfg.gateway.credential_key is None and not path.exists():
        return None
    return load_signing_key(path)


def build(cfg: NodeConfig) -> tuple[LimitsMiddleware, GatewayContext]:
    gw = cfg.gateway
    assert gw is not None
    metrics = GatewayMetrics()
    ctx = GatewayContext(
        store=Store(cfg.db_path),
        link=DaemonLink(cfg.admin.socket),
        auth=Authenticator(
            metrics,
            window_ms=gw.clock_window_s * 1000,
            replay_capacity=gw.replay_cache_size,
            rate_per_key_per_s=gw.rate_per_key_per_s,
            burst_per_key=gw.burst_per_key,
        ),
        metrics=metrics,
        cfg=gw,
        inst_id=cfg.node_id,
        credential_key=load_credential_key(cfg),
    )
    app = LimitsMiddleware(
        HealthCodeFastPath(create_app(ctx), ctx),
        metrics,
        max_body_bytes=gw.max_body_bytes,
        max_header_bytes=gw.max_header_bytes,
        rate_per_address_per_s=gw.rate_per_address_per_s,
        burst_per_address=gw.burst_per_address,
        max_concurrency=gw.max_concurrency,
        queue_timeout_ms=gw.queue_timeout_ms,
        request_timeout_s=gw.request_timeout_s,
    )
    return app, ctx


def metrics_app(registry: CollectorRegistry) -> Any:
    """prometheus-client's ASGI app, answering the lifespan protocol it does not speak."""
    prom = make_asgi_app(registry)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await prom(scope, receive, send)
            return
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


def hypercorn_config(gw: GatewaySection, bind: str, *, tls: bool) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [bind]
    hc.accesslog = None
    hc.include_server_header = False  # one header less a response; nor does it tell the server's make
    hc.errorlog = "-"
    hc.loglevel = "WARNING"
    hc.h11_max_incomplete_size = gw.max_header_bytes
    hc.keep_alive_timeout = 30
    hc.graceful_timeout = 5
    hc.read_timeout = max(5, int(gw.request_timeout_s))
    if tls:
        assert gw.tls_cert is not None and gw.tls_key is not None
        hc.certfile = str(gw.tls_cert)
        hc.keyfile = str(gw.tls_key)
    return hc


async def run_gateway(cfg: NodeConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    gw = cfg.gateway
    assert gw is not None
    app, ctx = build(cfg)
    tls = gw.tls_cert is not None
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(
                serve, app, hypercorn_config(gw, str(gw.listen), tls=tls),  # type: ignore[arg-type]
                shutdown_trigger=stop.wait,
            ))
            if gw.metrics_listen is not None:
                nursery.start_soon(partial(
                    serve, metrics_app(ctx.metrics.registry),
                    hypercorn_config(gw, str(gw.metrics_listen), tls=False),
                    shutdown_trigger=stop.wait,
                ))
            log.info(
                "gateway listening", listen=str(gw.listen), https=tls,
                metrics=str(gw.metrics_listen) if gw.metrics_listen else None,
                credential_key=ctx.credential_key is not None, inst_id=ctx.inst_id,
            )
            task_status.started()
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("gateway stopping")
                    stop.set()
                    break
    finally:
        ctx.store.close()
