"""The contract-state digest: an LtHash-style multiset hash, incremental and recomputable.

Each (key, value) pair maps to a vector of 1024 16-bit lanes,
SHAKE-256(domain || len(key) || key || value) read little-endian; the state's
vector is the lane-wise sum mod 2^16 over all pairs, so a block updates it by
adding new pairs and subtracting old ones (no hashing of the whole state),
and a snapshot's vector can be recomputed from a full dump. The vector lives
under the reserved key DIGEST_KEY (itself excluded); the published digest is
blake2b-256 of the vector.

Lane-wise arithmetic uses one Python big int per parity: even lanes and odd
lanes each sit in 32-bit slots, leaving 16 bits of headroom for carries, so an
add is two masks and two big-int additions; slots are reduced mod 2^16 before
they could overflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

LANES = 1024
VECTOR_BYTES = LANES * 2
DIGEST_KEY = b"\x00digest"
_DOMAIN = b"hzp2p/state/v1"
_SLOTS = LANES // 2
_MASK = sum(0xFFFF << (32 * k) for k in range(_SLOTS))  # low 16 bits of each 32-bit slot
_NEG = _MASK + sum(1 << (32 * k) for k in range(_SLOTS))  # 0x10000 in each slot
_MAX_PENDING = 60_000  # each op adds at most 0x10000 per slot; 60k * 0x10000 < 2^32


def _element(key: bytes, value: bytes) -> int:
    h = hashlib.shake_256(_DOMAIN + len(key).to_bytes(4, "big") + key + value).digest(VECTOR_BYTES)
    return int.from_bytes(h, "little")


class DigestAccumulator:
    """A state vector being updated; `add`/`remove` pairs, then `vector()` / `digest()`."""

    __slots__ = ("_even", "_odd", "_pending")

    def __init__(self, vector: bytes | None = None) -> None:
        x = 0
        if vector is not None:
            assert len(vector) == VECTOR_BYTES, "bad digest vector length"
            x = int.from_bytes(vector, "little")
        self._even = x & _MASK
        self._odd = (x >> 16) & _MASK
        self._pending = 0

    def add(self, key: bytes, value: bytes) -> None:
        x = _element(key, value)
        self._even += x & _MASK
        self._odd += (x >> 16) & _MASK
        self._bump()

    def remove(self, key: bytes, value: bytes) -> None:
        x = _element(key, value)
        self._even += _NEG - (x & _MASK)
        self._odd += _NEG - ((x >> 16) & _MASK)
        self._bump()

    def _bump(self) -> None:
        self._pending += 1
        if self._pending >= _MAX_PENDING:
            self._normalize()

    def _normalize(self) -> None:
        self._even &= _MASK
        self._odd &= _MASK
        self._pending = 0

    def vector(self) -> bytes:
        self._normalize()
        return (self._even | (self._odd << 16)).to_bytes(VECTOR_BYTES, "little")

    def digest(self) -> bytes:
        return digest_of_vector(self.vector())


def digest_of_vector(vector: bytes) -> bytes:
    return hashlib.blake2b(b"hzp2p/digest/v1" + vector, digest_size=32).digest()


def vector_of_items(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Recompute the vector from a full state dump (DIGEST_KEY skipped)."""
    acc = DigestAccumulator()
    for k, v in items:
        if k != DIGEST_KEY:
            acc.add(k, v)
    return acc.vector()


EMPTY_VECTOR = bytes(VECTOR_BYTES)
