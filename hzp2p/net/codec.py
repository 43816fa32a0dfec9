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

Speed: each schema's encoder and validator are generated once as straight-line
Python (the simple checks inlined, no per-field function calls), because the
codec runs for every Raft message and the transport's targets are ~1e5 msgs/s.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import itertools
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
Inline = Callable[[str, str, str], tuple[list[str], dict[str, Any]]]
"""(source var, target var, indent) -> (statements, names they use): decode one struct."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldType:
    """How one field is validated (`decode`) and put on the wire (`encode`, None = as is).

    `bad_expr` / `enc_expr` are optional Python expression templates over `{v}`
    that the code generator inlines instead of calling `decode` / `encode`:
    `bad_expr` is true iff the value is invalid; the value is then kept as is, or
    turned into `conv_expr` when given. `env` holds the names those expressions use.
    `inline` (structs only) generates the statements that validate and build one
    value, so a sequence of structs decodes in one generated loop.
    """

    decode: Decoder
    encode: Encoder | None = None
    label: str = ""
    bad_expr: str | None = None
    enc_expr: str | None = None
    conv_expr: str | None = None
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    inline: Inline | None = None
    shared: bool = False


_names = itertools.count()


def _compile(src: str, env: dict[str, Any]) -> Any:
    ns: dict[str, Any] = {"Invalid": Invalid, **env}
    exec(compile(src, "<hzp2p.net.codec generated>", "exec"), ns)
    return ns["_dec"] if "_dec" in ns else ns["_enc"]


# --- field types -----------------------------------------------------------------------------


def _simple(bad_expr: str, label: str) -> FieldType:
    """A FieldType whose validity is one inlinable expression (decode is derived from it)."""
    fn = _compile(
        f"def _dec(v):\n    if {bad_expr.replace('{v}', 'v')}:\n        raise Invalid({label!r})\n    return v\n",
        {},
    )
    return FieldType(fn, None, label, bad_expr)


def integer(lo: int = 0, hi: int = MAX_INT) -> FieldType:
    """An int (never a bool) in [lo, hi]."""
    return _simple(
        f"type({{v}}) is not int or {{v}} < {lo} or {{v}} > {hi}", f"expected int in [{lo}, {hi}]"
    )


def uint() -> FieldType:
    """A non-negative int64 (indexes, terms, offsets, sequence numbers)."""
    return integer(0, MAX_INT)


def binary(max_len: int, min_len: int = 0) -> FieldType:
    """Bytes of length in [min_len, max_len]."""
    return _simple(
        f"type({{v}}) is not bytes or not {min_len} <= len({{v}}) <= {max_len}",
        f"expected bytes of length [{min_len}, {max_len}]",
    )


def text(max_len: int, choices: Iterable[str] | None = None) -> FieldType:
    """A str of at most max_len characters, optionally one of `choices`."""
    if choices is None:
        return _simple(
            f"type({{v}}) is not str or len({{v}}) > {max_len}",
            f"expected str of at most {max_len} chars",
        )
    allowed = frozenset(choices)

    def dec(v: Any) -> str:
        if type(v) is not str or v not in allowed:
            raise Invalid(f"expected one of {sorted(allowed)}")
        return v

    return FieldType(dec, None, "choice")


NODE_ID: Final = integer(1, MAX_INT)
BOOL: Final = _simple("type({v}) is not bool", "expected bool")


def int_enum(cls: type[enum.IntEnum]) -> FieldType:
    """An IntEnum member, carried as its int value."""
    table = {int(m): m for m in cls}
    name = f"_t{next(_names)}"

    def dec(v: Any) -> enum.IntEnum:
        if type(v) is not int or v not in table:
            raise Invalid(f"expected a {cls.__name__} value")
        return table[v]

    # msgpack packs an IntEnum member as its int value: no conversion to encode.
    return FieldType(
        dec, None, f"expected a {cls.__name__} value",
        f"type({{v}}) is not int or {{v}} not in {name}", None, f"{name}[{{v}}]", {name: table},
    )


def sequence(item: FieldType, max_len: int, *, shared: bool = False) -> FieldType:
    """A tuple of at most max_len items, carried as a msgpack array.

    `shared`: senders often put the very same tuple into several messages (a
    leader's entries to each follower); the registry then packs such a field
    once and reuses the bytes while the same tuple object comes back.
    """
    idec, ienc = item.decode, item.encode
    head = (
        "def _dec(v):\n"
        f"    if type(v) is not list or len(v) > {max_len}:\n"
        f"        raise Invalid('expected array of at most {max_len} items')\n"
    )
    if item.inline is not None:
        # One generated loop for the whole array (an AppendEntries' entries): no
        # Python call per item except the constructor.
        body, env = item.inline("x", "o", "        ")
        fn = _compile(
            head + "    out = []\n    app = out.append\n    for x in v:\n"
            + "\n".join(body) + "\n        app(o)\n    return tuple(out)\n",
            env,
        )
    elif item.bad_expr is not None and item.conv_expr is None:
        fn = _compile(
            head + "    for x in v:\n"
            f"        if {item.bad_expr.replace('{v}', 'x')}:\n"
            f"            raise Invalid({item.label!r})\n"
            "    return tuple(v)\n",
            {},
        )
    else:
        fn = _compile(head + "    return tuple([idec(x) for x in v])\n", {"idec": idec})
    x = f"_x{next(_names)}"
    if item.enc_expr is not None:
        enc_expr = f"[{item.enc_expr.replace('{v}', x)} for {x} in {{v}}]"
        enc: Encoder = _compile(f"def _enc(v):\n    return {enc_expr.replace('{v}', 'v')}\n", {})
    elif ienc is not None:
        enc_expr = None
        enc = _compile("def _enc(v):\n    return [ienc(x) for x in v]\n", {"ienc": ienc})
    else:
        enc_expr, enc = "list({v})", list
    return FieldType(fn, enc, f"seq[{item.label}]", None, enc_expr, shared=shared)


def node_set(max_len: int) -> FieldType:
    """A frozenset of distinct node ids, carried as a sorted array."""

    def dec(v: Any) -> frozenset[int]:
        if type(v) is not list or len(v) > max_len:
            raise Invalid(f"expected array of at most {max_len} node ids")
        for x in v:
            if type(x) is not int or not 0 < x <= MAX_INT:
                raise Invalid("expected positive node ids")
        out = frozenset(v)
        if len(out) != len(v):
            raise Invalid("duplicate node id")
        return out

    return FieldType(dec, sorted, "node_set", None, "sorted({v})")


def struct(
    cls: type[Any], fields: Sequence[FieldType], check: Callable[[list[Any]], None] | None = None
) -> FieldType:
    """A nested frozen dataclass, carried as an array of its fields in dataclass order.

    `check(args)` sees the decoded argument list before construction and may raise Invalid.
    """
    names = _field_names(cls, fields)
    dec = _gen_decoder(cls, names, fields, skip=0, pre_check=check, post_check=None)

    def inline(src: str, dst: str, indent: str) -> tuple[list[str], dict[str, Any]]:
        return _struct_lines(cls, names, fields, src, dst, indent, skip=0, pre_check=check)

    parts = [
        _enc_part(f, f"{{v}}.{n}", i) for i, (n, f) in enumerate(zip(names, fields, strict=True))
    ]
    env = _enc_env(fields)
    if env:  # some part calls a function: not inlinable into a parent
        enc = _compile(
            f"def _enc(o):\n    return [{', '.join(p.replace('{v}', 'o') for p in parts)}]\n", env
        )
        return FieldType(dec, enc, cls.__name__, inline=inline)
    enc_expr = f"[{', '.join(parts)}]"
    enc = _compile(f"def _enc(o):\n    return {enc_expr.replace('{v}', 'o')}\n", {})
    return FieldType(dec, enc, cls.__name__, None, enc_expr, inline=inline)


# --- code generation -------------------------------------------------------------------------


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


def _enc_env(fields: Sequence[FieldType]) -> dict[str, Any]:
    return {
        f"e{i}": f.encode
        for i, f in enumerate(fields)
        if f.enc_expr is None and f.encode is not None
    }


def _enc_part(f: FieldType, ref: str, i: int) -> str:
    if f.enc_expr is not None:
        return f.enc_expr.replace("{v}", ref)
    if f.encode is not None:
        return f"e{i}({ref})"
    return ref


def _struct_lines(
    cls: type[Any],
    names: Sequence[str],
    fields: Sequence[FieldType],
    src: str,
    dst: str,
    indent: str,
    *,
    skip: int,
    pre_check: Callable[[list[Any]], None] | None,
) -> tuple[list[str], dict[str, Any]]:
    """Statements validating `src` (an array: `skip` leading items, then the fields) and
    assigning the constructed `cls` to `dst`; local names are prefixed by `dst`."""
    n = len(fields)
    p = f"{dst}_"
    env: dict[str, Any] = {f"{p}cls": cls, f"{p}pre_check": pre_check}
    args = [f"{p}a{i}" for i in range(n)]
    lines: list[str] = []
    if skip == 0:
        lines += [
            f"if type({src}) is not list or len({src}) != {n}:",
            f"    raise Invalid('expected {cls.__name__} as array of {n}')",
        ]
    targets = ["_"] * skip + args
    if targets:
        lines.append(f"{', '.join(targets)}, = {src}")
    for i, (name, f) in enumerate(zip(names, fields, strict=True)):
        a = args[i]
        if f.bad_expr is not None:
            env.update(f.env)
            lines += [
                f"if {f.bad_expr.replace('{v}', a)}:",
                f"    raise Invalid({name + ': ' + f.label!r})",
            ]
            if f.conv_expr is not None:
                lines.append(f"{a} = {f.conv_expr.replace('{v}', a)}")
        else:
            env[f"{p}d{i}"] = f.decode
            lines += [
                "try:",
                f"    {a} = {p}d{i}({a})",
                "except Invalid as e:",
                f"    raise Invalid({name + ': '!r} + str(e)) from None",
            ]
    if pre_check is not None:
        lines.append(f"{p}pre_check([{', '.join(args)}])")
    lines += [
        "try:",
        f"    {dst} = {p}cls({', '.join(args)})",
        "except (ValueError, TypeError, AssertionError) as e:",
        f"    raise Invalid({cls.__name__ + ': '!r} + str(e)) from None",
    ]
    return [indent + line for line in lines], env


def _gen_decoder(
    cls: type[Any],
    names: Sequence[str],
    fields: Sequence[FieldType],
    *,
    skip: int,
    pre_check: Callable[[list[Any]], None] | None,
    post_check: Callable[[Any], None] | None,
) -> Decoder:
    """Straight-line validator/constructor for `[skip leading items..., field values...]`."""
    lines, env = _struct_lines(
        cls, names, fields, "v", "o", "    ", skip=skip, pre_check=pre_check
    )
    env["post_check"] = post_check
    tail = ["    post_check(o)"] if post_check is not None else []
    src = "\n".join(["def _dec(v):", *lines, *tail, "    return o"]) + "\n"
    return _compile(src, env)  # type: ignore[no-any-return]


def _gen_encoder(
    kind: int | None,
    names: Sequence[str],
    fields: Sequence[FieldType],
    lo: int = 0,
    hi: int | None = None,
) -> Encoder:
    """`[kind, fields[lo:hi]...]` (no kind when None) as a generated function."""
    env = _enc_env(fields)
    hi = len(fields) if hi is None else hi
    parts = [str(kind)] if kind is not None else []
    parts += [
        _enc_part(f, f"o.{n}", i)
        for i, (n, f) in enumerate(zip(names, fields, strict=True))
        if lo <= i < hi
    ]
    return _compile(f"def _enc(o):\n    return [{', '.join(parts)}]\n", env)  # type: ignore[no-any-return]


# --- the registry ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Schema:
    kind: int
    cls: type[Any]
    names: tuple[str, ...]
    fields: tuple[FieldType, ...]
    routed: bool
    """True when the message carries `src` / `dst`, which must match the authenticated session."""
    decode: Decoder
    encode: Encoder
    shared: int | None = None
    """Position (in the wire array) of a `shared` field, packed once per distinct tuple."""
    encode_head: Encoder | None = None
    """The wire array before the shared field (kind first)."""
    encode_tail: Encoder | None = None
    """The wire array after the shared field."""


SHARED_CACHE_SLOTS: Final = 4
"""Packed shared fields remembered (by identity): enough for one batch per follower."""
SHARED_MIN_ITEMS: Final = 16
"""Shorter shared fields are packed with the message: splicing costs ~0.5 us a message."""

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
        # (tuple, its packed bytes) for shared fields, newest last; holding the tuple
        # keeps its id from being reused while the entry is here.
        self._shared: list[tuple[Any, bytes]] = []

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
        if len(shared) > 1 or (shared and len(fields) + 1 >= 16):
            raise LocalProtocolError(f"{cls.__name__}: at most one shared field, in < 15 fields")
        split = shared[0] if shared else None
        schema = Schema(
            kind=kind,
            cls=cls,
            names=names,
            fields=tuple(fields),
            routed="src" in names and "dst" in names,
            decode=_gen_decoder(cls, names, fields, skip=1, pre_check=None, post_check=check),
            encode=_gen_encoder(kind, names, fields),
            shared=None if split is None else split + 1,
            encode_head=None if split is None else _gen_encoder(kind, names, fields, 0, split),
            encode_tail=(
                None if split is None
                else _gen_encoder(None, names, fields, split + 1, len(fields))
            ),
        )
        self._by_kind[kind] = schema
        self._by_cls[cls] = schema

    def kinds(self) -> dict[int, type[Any]]:
        return {k: s.cls for k, s in self._by_kind.items()}

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
        return schema.encode(msg)  # type: ignore[no-any-return]

    def encode_message(self, msg: Any) -> bytes:
        """One message as packed msgpack (a batch element); LocalProtocolError if unregistered."""
        schema = self._by_cls.get(type(msg))
        if schema is None:
            raise LocalProtocolError(f"unregistered message type {type(msg).__name__}")
        try:
            if (
                schema.shared is not None
                and len(getattr(msg, schema.names[schema.shared - 1])) >= SHARED_MIN_ITEMS
            ):
                return self._encode_split(schema, msg)
            return _packer.pack(schema.encode(msg))  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise LocalProtocolError(f"cannot encode {type(msg).__name__}: {exc}") from None

    def _encode_split(self, schema: Schema, msg: Any) -> bytes:
        """Pack a message whose `shared` field may already be packed: the same bytes as
        `_packer.pack(schema.encode(msg))`, built as array header + head items + shared
        field + tail items (head and tail are packed as short arrays, header dropped)."""
        assert schema.encode_head is not None and schema.encode_tail is not None
        seq = getattr(msg, schema.names[schema.shared - 1])  # type: ignore[operator]
        packed = None
        for obj, data in self._shared:
            if obj is seq:
                packed = data
                break
        if packed is None:
            packed = _packer.pack(schema.fields[schema.shared - 1].encode(seq))  # type: ignore[misc, operator]
            if type(seq) is tuple:  # immutable: safe to remember by identity
                self._shared.append((seq, packed))
                if len(self._shared) > SHARED_CACHE_SLOTS:
                    del self._shared[0]
        head = _packer.pack(schema.encode_head(msg))
        tail = _packer.pack(schema.encode_tail(msg))
        return b"".join(
            (bytes((0x90 | (len(schema.fields) + 1),)), head[1:], packed, tail[1:])
        )

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
        if not plaintext:
            raise RemoteProtocolError("malformed", "empty frame")
        if plaintext[0] != PROTOCOL_VERSION:
            raise RemoteProtocolError("bad_version", f"protocol version {plaintext[0]}")
        # A frame allocates thousands of objects at once; letting the cyclic GC
        # run in the middle of that only rescans the (large) live heap for
        # nothing (msgpack's own advice). Nothing here awaits, so this is safe.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            try:
                items = msgpack.unpackb(
                    memoryview(plaintext)[1:], raw=False, use_list=True, strict_map_key=True
                )
            except Exception as exc:
                raise RemoteProtocolError("malformed", f"msgpack: {type(exc).__name__}") from None
            if type(items) is not list:
                raise RemoteProtocolError("malformed", "batch is not an array")
            dec = self._decode_item
            return [dec(it, src, dst) for it in items]
        finally:
            if gc_was_enabled:
                gc.enable()

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
        if len(item) != len(schema.fields) + 1:
            raise RemoteProtocolError("malformed", f"{schema.cls.__name__}: wrong field count")
        try:
            msg = schema.decode(item)
        except (Invalid, ValueError, TypeError, AssertionError) as exc:
            # ValueError/TypeError/AssertionError: a check or __post_init__ refused it.
            raise RemoteProtocolError("invalid", f"{schema.cls.__name__}: {exc}") from None
        if schema.routed and (
            (src is not None and msg.src != src) or (dst is not None and msg.dst != dst)
        ):
            raise RemoteProtocolError("misrouted", f"{schema.cls.__name__} src/dst mismatch")
        return msg
