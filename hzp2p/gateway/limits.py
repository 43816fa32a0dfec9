"""Abuse limits, pure: token buckets by key and by address, and a bounded replay cache.

No I/O and no clock of their own: callers pass `now_s` (monotonic seconds) or
`now_ms`, so tests drive them directly. Both structures are bounded: a bucket
table forgets its least recently used entries (a forgotten client starts again
with a full bucket, which costs at most one burst), and the replay cache refuses
new nonces when it is full of live ones rather than forgetting a live one (which
would let a replay through).
"""

from __future__ import annotations

import math
from collections import OrderedDict


class TokenBuckets:
    """One token bucket per name: `rate_per_s` tokens a second, at most `burst` banked."""

    def __init__(self, rate_per_s: float, burst: int, max_entries: int = 100_000) -> None:
        assert rate_per_s > 0 and burst >= 1 and max_entries >= 1
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_entries = max_entries
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, name: str, now_s: float) -> float:
        """Spend one token of `name`'s bucket: 0.0 if allowed, else seconds until one is."""
        entry = self._b.get(name)
        if entry is None:
            tokens = self.burst
            if len(self._b) >= self.max_entries:
                self._b.popitem(last=False)
        else:
            tokens, last = entry
            tokens = min(self.burst, tokens + (now_s - last) * self.rate)
            self._b.move_to_end(name)
        if tokens >= 1.0:
            self._b[name] = (tokens - 1.0, now_s)
            return 0.0
        self._b[name] = (tokens, now_s)
        return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._b)


def retry_after_header(wait_s: float) -> str:
    """Retry-After in whole seconds (at least 1)."""
    return str(max(1, math.ceil(wait_s)))


class ReplayCacheFull(Exception):
    """The cache holds `capacity` live nonces: an operational limit, the caller answers 503."""


class ReplayCache:
    """Nonces seen within the last `ttl_ms`, to refuse a signed request sent twice.

    Entries are kept in arrival order with expiry = arrival + ttl, so expired entries
    are always at the front and purging is amortised O(1). Tokens are 64-bit hashes of
    (key, nonce) (hzp2p.gateway.auth): about 100 bytes an entry, so the default 500,000
    entries hold two clock windows of about 4,000 signed requests a second."""

    def __init__(self, capacity: int, ttl_ms: int) -> None:
        assert capacity >= 1 and ttl_ms > 0
        self.capacity = capacity
        self.ttl_ms = ttl_ms
        self._seen: OrderedDict[int, int] = OrderedDict()

    def _purge(self, now_ms: int) -> None:
        seen = self._seen
        while seen:
            _, exp = next(iter(seen.items()))
            if exp > now_ms:
                break
            seen.popitem(last=False)

    def seen(self, token: int, now_ms: int) -> bool:
        """True if `token` was recorded and is still live."""
        exp = self._seen.get(token)
        return exp is not None and exp > now_ms

    def record(self, token: int, now_ms: int) -> bool:
        """Record `token`; False if it was already there (a replay). Raises ReplayCacheFull."""
        self._purge(now_ms)
        if token in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            raise ReplayCacheFull(f"replay cache full ({self.capacity} live nonces)")
        self._seen[token] = now_ms + self.ttl_ms
        return True

    def __len__(self) -> int:
        return len(self._seen)
