"""Signed HTTP requests: what a citizen's app or an institution's tool signs, and the headers.

A request for personal data carries five headers:
  X-HZ-Key        the signer's Ed25519 public key (64 hex digits)
  X-HZ-Timestamp  milliseconds since the Unix epoch, within ±60 s of the gateway's clock
  X-HZ-Nonce      16..64 characters [A-Za-z0-9_-], never reused within the window
  X-HZ-Signature  Ed25519 signature (128 hex digits) of `request_message(...)`
  X-HZ-Subject    (citizen requests) the pseudonym asked about; the key must hash to it
The signed message binds the method, the path, the raw query string, the subject,
a SHA-256 of the body, the timestamp and the nonce, so no part can be changed or
replayed elsewhere. Shared by the gateway (verification) and clients (signing).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import nacl.signing

DOMAIN = b"hzp2p-request-v1"
H_KEY = "x-hz-key"
H_TIMESTAMP = "x-hz-timestamp"
H_NONCE = "x-hz-nonce"
H_SIGNATURE = "x-hz-signature"
H_SUBJECT = "x-hz-subject"


def request_message(
    method: str, path: str, query: str, subject: str, body: bytes, timestamp_ms: int, nonce: str
) -> bytes:
    """The bytes a request's signature covers."""
    return b"\n".join(
        [
            DOMAIN,
            method.upper().encode(),
            path.encode(),
            query.encode(),
            subject.encode(),
            hashlib.sha256(body).hexdigest().encode(),
            str(timestamp_ms).encode(),
            nonce.encode(),
        ]
    )


def sign_request(
    key: nacl.signing.SigningKey,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    subject: str = "",
    timestamp_ms: int,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a signed request (query: the raw query string, without '?')."""
    n = os.urandom(16).hex() if nonce is None else nonce
    msg = request_message(method, path, query, subject, body, timestamp_ms, n)
    headers: Mapping[str, str] = {
        H_KEY: bytes(key.verify_key).hex(),
        H_TIMESTAMP: str(timestamp_ms),
        H_NONCE: n,
        H_SIGNATURE: key.sign(msg).signature.hex(),
    }
    out = dict(headers)
    if subject:
        out[H_SUBJECT] = subject
    return out
