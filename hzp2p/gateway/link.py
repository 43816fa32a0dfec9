"""The gateway's link to its daemon: the admin socket (status, submit_raw).

One short connection per call: calls are rare (a transaction posted, the
leader status at most once a second), and a fresh connection cannot be left
half-broken by a daemon restart. Failures come back as LinkError with a
one-line reason; the routes answer 503 with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from hzp2p.admin.client import AdminClientError, open_admin_client
from hzp2p.admin.protocol import AdminError

STATUS_TTL_S = 1.0


class LinkError(Exception):
    """The daemon could not be asked (down, restarting, timed out)."""


class LinkRefused(Exception):
    """The daemon answered with an error (`code`, `message`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DaemonLink:
    def __init__(self, socket_path: Path, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._status: dict[str, Any] | None = None
        self._status_at = -1e9

    async def call(self, method: str, params: dict[str, Any], timeout_s: float | None = None) -> Any:
        t = self.timeout_s if timeout_s is None else timeout_s
        try:
            with trio.fail_after(t + 1):
                async with open_admin_client(self.socket_path, connect_timeout_s=t) as client:
                    return await client.call(method, params, timeout_s=t)
        except AdminError as exc:
            raise LinkRefused(exc.code, exc.message) from None
        except (AdminClientError, OSError, trio.TooSlowError) as exc:
            raise LinkError(f"daemon not reachable on its admin socket: {exc or type(exc).__name__}") from None

    async def status(self) -> dict[str, Any] | None:
        """The daemon's `admin status` (cached for STATUS_TTL_S), or None if it cannot answer."""
        now = trio.current_time()
        if now - self._status_at >= STATUS_TTL_S:
            self._status_at = now
            try:
                st = await self.call("status", {}, timeout_s=2.0)
                self._status = st if isinstance(st, dict) else None
            except (LinkError, LinkRefused):
                self._status = None
        return self._status

    async def submit_raw(self, tx_hex: str, wait_s: float) -> dict[str, Any]:
        result = await self.call("submit_raw", {"tx": tx_hex, "wait_s": wait_s}, timeout_s=wait_s + 5)
        assert isinstance(result, dict), "submit_raw answers a receipt map"
        return result
