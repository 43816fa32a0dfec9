"""The message codec: a registry of message schemas, msgpack on the wire, strict validation.

Sans-IO: bytes in, messages out. Every registered kind is a frozen dataclass
with a small integer kind id and one `FieldType` per field (in dataclass
order). A message on the wire is the msgpack array `[kind, field1, field2, ...]`;
a frame's plaintext is one version byte followed by one msgpack array of
messages (a batch: many messages, one frame, encoded once).

Decoding validates every field: ints are ints (never bools) within range,
bools are bools, bytes and strings are bounded, nested Entry / SnapshotMeta /
ConfState are checked field by field, and per-kind invariants run last.
Anything wrong raises `RemoteProtocolError` and nothing else; the daemon adds
its own kinds with `MessageRegistry.register` (ids >= FIRST_APP_KIND).
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgpack

from hzp2p.net.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_VERSION: Final = 1
MAX_INT: Final = 2**63 - 1
"""Largest integer accepted anywhere (int64, what SQLite and the ledger store)."""
FIRST_APP_KIND: Final = 64
"""Kinds below this are reserved for hzp2p.net (Raft and the transport's own messages)."""
MAX_KIND: Final = 1 << 16


class Invalid(Exception):
    """Raised by a FieldType's decoder; turned into RemoteProtocolError by the registry."""


Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class FieldType:
    """How one field goes to the wire (`encode`, None = as is) and is validated back (`decode`)."""

    decode: Decoder
    encode: Encoder | None = None
    label: str = ""


# --- field types -----------------------------------------------------------------------------


def integer(lo: int = 0, hi: int = MAX_INT) -> FieldType:
    """An int (never a bool) in [lo, hi]."""

    def dec(v: Any) -> int:
        if type(v) is not int or v < lo or v > hi:
            raise Invalid(f"expected int in [{lo}, {hi}]")
        return v

    return FieldType(dec, None, f"int[{lo},{hi}]")


def uint() -> FieldType:
    """A non-negative int64 (indexes, terms, offsets, sequence numbers)."""
    return _UINT


def _dec_uint(v: Any) -> int:
    if type(v) is not int or v < 0 or v > MAX_INT:
        raise Invalid("expected non-negative int64")
    return v


def _dec_node_id(v: Any) -> int:
    if type(v) is not int or v <= 0 or v > MAX_INT:
        raise Invalid("expected positive node id")
    return v


def _dec_bool(v: Any) -> bool:
    if type(v) is not bool:
        raise Invalid("expected bool")
    return v


_UINT = FieldType(_dec_uint, None, "uint")
NODE_ID = FieldType(_dec_node_id, None, "node_id")
BOOL = FieldType(_dec_bool, None, "bool")


def binary(max_len: int, min_len: int = 0) -> FieldType:
    """Bytes of length in [min_len, max_len]."""

    def dec(v: Any) -> bytes:
        if type(v) is not bytes or not min_len <= len(v) <= max_len:
            raise Invalid(f"expected bytes of length [{min_len}, {max_len}]")
        return v

    return FieldType(dec, None, f"bytes[{min_len},{max_len}]")


def text(max_len: int, choices: Iterable[str] | None = None) -> FieldType:
    """A str of at most max_len characters, optionally one of `choices`."""
    allowed = frozenset(choices) if choices is not None else None

    def dec(v: Any) -> str:
        if type(v) is not str or len(v) > max_len:
            raise Invalid(f"expected str of at most {max_len} chars")
        if allowed is not None and v not in allowed:
            raise Invalid("unexpected value")
        return v

    return FieldType(dec, None, f"str[{max_len}]")


def int_enum(cls: type[enum.IntEnum]) -> FieldType:
    """An IntEnum member, carried as its int value."""
    table = {int(m): m for m in cls}

    def dec(v: Any) -> enum.IntEnum:
        if type(v) is not int or v not in table:
            raise Invalid(f"expected a {cls.__name__} value")
        return table[v]

    return FieldType(dec, int, cls.__name__)


def sequence(item: FieldType, max_len: int) -> FieldType:
    """A tuple of at most max_len items, carried as a msgpack array."""
    idec, ienc = item.decode, item.encode

    def dec(v: Any) -> tuple[Any, ...]:
        if type(v) is not list or len(v) > max_len:
            raise Invalid(f"expected array of at most {max_len} items")
        return tuple([idec(x) for x in v])

    enc: Encoder = (lambda v: [ienc(x) for x in v]) if ienc is not None else list
    return FieldType(dec, enc, f"seq[{item.label}]")


def node_set(max_len: int) -> FieldType:
    """A frozenset of distinct node ids, carried as a sorted array."""

    def dec(v: Any) -> frozenset[int]:
        if type(v) is not list or len(v) > max_len:
            raise Invalid(f"expected array of at most {max_len} node ids")
        out = frozenset(_dec_node_id(x) for x in v)
        if len(out) != len(v):
            raise Invalid("duplicate node id")
        return out

    return FieldType(dec, sorted, "node_set")


def struct(
    cls: type[Any], fields: Sequence[FieldType], check: Callable[[Any], None] | None = None
) -> FieldType:
    """A nested frozen dataclass, carried as an array of its fields in dataclass order."""
    names = [f.name for f in dataclasses.fields(cls)]
    if len(names) != len(fields):
        raise LocalProtocolError(f"{cls.__name__}: {len(names)} fields, {len(fields)} types")
    decs = [f.decode for f in fields]
    encs = [f.encode for f in fields]
    get = operator.attrgetter(*names)
    n = len(names)

    def dec(v: Any) -> Any:
        if type(v) is not list or len(v) != n:
            raise Invalid(f"expected {cls.__name__} as array of {n}")
        args = [d(x) for d, x in zip(decs, v, strict=True)]
        if check is not None:
            check(args)
        try:
            return cls(*args)
        except (ValueError, TypeError, AssertionError) as exc:
            raise Invalid(f"{cls.__name__}: {exc}") from None

    if all(e is None for e in encs):
        enc: Encoder = (lambda o: list(get(o))) if n > 1 else (lambda o: [get(o)])
    else:

        def enc(o: Any) -> list[Any]:
            vals = get(o) if n > 1 else (get(o),)
            return [v if e is None else e(v) for e, v in zip(encs, vals, strict=True)]

    return FieldType(dec, enc, cls.__name__)


# --- the registry ----------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Schema:
    kind: int
    cls: type[Any]
    names: tuple[str, ...]
    fields: tuple[FieldType, ...]
    check: Callable[[Any], None] | None
    routed: bool
    """True when the message carries `src` / `dst`, which must match the authenticated session."""
    decoders: tuple[Decoder, ...] = ()
    getter: Callable[[Any], Any] | None = None
    encoders: tuple[Encoder | None, ...] = ()
    plain: bool = False


_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


class MessageRegistry:
    """Maps kind ids to message dataclasses and their field schemas; encodes and decodes."""

    def __init__(self) -> None:
        self._by_kind: dict[int, Schema] = {}
        self._by_cls: dict[type[Any], Schema] = {}

    def register(
        self,
        kind: int,
        cls: type[Any],
        fields: Sequence[FieldType],
        *,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        """Register dataclass `cls` under `kind`, one FieldType per field in dataclass order.

            `check(msg)` may raise `Invalid` for cross-field invariants (for nested
        `struct`s, `check` sees the decoded argument list before construction). A message
            class with `src` and `dst` fields is "routed": on decode both must match
            the authenticated peer and this node.
        """
        if not dataclasses.is_dataclass(cls):
            raise LocalProtocolError(f"{cls!r} is not a dataclass")
        if type(kind) is not int or not 0 < kind < MAX_KIND:
            raise LocalProtocolError(f"kind {kind!r} out of range")
        if kind in self._by_kind or cls in self._by_cls:
            raise LocalProtocolError(f"kind {kind} or class {cls.__name__} already registered")
        names = tuple(f.name for f in dataclasses.fields(cls))
        if len(names) != len(fields):
            raise LocalProtocolError(f"{cls.__name__}: {len(names)} fields, {len(fields)} types")
        schema = Schema(
            kind=kind,
            cls=cls,
            names=names,
            fields=tuple(fields),
            check=check,
            routed="src" in names and "dst" in names,
            decoders=tuple(f.decode for f in fields),
            getter=operator.attrgetter(*names) if len(names) > 1 else None,
            encoders=tuple(f.encode for f in fields),
            plain=all(f.encode is None for f in fields),
        )
        self._by_kind[kind] = schema
        self._by_cls[cls] = schema

    def kinds(self) -> dict[int, type[Any]]:
        return {k: s.cls for k, s in self._by_kind.items()}

    def is_registered(self, cls: type[Any]) -> bool:
        return cls in self._by_cls

    def copy(self) -> MessageRegistry:
        new = MessageRegistry()
        new._by_kind = dict(self._by_kind)
        new._by_cls = dict(self._by_cls)
        return new

    # encode ------------------------------------------------------------------------------

    def to_wire(self, msg: Any) -> list[Any]:
        schema = self._by_cls.get(type(msg))
        if schema is None:
            raise LocalProtocolError(f"unregistered message type {type(msg).__name__}")
        if schema.getter is None:
            vals: tuple[Any, ...] = (getattr(msg, schema.names[0]),) if schema.names else ()
        else:
            vals = schema.getter(msg)
        if schema.plain:
            return [schema.kind, *vals]
        return [
            schema.kind,
            *[v if e is None else e(v) for e, v in zip(schema.encoders, vals, strict=True)],
        ]

    def encode_message(self, msg: Any) -> bytes:
        """One message as packed msgpack (a batch element); LocalProtocolError if unregistered."""
        return _packer.pack(self.to_wire(msg))  # type: ignore[no-any-return]

    @staticmethod
    def join_batch(parts: Sequence[bytes]) -> bytes:
        """Frame plaintext from already-encoded messages (no re-encoding)."""
        return b"".join((bytes((PROTOCOL_VERSION,)), _array_header(len(parts)), *parts))

    def encode_batch(self, msgs: Iterable[Any]) -> bytes:
        return self.join_batch([self.encode_message(m) for m in msgs])

    # decode ------------------------------------------------------------------------------

    def decode_batch(
        self, plaintext: bytes, *, src: int | None = None, dst: int | None = None
    ) -> list[Any]:
        """Validate and decode one frame's plaintext into messages.

        If `src` / `dst` are given, routed messages must carry exactly those
        ids (a peer may not speak for another node). Raises only RemoteProtocolError.
        """
        if type(plaintext) is not bytes:
            raise LocalProtocolError("plaintext must be bytes")
        if not plaintext:
            raise RemoteProtocolError("malformed", "empty frame")
        if plaintext[0] != PROTOCOL_VERSION:
            raise RemoteProtocolError("bad_version", f"protocol version {plaintext[0]}")
        try:
            items = msgpack.unpackb(
                memoryview(plaintext)[1:], raw=False, use_list=True, strict_map_key=True
            )
        except Exception as exc:
            raise RemoteProtocolError("malformed", f"msgpack: {type(exc).__name__}") from None
        if type(items) is not list:
            raise RemoteProtocolError("malformed", "batch is not an array")
        return [self._decode_item(it, src, dst) for it in items]

    def decode_message(self, data: bytes) -> Any:
        """Decode one packed message (as from `encode_message`); for tests and the simulator."""
        try:
            item = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:
            raise RemoteProtocolError("malformed", f"msgpack: {type(exc).__name__}") from None
        return self._decode_item(item, None, None)

    def _decode_item(self, item: Any, src: int | None, dst: int | None) -> Any:
        if type(item) is not list or not item:
            raise RemoteProtocolError("malformed", "message is not a non-empty array")
        kind = item[0]
        schema = self._by_kind.get(kind) if type(kind) is int else None
        if schema is None:
            raise RemoteProtocolError("unknown_kind", f"kind {kind!r}"[:80])
        decs = schema.decoders
        if len(item) != len(decs) + 1:
            raise RemoteProtocolError("malformed", f"{schema.cls.__name__}: wrong field count")
        i = 0
        try:
            args = []
            for i, d in enumerate(decs, 1):
                args.append(d(item[i]))
            msg = schema.cls(*args)
            if schema.check is not None:
                i = 0
                schema.check(msg)
        except (Invalid, ValueError, TypeError, AssertionError) as exc:
            # ValueError/TypeError/AssertionError: a dataclass's own __post_init__ refused it.
            where = schema.names[i - 1] if i else "*"
            raise RemoteProtocolError("invalid", f"{schema.cls.__name__}.{where}: {exc}") from None
        if schema.routed and (
            (src is not None and msg.src != src) or (dst is not None and msg.dst != dst)
        ):
            raise RemoteProtocolError("misrouted", f"{schema.cls.__name__} src/dst mismatch")
        return msg
