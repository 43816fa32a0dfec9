"""Checking signed requests (hzp2p.gateway.signing): who is asking, and may they?

`Authenticator.check` takes the parts of one request and returns the verified
public key, or raises ApiProblem: 401 when the request does not prove a key
(missing or malformed headers, bad signature, timestamp outside the window,
nonce replayed), 403 when it proves a key that may not ask this (another
subject's pseudonym, not an active member), 429 when that key is over its rate,
503 when the replay cache is full. Each refusal is counted by reason. The
per-key bucket is spent only once the signature checks, so forged requests naming
someone else's key cannot exhaust her bucket; floods of forgeries are bounded by
the per-address bucket in front (hzp2p.gateway.middleware).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import nacl.exceptions
from nacl.bindings import crypto_sign_open

from hzp2p.gateway import signing
from hzp2p.gateway.limits import ReplayCache, ReplayCacheFull, TokenBuckets, retry_after_header
from hzp2p.gateway.metrics import GatewayMetrics
from hzp2p.gateway.problems import ApiProblem

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_NONCE = re.compile(r"[A-Za-z0-9_\-]{16,64}")
_TS = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Authenticator:
    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        window_ms: int,
        replay_capacity: int,
        rate_per_key_per_s: float,
        burst_per_key: int,
    ) -> None:
        self.metrics = metrics
        self.window_ms = window_ms
        # A nonce must stay known for as long as its timestamp is acceptable: 2 windows.
        self.replay = ReplayCache(replay_capacity, 2 * window_ms)
        self.buckets = TokenBuckets(rate_per_key_per_s, burst_per_key)

    def _refuse(self, status: int, reason: str, detail: str) -> ApiProblem:
        self.metrics.auth_failures.labels(reason=reason).inc()
        return ApiProblem(status, f"auth-{reason}", detail)

    def check(self, req: SignedRequest, now_ms: int, now_s: float) -> bytes:
        """The verified Ed25519 public key of `req` (raises ApiProblem)."""
        h = req.headers
        key_hex = h.get(signing.H_KEY, "")
        if not key_hex:
            raise self._refuse(401, "missing", f"this request must be signed ({signing.H_KEY} and friends)")
        if not _HEX64.fullmatch(key_hex):
            raise self._refuse(401, "malformed", f"{signing.H_KEY} must be 64 lowercase hex digits")
        ts, nonce, sig = h.get(signing.H_TIMESTAMP, ""), h.get(signing.H_NONCE, ""), h.get(signing.H_SIGNATURE, "")
        if not _TS.fullmatch(ts) or not _NONCE.fullmatch(nonce) or not _HEX128.fullmatch(sig):
            raise self._refuse(
                401, "malformed",
                f"{signing.H_TIMESTAMP} (ms), {signing.H_NONCE} (16..64 of [A-Za-z0-9_-]) and "
                f"{signing.H_SIGNATURE} (128 hex digits) are required",
            )
        ts_ms = int(ts)
        if abs(ts_ms - now_ms) > self.window_ms:
            raise self._refuse(
                401, "expired",
                f"timestamp is {(ts_ms - now_ms) / 1000:+.0f} s from the gateway's clock "
                f"(allowed ±{self.window_ms // 1000} s)",
            )
        key = bytes.fromhex(key_hex)
        subject = h.get(signing.H_SUBJECT, "")
        msg = signing.request_message(req.method, req.path, req.query, subject, req.body, ts_ms, nonce)
        try:  # VerifyKey(key).verify(msg, sig) without its copies: key and sig have their lengths
            crypto_sign_open(bytes.fromhex(sig) + msg, key)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise self._refuse(401, "bad-signature", "the signature does not match this request and key") from None
        # Only a proven key spends its own bucket: forged requests naming someone's key must
        # not lock her out (they are bounded by the per-address bucket instead).
        wait = self.buckets.take(key_hex, now_s)
        if wait > 0:
            self.metrics.limited.labels(limit="key_rate").inc()
            raise ApiProblem(
                429, "rate-limited", "too many requests for this key",
                headers={"Retry-After": retry_after_header(wait)},
            )
        try:
            token = int.from_bytes(hashlib.blake2b(key + nonce.encode(), digest_size=8).digest())
            fresh = self.replay.record(token, now_ms)
        except ReplayCacheFull:
            self.metrics.limited.labels(limit="replay_cache").inc()
            raise ApiProblem(503, "busy", "too many signed requests in flight; retry", headers={"Retry-After": "1"}) from None
        if not fresh:
            raise self._refuse(401, "replayed", "this nonce was already used")
        return key

    def refuse_forbidden(self, reason: str, detail: str) -> ApiProblem:
        return self._refuse(403, reason, detail)
