"""The contract-state digest: an LtHash-style multiset hash, incremental and recomputable.

Each (key, value) pair maps to a vector of 1024 16-bit lanes,
SHAKE-256(domain || len(key) || key || value) read little-endian; the state's
vector is the lane-wise sum mod 2^16 over all pairs, so a block updates it by
adding new pairs and subtracting old ones (no hashing of the whole state),
and a snapshot's vector can be recomputed from a full dump. The vector lives
under the reserved key DIGEST_KEY (itself excluded); the published digest is
blake2b-256 of the vector.

Lane-wise arithmetic uses Python big ints. `_even` holds the even lanes in
32-bit slots (16 bits of headroom for carries); `_all` is the plain integer sum
of the elements, from which the odd lanes follow exactly at normalisation
(sum of odd-lane parts = `_all` - `_even`, each odd lane in its own 32-bit
slot). So an add is one mask and two big-int additions; a removal adds the
complement (0x10000 - lane in every lane) the same way. Slots are reduced mod
2^16 before they could overflow. Hashing dominates: SHAKE-256 starts from a
copy of a context that has already absorbed the domain string.

`add_many` / `remove_many` (the engine's per-block update) sum a batch of
elements lane-wise mod 2^16 with numpy when it is installed (an optional
accelerator, not a dependency; imported by `load_contracts()` or the first
batch, so processes that never execute a block do not load it): one vectorised sum instead of an
`int.from_bytes` and big-int additions per element; the batch's sum then
enters the accumulator as one element. Modular sums are exact, so the vector
is bit-identical with or without numpy (tests compare both with a lane-by-lane
reference).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable
from typing import Any

_UNSET: Any = object()
_NP: Any = _UNSET  # the numpy module, None when unavailable (or disabled by tests)


def load_accelerator() -> bool:
    """Import the optional numpy lane summing now; True if it is available."""
    return _numpy() is not None


def _numpy() -> Any:
    global _NP
    if _NP is _UNSET:
        try:
            _NP = importlib.import_module("numpy")
        except Exception:  # absent or broken: the pure-Python path gives the same vector
            _NP = None
    return _NP


LANES = 1024
VECTOR_BYTES = LANES * 2
DIGEST_KEY = b"\x00digest"
_DOMAIN = b"hzp2p/state/v1"
_SLOTS = LANES // 2
_MASK = sum(0xFFFF << (32 * k) for k in range(_SLOTS))  # low 16 bits of each 32-bit slot
_NEG = _MASK + sum(1 << (32 * k) for k in range(_SLOTS))  # 0x10000 in each slot
_NEG_ALL = _NEG | (_NEG << 16)  # 0x10000 in every lane's slot (even and odd)
_MAX_PENDING = 60_000  # each op adds at most 0x10000 per slot; 60k * 0x10000 < 2^32
_SHAKE = hashlib.shake_256(_DOMAIN)  # copied per element: the domain is absorbed once
_NP_MIN_BATCH = 4  # below this, numpy's fixed costs exceed the big-int path's


def _element_bytes(key: bytes, value: bytes) -> bytes:
    h = _SHAKE.copy()
    h.update(len(key).to_bytes(4, "big") + key + value)
    return h.digest(VECTOR_BYTES)


class DigestAccumulator:
    """A state vector being updated; `add`/`remove` pairs, then `vector()` / `digest()`."""

    __slots__ = ("_all", "_even", "_pending")

    def __init__(self, vector: bytes | None = None) -> None:
        x = 0
        if vector is not None:
            assert len(vector) == VECTOR_BYTES, "bad digest vector length"
            x = int.from_bytes(vector, "little")
        self._even = x & _MASK
        self._all = x
        self._pending = 0

    def add(self, key: bytes, value: bytes) -> None:
        x = int.from_bytes(_element_bytes(key, value), "little")
        self._even += x & _MASK
        self._all += x
        self._pending += 1
        if self._pending >= _MAX_PENDING:
            self._normalize()

    def remove(self, key: bytes, value: bytes) -> None:
        x = int.from_bytes(_element_bytes(key, value), "little")
        self._even += _NEG - (x & _MASK)
        self._all += _NEG_ALL - x
        self._pending += 1
        if self._pending >= _MAX_PENDING:
            self._normalize()

    def add_many(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """`add` for each pair (the same vector; batched, see the module doc)."""
        if _numpy() is not None:
            pairs = list(pairs)
            if len(pairs) >= _NP_MIN_BATCH:
                self._add_int(int.from_bytes(_lane_sum(pairs), "little"))
                return
        even, total, n = self._even, self._all, self._pending
        shake, mask, from_bytes = _SHAKE, _MASK, int.from_bytes
        for key, value in pairs:
            h = shake.copy()
            h.update(len(key).to_bytes(4, "big") + key + value)
            x = from_bytes(h.digest(VECTOR_BYTES), "little")
            even += x & mask
            total += x
            n += 1
            if n >= _MAX_PENDING:
                self._even, self._all, self._pending = even, total, n
                self._normalize()
                even, total, n = self._even, self._all, 0
        self._even, self._all, self._pending = even, total, n

    def remove_many(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """`remove` for each pair (the same vector: removing the batch's lane sum mod 2^16
        is removing each element)."""
        if _numpy() is not None:
            pairs = list(pairs)
            if len(pairs) >= _NP_MIN_BATCH:
                x = int.from_bytes(_lane_sum(pairs), "little")
                self._even += _NEG - (x & _MASK)
                self._all += _NEG_ALL - x
                self._bump()
                return
        for key, value in pairs:
            self.remove(key, value)

    def _add_int(self, x: int) -> None:
        self._even += x & _MASK
        self._all += x
        self._bump()

    def _bump(self) -> None:
        self._pending += 1
        if self._pending >= _MAX_PENDING:
            self._normalize()

    def _normalize(self) -> None:
        # Odd lanes: every element contributed x - (x & _MASK) to _all - _even, i.e. its odd
        # lanes in place, each in a 32-bit slot starting at an odd 16-bit position.
        odd = ((self._all - self._even) >> 16) & _MASK
        even = self._even & _MASK
        self._even = even
        self._all = even | (odd << 16)
        self._pending = 0

    def vector(self) -> bytes:
        self._normalize()
        return self._all.to_bytes(VECTOR_BYTES, "little")

    def digest(self) -> bytes:
        return digest_of_vector(self.vector())


def _lane_sum(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """The lane-wise sum mod 2^16 of the pairs' elements, as a vector (numpy; uint16 wraps)."""
    joined = b"".join([_element_bytes(k, v) for k, v in pairs])
    lanes = _NP.frombuffer(joined, dtype="<u2").reshape(len(pairs), LANES)
    total = lanes.sum(axis=0, dtype=_NP.uint16)
    return bytes(total.astype("<u2", copy=False).tobytes())


def digest_of_vector(vector: bytes) -> bytes:
    return hashlib.blake2b(b"hzp2p/digest/v1" + vector, digest_size=32).digest()


def vector_of_items(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Recompute the vector from a full state dump (DIGEST_KEY skipped)."""
    acc = DigestAccumulator()
    acc.add_many((k, v) for k, v in items if k != DIGEST_KEY)
    return acc.vector()


EMPTY_VECTOR = bytes(VECTOR_BYTES)
