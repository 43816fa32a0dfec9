"""Canonical msgpack for everything hashed or signed: transactions, blocks, genesis.

One encoding only: msgpack with bin type, maps with sorted string keys, no
floats anywhere, integers bounded to int64, and bounded nesting and sizes.
`canonical()` validates a decoded value and returns its canonical form; an
encoding is canonical iff re-encoding its decoded canonical form gives back
the same bytes, which `decode_canonical()` checks. Errors are `CodecError`
naming the offending path.
"""

from __future__ import annotations

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
            out[k] = canonical(obj[k], f"{path}.{k}", depth + 1)
        return out
    if t is list or t is tuple:
        if len(obj) > MAX_LIST_ITEMS:
            raise CodecError(path, f"more than {MAX_LIST_ITEMS} items")
        return [canonical(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)]
    if t is float:
        raise CodecError(path, "floats are not allowed (use integer units)")
    raise CodecError(path, f"type {t.__name__} is not allowed")


def _bad_keys(obj: dict[Any, Any], path: str) -> list[str]:
    bad = next(k for k in obj if type(k) is not str)
    raise CodecError(path, f"map key {bad!r} is not a string")


def pack(obj: Any) -> bytes:
    """msgpack bytes of an already-canonical value."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


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
