"""The message codec: a registry of message schemas, msgpack on the wire, strict validation.

Sans-IO: bytes in, messages out. Every registered kind is a frozen dataclass
with a small integer kind id and one `FieldType` per field (in dataclass
order). A message on the wire is the msgpack array `[kind, field1, field2, ...]`;
a frame's plaintext is one version byte followed by one msgpack array of
messages (a batch: many messages, one frame, encoded once).

Decoders are declared, not generated: each FieldType names the msgspec type
its wire value must have (`Annotated[int, Meta(ge=.., le=..)]`, bounded bytes
and strings, fixed-length tuples for nested structs, IntEnums, literals), and
`register` declares one array-like msgspec Struct per kind, tagged with the
kind id. msgspec checks a whole frame against the union of those Structs in
C: ints are ints (never bools) within range, bools are bools, bytes and
strings are bounded, arrays have exactly their length. Each field's
`to_value` then builds the Python value (Entry, ConfState, frozensets) and
per-kind invariants run last. Anything wrong raises `RemoteProtocolError`
and nothing else; the reason tag (malformed, unknown_kind, invalid,
misrouted) comes from which step refused the message, found by decoding the
frame's messages one by one when the whole frame was refused.
The daemon adds its own kinds with `MessageRegistry.register` (ids >= FIRST_APP_KIND).

Encoding packs `[kind, fields...]` with msgspec's msgpack encoder; the bytes
are the same as msgpack-python's `packb(..., use_bin_type=True)` (tests check).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Sequence
from itertools import starmap
from operator import attrgetter
from typing import Annotated, Any, Final, Literal, Union

import msgspec
from msgspec import Meta

from hzp2p.net.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_VERSION: Final = 1
MAX_INT: Final = 2**63 - 1
"""Largest integer accepted anywhere (int64, what SQLite and the ledger store)."""
FIRST_APP_KIND: Final = 64
"""Kinds below this are reserved for hzp2p.net (Raft and the transport's own messages)."""
MAX_KIND: Final = 1 << 16


class Invalid(Exception):
    """Raised by a `to_value` or a check; turned into RemoteProtocolError by the registry."""


Convert = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class FieldType:
    """How one field looks on the wire and becomes a value.

    `wire`: the msgspec type (constraints included) the wire value must match.
    `to_value`: the checked wire value -> the field's value (None: as is); may raise Invalid.
    `to_wire`: the field's value -> what is packed (None: as is).
    `build`: for a struct whose value is just `build(*wire_tuple)` (no nested
    conversion, no check), so a sequence of them is built in one `starmap`.
    `shared`: see `sequence`.
    """

    wire: Any
    to_value: Convert | None = None
    to_wire: Convert | None = None
    build: Callable[..., Any] | None = None
    shared: bool = False


# --- field types -----------------------------------------------------------------------------


def integer(lo: int = 0, hi: int = MAX_INT) -> FieldType:
    """An int (never a bool) in [lo, hi]."""
    return FieldType(Annotated[int, Meta(ge=lo, le=hi)])


def uint() -> FieldType:
    """A non-negative int64 (indexes, terms, offsets, sequence numbers)."""
    return integer(0, MAX_INT)


def binary(max_len: int, min_len: int = 0) -> FieldType:
    """Bytes (msgpack bin, never str) of length in [min_len, max_len]."""
    return FieldType(Annotated[bytes, Meta(min_length=min_len, max_length=max_len)])


def text(max_len: int, choices: Iterable[str] | None = None) -> FieldType:
    """A str of at most max_len characters, optionally one of `choices`."""
    if choices is None:
        return FieldType(Annotated[str, Meta(max_length=max_len)])
    allowed = tuple(sorted(choices))
    assert allowed and all(len(c) <= max_len for c in allowed), "choices fit max_len"
    return FieldType(Literal[allowed])


NODE_ID: Final = integer(1, MAX_INT)
BOOL: Final = FieldType(bool)


def int_enum(cls: type[enum.IntEnum]) -> FieldType:
    """An IntEnum member, carried as its int value (msgspec packs a member as its value)."""
    return FieldType(cls)


def sequence(item: FieldType, max_len: int, *, shared: bool = False) -> FieldType:
    """A tuple of at most max_len items, carried as a msgpack array.

    `shared`: senders often put the very same tuple into several messages (a
    leader's entries to each follower); the registry then packs such a field
    once and reuses the bytes while the same tuple object comes back.
    """
    to_value: Convert | None = None
    if item.build is not None:
        build = item.build
        to_value = lambda v: tuple(starmap(build, v))  # noqa: E731 - one C loop for all items
    elif item.to_value is not None:
        item_value = item.to_value
        to_value = lambda v: tuple(map(item_value, v))  # noqa: E731
    to_wire: Convert | None = None
    if item.to_wire is not None:
        item_wire = item.to_wire
        to_wire = lambda v: list(map(item_wire, v))  # noqa: E731
    return FieldType(
        Annotated[tuple[item.wire, ...], Meta(max_length=max_len)],  # type: ignore[name-defined]
        to_value,
        to_wire,
        shared=shared,
    )


def _node_set_value(v: tuple[int, ...]) -> frozenset[int]:
    out = frozenset(v)
    if len(out) != len(v):
        raise Invalid("duplicate node id")
    return out


def node_set(max_len: int) -> FieldType:
    """A frozenset of distinct node ids, carried as a sorted array."""
    return FieldType(
        Annotated[tuple[NODE_ID.wire, ...], Meta(max_length=max_len)],  # type: ignore[name-defined]
        _node_set_value,
        sorted,
    )


def struct(
    cls: type[Any], fields: Sequence[FieldType], check: Callable[[list[Any]], None] | None = None
) -> FieldType:
    """A nested value of class `cls`, carried as an array of its fields in declaration order.

    `check(args)` sees the field values before construction and may raise Invalid.
    """
    names = _field_names(cls, fields)
    wire = tuple.__class_getitem__(tuple(f.wire for f in fields))
    convs = [(i, f.to_value) for i, f in enumerate(fields) if f.to_value is not None]
    if not convs and check is None:
        return FieldType(wire, _builder(cls), _getter(names, fields), build=cls)

    def to_value(t: tuple[Any, ...]) -> Any:
        args = list(t)
        for i, conv in convs:
            args[i] = conv(args[i])
        if check is not None:
            check(args)
        return cls(*args)

    return FieldType(wire, to_value, _getter(names, fields))


def _builder(cls: type[Any]) -> Convert:
    return lambda t: cls(*t)


def _getter(names: Sequence[str], fields: Sequence[FieldType]) -> Convert:
    """value -> the tuple (or list) of its fields as packed, nested values converted."""
    get = attrgetter(*names) if len(names) > 1 else (lambda o, g=attrgetter(names[0]): (g(o),))
    convs = [(i, f.to_wire) for i, f in enumerate(fields) if f.to_wire is not None]
    if not convs:
        return get

    def to_wire(o: Any) -> list[Any]:
        out = list(get(o))
        for i, conv in convs:
            out[i] = conv(out[i])
        return out

    return to_wire


def _field_names(cls: type[Any], fields: Sequence[FieldType]) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))
    elif isinstance(getattr(cls, "FIELDS", None), tuple):
        names = cls.FIELDS  # a slots class such as Entry, constructed positionally
    else:
        raise LocalProtocolError(f"{cls!r} is neither a dataclass nor declares FIELDS")
    if len(names) != len(fields):
        raise LocalProtocolError(f"{cls.__name__}: {len(names)} fields, {len(fields)} types")
    return names


# --- the registry ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Schema:
    kind: int
    cls: type[Any]
    names: tuple[str, ...]
    fields: tuple[FieldType, ...]
    routed: bool
    """True when the message carries `src` / `dst`, which must match the authenticated session."""
    wire: type[msgspec.Struct]
    """The declared wire form: an array-like msgspec Struct tagged with `kind`."""
    decoder: msgspec.msgpack.Decoder[Any]
    """One packed message -> `wire` (checked)."""
    to_value: Callable[[Any], Any]
    """A checked `wire` instance -> the message (nested values built, `check` run)."""
    to_wire: Callable[[Any], list[Any]]
    """The message -> `[kind, fields...]`, the shared field (if any) left as it is."""
    shared: int | None = None
    """Position (in the wire array) of a `shared` field, packed once per distinct tuple."""


SHARED_CACHE_SLOTS: Final = 4
"""Packed shared fields remembered (by identity): enough for one batch per follower."""
SHARED_MIN_ITEMS: Final = 16
"""Shorter shared fields are packed with the message (the cache costs more than it saves)."""

_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode
_raw_items = msgspec.msgpack.Decoder(list[msgspec.Raw])
_any = msgspec.msgpack.Decoder()
_REFUSED: Final = (Invalid, ValueError, TypeError, AssertionError)
"""What a `to_value`, a constructor's `__post_init__` or a check raises to refuse a message."""


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _raw_array(data: Any, not_array: str) -> list[msgspec.Raw]:
    """The packed items of the msgpack array in `data`, each left packed; malformed if
    `data` is not msgpack, or not one array (`not_array` says what it should have been)."""
    try:
        return _raw_items.decode(data)
    except msgspec.ValidationError:
        raise RemoteProtocolError("malformed", not_array) from None
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError("malformed", f"msgpack: {exc}"[:120]) from None


def _message_to_value(
    cls: type[Any], fields: Sequence[FieldType], check: Callable[[Any], None] | None
) -> Callable[[Any], Any]:
    astuple = msgspec.structs.astuple
    convs = [(i, f.to_value) for i, f in enumerate(fields) if f.to_value is not None]
    if not convs and check is None:
        return lambda w: cls(*astuple(w))

    def to_value(w: Any) -> Any:
        args = list(astuple(w))
        for i, conv in convs:
            args[i] = conv(args[i])
        msg = cls(*args)
        if check is not None:
            check(msg)
        return msg

    return to_value


def _message_to_wire(
    kind: int, names: Sequence[str], fields: Sequence[FieldType]
) -> Callable[[Any], list[Any]]:
    get = attrgetter(*names) if len(names) > 1 else (lambda o, g=attrgetter(names[0]): (g(o),))
    convs = [
        (i + 1, f.to_wire)
        for i, f in enumerate(fields)
        if f.to_wire is not None and not f.shared
    ]
    if not convs:
        return lambda o: [kind, *get(o)]

    def to_wire(o: Any) -> list[Any]:
        out = [kind, *get(o)]
        for i, conv in convs:
            out[i] = conv(out[i])
        return out

    return to_wire


class MessageRegistry:
    """Maps kind ids to message dataclasses and their field schemas; encodes and decodes."""

    def __init__(self) -> None:
        self._by_kind: dict[int, Schema] = {}
        self._by_cls: dict[type[Any], Schema] = {}
        self._by_wire: dict[type[Any], Schema] = {}
        self._batch: msgspec.msgpack.Decoder[Any] | None = None
        # (tuple, its packed bytes) for shared fields, newest last; holding the tuple
        # keeps its id from being reused while the entry is here.
        self._shared: list[tuple[Any, msgspec.Raw]] = []

    def register(
        self,
        kind: int,
        cls: type[Any],
        fields: Sequence[FieldType],
        *,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        """Register frozen dataclass `cls` under `kind`, one FieldType per field in dataclass order.

        `check(msg)` may raise `Invalid` for cross-field invariants. A message
        class with `src` and `dst` fields is "routed": on decode both must match
        the authenticated peer and this node. Both ends must register the same
        kinds; a kind the receiver does not know is refused like any garbage.
        """
        if type(kind) is not int or not 0 < kind < MAX_KIND:
            raise LocalProtocolError(f"kind {kind!r} out of range")
        names = _field_names(cls, fields)
        if kind in self._by_kind or cls in self._by_cls:
            raise LocalProtocolError(f"kind {kind} or class {cls.__name__} already registered")
        shared = [i for i, f in enumerate(fields) if f.shared]
        if len(shared) > 1:
            raise LocalProtocolError(f"{cls.__name__}: at most one shared field")
        wire = msgspec.defstruct(
            f"{cls.__name__}Wire",
            [(n, f.wire) for n, f in zip(names, fields, strict=True)],
            array_like=True,
            tag=kind,
            forbid_unknown_fields=True,
            gc=False,  # short-lived, no cycles: the cyclic GC need not track them
        )
        schema = Schema(
            kind=kind,
            cls=cls,
            names=names,
            fields=tuple(fields),
            routed="src" in names and "dst" in names,
            wire=wire,
            decoder=msgspec.msgpack.Decoder(wire),
            to_value=_message_to_value(cls, fields, check),
            to_wire=_message_to_wire(kind, names, fields),
            shared=shared[0] + 1 if shared else None,
        )
        self._by_kind[kind] = schema
        self._by_cls[cls] = schema
        self._by_wire[wire] = schema
        self._batch = None

    def kinds(self) -> dict[int, type[Any]]:
        return {k: s.cls for k, s in self._by_kind.items()}

    def copy(self) -> MessageRegistry:
        new = MessageRegistry()
        new._by_kind = dict(self._by_kind)
        new._by_cls = dict(self._by_cls)
        new._by_wire = dict(self._by_wire)
        return new

    # encode ------------------------------------------------------------------------------

    def _schema_of(self, msg: Any) -> Schema:
        schema = self._by_cls.get(type(msg))
        if schema is None:
            raise LocalProtocolError(f"unregistered message type {type(msg).__name__}")
        return schema

    def to_wire(self, msg: Any) -> list[Any]:
        """The message as the array that goes on the wire (plain Python values)."""
        schema = self._schema_of(msg)
        out = schema.to_wire(msg)
        if schema.shared is not None:
            conv = schema.fields[schema.shared - 1].to_wire
            if conv is not None:
                out[schema.shared] = conv(out[schema.shared])
        return out

    def encode_message(self, msg: Any) -> bytes:
        """One message as packed msgpack (a batch element); LocalProtocolError if unregistered."""
        schema = self._by_cls.get(type(msg))
        if schema is None:
            raise LocalProtocolError(f"unregistered message type {type(msg).__name__}")
        try:
            if schema.shared is None:
                return _encode(schema.to_wire(msg))
            out = schema.to_wire(msg)
            out[schema.shared] = self._shared_part(schema, out[schema.shared])
            return _encode(out)
        except (TypeError, ValueError, OverflowError, AttributeError, msgspec.EncodeError) as exc:
            raise LocalProtocolError(f"cannot encode {type(msg).__name__}: {exc}") from None

    def _shared_part(self, schema: Schema, seq: Any) -> Any:
        """The shared field ready to pack: as is when short, else packed once per tuple
        (msgspec.Raw: spliced into the message's bytes as they are)."""
        conv = schema.fields[schema.shared - 1].to_wire  # type: ignore[operator]
        if len(seq) < SHARED_MIN_ITEMS:
            return seq if conv is None else conv(seq)
        for obj, packed in self._shared:
            if obj is seq:
                return packed
        packed = msgspec.Raw(_encoder.encode(seq if conv is None else conv(seq)))
        if type(seq) is tuple:  # immutable: safe to remember by identity
            self._shared.append((seq, packed))
            if len(self._shared) > SHARED_CACHE_SLOTS:
                del self._shared[0]
        return packed

    @staticmethod
    def join_batch(parts: Sequence[bytes]) -> bytes:
        """Frame plaintext from already-encoded messages (no re-encoding)."""
        return b"".join((bytes((PROTOCOL_VERSION,)), _array_header(len(parts)), *parts))

    def encode_batch(self, msgs: Iterable[Any]) -> bytes:
        return self.join_batch([self.encode_message(m) for m in msgs])

    # decode ------------------------------------------------------------------------------

    def _batch_decoder(self) -> msgspec.msgpack.Decoder[Any]:
        if self._batch is None:
            wires = tuple(self._by_wire)
            self._batch = msgspec.msgpack.Decoder(list[Union[wires]])  # type: ignore[valid-type]  # noqa: UP007
        return self._batch

    def decode_batch(
        self, plaintext: bytes, *, src: int | None = None, dst: int | None = None
    ) -> list[Any]:
        """Validate and decode one frame's plaintext into messages.

        If `src` / `dst` are given, routed messages must carry exactly those
        ids (a peer may not speak for another node). Raises only RemoteProtocolError.
        """
        if not plaintext:
            raise RemoteProtocolError("malformed", "empty frame")
        if plaintext[0] != PROTOCOL_VERSION:
            raise RemoteProtocolError("bad_version", f"protocol version {plaintext[0]}")
        body = memoryview(plaintext)[1:]
        if not self._by_wire:
            return self._decode_each(body, src, dst)
        try:
            wires = self._batch_decoder().decode(body)
        except msgspec.DecodeError:
            # Refused somewhere: find which message and why, one by one.
            return self._decode_each(body, src, dst)
        finish = self._finish
        by_wire = self._by_wire
        return [finish(by_wire[type(w)], w, src, dst) for w in wires]

    def decode_message(self, data: bytes) -> Any:
        """Decode one packed message (as from `encode_message`); for tests and the simulator."""
        return self._decode_one(data, None, None)

    def _decode_each(self, body: memoryview, src: int | None, dst: int | None) -> list[Any]:
        items = _raw_array(body, "batch is not an array")
        return [self._decode_one(it, src, dst) for it in items]

    def _decode_one(self, data: Any, src: int | None, dst: int | None) -> Any:
        parts = _raw_array(data, "message is not a non-empty array")
        if not parts:
            raise RemoteProtocolError("malformed", "message is not a non-empty array")
        try:
            kind = _any.decode(parts[0])
        except msgspec.DecodeError:
            kind = None
        schema = self._by_kind.get(kind) if type(kind) is int else None
        if schema is None:
            raise RemoteProtocolError("unknown_kind", f"kind {kind!r}"[:80])
        if len(parts) != len(schema.fields) + 1:
            raise RemoteProtocolError("malformed", f"{schema.cls.__name__}: wrong field count")
        try:
            wire = schema.decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError("invalid", f"{schema.cls.__name__}: {exc}") from None
        return self._finish(schema, wire, src, dst)

    @staticmethod
    def _finish(schema: Schema, wire: Any, src: int | None, dst: int | None) -> Any:
        """A checked wire Struct -> its message, refused if a check or the routing fails."""
        try:
            msg = schema.to_value(wire)
        except _REFUSED as exc:
            raise RemoteProtocolError("invalid", f"{schema.cls.__name__}: {exc}") from None
        if schema.routed and (
            (src is not None and msg.src != src) or (dst is not None and msg.dst != dst)
        ):
            raise RemoteProtocolError("misrouted", f"{schema.cls.__name__} src/dst mismatch")
        return msg
