"""Canonical msgpack for everything hashed or signed: transactions, blocks, genesis.

One encoding only: msgpack with bin type, maps with sorted string keys, no
floats anywhere, integers bounded to int64, and bounded nesting and sizes.
`canonical()` validates a decoded value and returns its canonical form; an
encoding is canonical iff re-encoding its decoded canonical form gives back
the same bytes, which `decode_canonical()` checks. Errors are `CodecError`
naming the offending path.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 8
MAX_MAP_KEYS = 256
MAX_LIST_ITEMS = 4096
MAX_STR_BYTES = 16 * 1024
MAX_KEY_CHARS = 64


class FieldError(ValueError):
    """An input error naming the field at fault: ``f"{PREFIX}{field}: {problem}"``.

    The one shape of the ledger's validation errors (codec, transaction, block,
    genesis), so callers can report `field` and `problem` alike.
    """

    PREFIX = ""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field = field_name
        self.problem = problem
        super().__init__(f"{self.PREFIX}{field_name}: {problem}")


class CodecError(FieldError):
    """A value is not canonically encodable; `path` names where (e.g. payload.readings[3])."""

    @property
    def path(self) -> str:
        return self.field


def canonical(obj: Any, path: str = "value", depth: int = 0) -> Any:
    """Validate `obj` and return it with dict keys sorted (recursively); lists stay lists."""
    t = type(obj)
    if t is str:
        if len(obj) > MAX_STR_BYTES:
            raise CodecError(path, "string too long")
        return obj
    if t is int:
        if not INT64_MIN <= obj <= INT64_MAX:
            raise CodecError(path, "integer outside int64")
        return obj
    if t is bytes:
        if len(obj) > MAX_STR_BYTES * 4:
            raise CodecError(path, "bytes too long")
        return obj
    if obj is None or t is bool:
        return obj
    if depth >= MAX_DEPTH:
        raise CodecError(path, f"nested deeper than {MAX_DEPTH}")
    if t is dict:
        if len(obj) > MAX_MAP_KEYS:
            raise CodecError(path, f"more than {MAX_MAP_KEYS} keys")
        out: dict[str, Any] = {}
        for k in sorted(obj) if all(type(k) is str for k in obj) else _bad_keys(obj, path):
            if not 0 < len(k) <= MAX_KEY_CHARS:
                raise CodecError(path, f"key {k[:16]!r} empty or too long")
            v = obj[k]
            tv = type(v)
            # the common scalars inline (no path string built for them)
            if (tv is int and INT64_MIN <= v <= INT64_MAX) or (tv is str and len(v) <= MAX_STR_BYTES):
                out[k] = v
            else:
                out[k] = canonical(v, f"{path}.{k}", depth + 1)
        return out
    if t is list or t is tuple:
        if len(obj) > MAX_LIST_ITEMS:
            raise CodecError(path, f"more than {MAX_LIST_ITEMS} items")
        return [canonical(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)]
    if t is float:
        raise CodecError(path, "floats are not allowed (use integer units)")
    raise CodecError(path, f"type {t.__name__} is not allowed")


def is_canonical(obj: Any, depth: int = 0) -> bool:
    """True iff `obj` is already in canonical form: `canonical(obj)` would accept it and
    return an equal value with the same key order. The fast check for decoded data (no
    copy, no path strings); on False, call `canonical` for the error naming the path."""
    t = type(obj)
    if t is str:
        return len(obj) <= MAX_STR_BYTES
    if t is int:
        return bool(INT64_MIN <= obj <= INT64_MAX)
    if t is bytes:
        return len(obj) <= MAX_STR_BYTES * 4
    if obj is None or t is bool:
        return True
    if depth >= MAX_DEPTH:
        return False
    if t is dict:
        if len(obj) > MAX_MAP_KEYS:
            return False
        prev = ""
        for k, v in obj.items():
            if type(k) is not str or not prev < k or len(k) > MAX_KEY_CHARS:
                return False  # ("" < k also refuses the empty key)
            prev = k
            tv = type(v)
            if tv is str:
                if len(v) > MAX_STR_BYTES:
                    return False
            elif tv is int:
                if not INT64_MIN <= v <= INT64_MAX:
                    return False
            elif not is_canonical(v, depth + 1):
                return False
        return True
    if t is list:
        if len(obj) > MAX_LIST_ITEMS:
            return False
        d = depth + 1
        return all(is_canonical(v, d) for v in obj)
    return False  # floats, tuples (canonical() turns them into lists), anything else


def _bad_keys(obj: dict[Any, Any], path: str) -> list[str]:
    bad = next(k for k in obj if type(k) is not str)
    raise CodecError(path, f"map key {bad!r} is not a string")


_LOCAL = threading.local()


def pack(obj: Any) -> bytes:
    """msgpack bytes of an already-canonical value (as msgpack.packb(obj, use_bin_type=True)).

    `msgpack.packb` builds a Packer per call; a Packer per thread (a Packer is not
    thread-safe) halves the cost of the many small packs per transaction. A Packer resets
    its buffer after each pack, also when packing raises.
    """
    try:
        packer = _LOCAL.packer
    except AttributeError:
        packer = _LOCAL.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)  # type: ignore[no-any-return]


def encode_canonical(obj: Any, path: str = "value") -> bytes:
    return pack(canonical(obj, path))


def unpack(data: bytes, path: str = "value") -> Any:
    """Decode msgpack (no validation beyond well-formedness; lists come back as lists)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise CodecError(path, f"malformed msgpack ({type(e).__name__})") from None


def decode_canonical(data: bytes, path: str = "value") -> Any:
    """Decode, validate and insist the bytes are the canonical encoding."""
    obj = canonical(unpack(data, path), path)
    if pack(obj) != data:
        raise CodecError(path, "not the canonical encoding")
    return obj
