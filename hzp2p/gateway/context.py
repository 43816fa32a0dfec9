"""What every route needs: the store, the daemon link, the authenticator, metrics, keys, clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nacl.signing

from hzp2p.config import GatewaySection
from hzp2p.gateway.auth import Authenticator
from hzp2p.gateway.link import DaemonLink
from hzp2p.gateway.metrics import GatewayMetrics
from hzp2p.gateway.store import Store


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class GatewayContext:
    store: Store
    link: DaemonLink
    auth: Authenticator
    metrics: GatewayMetrics
    cfg: GatewaySection
    inst_id: int
    """The institution this gateway speaks for (its node id)."""
    credential_key: nacl.signing.SigningKey | None
    now_ms: Callable[[], int] = field(default=wall_ms)
    memo: dict[str, Any] = field(default_factory=dict)
    """Small per-height memos (e.g. whether the credential key is registered)."""
