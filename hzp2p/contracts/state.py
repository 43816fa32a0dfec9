"""State overlays: a block's pending writes over storage, and one transaction's over the block's.

The engine stacks ``Overlay(Overlay(CachedReader(reader)))``: a transaction's
writes land in its own overlay and are merged into the block's only if its
handler succeeds, so a rejected transaction changes nothing. `scan` merges an
overlay's sorted pending writes with its parent's scan in key order (deletes
hide parent entries). CachedReader remembers every base value read, which the
engine needs anyway to subtract old values from the state digest.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Protocol

from hzp2p.contracts.api import TxRejected

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 256 * 1024
RESERVED_PREFIX = b"\x00"  # engine-only keys (the digest vector)


class Readable(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]: ...


class CachedReader:
    """A StateReader whose point reads are remembered (values as of the block's start)."""

    __slots__ = ("_cache", "_reader")

    def __init__(self, reader: Readable) -> None:
        self._reader = reader
        self._cache: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._cache[key]
        except KeyError:
            v = self._reader.get(key)
            self._cache[key] = v
            return v

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._reader.scan(prefix, limit)


class Overlay:
    """Pending writes (value, or None = delete) over a parent view; implements StateView."""

    __slots__ = ("_sorted", "parent", "writes")

    def __init__(self, parent: Readable) -> None:
        self.parent = parent
        self.writes: dict[bytes, bytes | None] = {}
        self._sorted: list[bytes] | None = None

    def get(self, key: bytes) -> bytes | None:
        w = self.writes
        if key in w:
            return w[key]
        return self.parent.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        _check_key(key)
        if type(value) is not bytes:
            raise TypeError("state values must be bytes")
        if len(value) > MAX_VALUE_BYTES:
            raise TxRejected(f"state value larger than {MAX_VALUE_BYTES} bytes")
        if key not in self.writes:
            self._sorted = None
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        _check_key(key)
        if key not in self.writes:
            self._sorted = None
        self.writes[key] = None

    def put_raw(self, key: bytes, value: bytes | None) -> None:
        """Engine-only write (reserved keys allowed, no limits)."""
        if key not in self.writes:
            self._sorted = None
        self.writes[key] = value

    def merge_into(self, target: Overlay) -> None:
        mine, theirs = self.writes, target.writes
        if target._sorted is not None and not theirs.keys() >= mine.keys():
            target._sorted = None  # a new key: the sorted key list is stale
        theirs.update(mine)

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        if not self.writes:
            yield from self.parent.scan(prefix, limit)
            return
        if self._sorted is None:
            self._sorted = sorted(self.writes)
        mine = [k for k in self._sorted if k.startswith(prefix)]
        if not mine:
            yield from self.parent.scan(prefix, limit)
            return
        n = 0
        if limit is not None and limit <= 0:
            return
        base = self.parent.scan(prefix)
        nxt = next(base, None)
        i = 0
        while nxt is not None or i < len(mine):
            if i < len(mine) and (nxt is None or mine[i] <= nxt[0]):
                k = mine[i]
                i += 1
                if nxt is not None and nxt[0] == k:
                    nxt = next(base, None)
                v = self.writes[k]
                if v is None:
                    continue
                item = (k, v)
            else:
                assert nxt is not None
                item = nxt
                nxt = next(base, None)
            yield item
            n += 1
            if limit is not None and n >= limit:
                return


def _check_key(key: bytes) -> None:
    if type(key) is not bytes or not key:
        raise TypeError("state keys must be non-empty bytes")
    if key.startswith(RESERVED_PREFIX):
        raise TxRejected("state key in the engine's reserved range")
    if len(key) > MAX_KEY_BYTES:
        raise TxRejected(f"state key longer than {MAX_KEY_BYTES} bytes")


class DictState:
    """An in-memory StateReader over a dict (tests, benchmarks, the verifier's replay).

    Keys are kept sorted lazily: a scan after writes re-sorts once, then bisects.
    """

    __slots__ = ("_keys", "data")

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = dict(data or {})
        self._keys: list[bytes] | None = None

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        if self._keys is None:
            self._keys = sorted(self.data)
        keys = self._keys
        i = bisect.bisect_left(keys, prefix)
        n = 0
        while i < len(keys) and keys[i].startswith(prefix):
            if limit is not None and n >= limit:
                return
            yield keys[i], self.data[keys[i]]
            i += 1
            n += 1

    def apply(self, writes: Mapping[bytes, bytes | None]) -> None:
        data = self.data
        for k, v in writes.items():
            if v is None:
                if data.pop(k, None) is not None:
                    self._keys = None
            else:
                if k not in data:
                    self._keys = None
                data[k] = v
