"""Receipts as text: the QR-sized compact form ("HZR1:" + base45) and base64, read back alike.

A receipt (hzp2p.ledger.receipt) is binary. Two text forms carry it:

* **compact**: ``"HZR1:" + base45(receipt bytes)`` (RFC 9285, the alphabet of a QR
  code's alphanumeric mode, as EU digital COVID certificates use). In a QR code's
  alphanumeric mode a base45 character costs 5.5 bits, so a byte costs 8.25 bits,
  against 10.7 bits as base64 in byte mode: a 3-voter hash-only receipt (~1.1 KB)
  is ~1.7 K characters, well inside a version-40 code at error correction M
  (3,391 alphanumeric characters, QR_ALNUM_CAPACITY). A receipt that carries many
  voter-set changes can outgrow it: `fits_qr` says.
* **base64**: one line, what `admin receipt --base64` writes.

`receipt_bytes(data)` accepts the binary form or either text form, so
`hzp2p verify-receipt` reads all three.
"""

from __future__ import annotations

import base64
import binascii

from hzp2p.credentials.b45 import Base45Error, b45decode, b45encode

COMPACT_PREFIX = "HZR1:"
QR_ALNUM_CAPACITY = 3391
"""Alphanumeric characters in a version-40 QR code at error correction level M."""

_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def to_compact(receipt: bytes) -> str:
    return COMPACT_PREFIX + b45encode(receipt)


def fits_qr(text: str) -> bool:
    return len(text) <= QR_ALNUM_CAPACITY


def receipt_bytes(data: bytes) -> bytes:
    """A receipt file's bytes: as written, or decoded from the compact or base64 text form
    (anything else is returned as it is, for the receipt decoder to refuse)."""
    text = data.strip()
    if text.startswith(COMPACT_PREFIX.encode()):
        try:
            return b45decode(text[len(COMPACT_PREFIX):].decode("ascii"))
        except (Base45Error, UnicodeDecodeError):
            return data
    if text and all(c in _B64 for c in text):
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            return data
    return data
