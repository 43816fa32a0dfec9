"""Reading a config table against its declared section: one reader for every section.

A section is a frozen msgspec Struct (hzp2p.config.sections); each field's
annotation declares its type and bounds (`Annotated[int, Meta(ge=1)]`, a
`Literal` of choices, a bool) and its documentation (`Meta(description=...)`).
msgspec checks each value against its field's declared type (strict: no bool
for an int, no string for a number); a field whose value needs the config
file's context (a path resolved against the file's directory, a "host:port")
declares its parser in `Meta(extra={"parse": fn})`. A refused value becomes a
ConfigError naming the file, the dotted field and the fix, written from the
declared bounds (never from msgspec's message text). Cross-field rules are a
section's `problems()` method: (field, problem) pairs, the first one raised.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import msgspec
import msgspec.inspect as mi

MAX_FINITE = sys.float_info.max
"""Upper bound of every float field: TOML's inf and nan are refused."""


class ConfigError(Exception):
    """A config file problem: `file`, `field` (dotted path) and `problem` for the operator."""

    def __init__(self, file: Path | str, field: str, problem: str) -> None:
        self.file = str(file)
        self.field = field
        self.problem = problem
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {problem}")


class Problem(ValueError):
    """Raised by a field's parser: `problem`, about the field or `at` (a suffix like "[2]")."""

    def __init__(self, problem: str, at: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.at = at


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every declared section: frozen, keyword-only, unknown fields refused."""

    def problems(self) -> Iterator[tuple[str, str]]:
        """Cross-field rules: (field, problem) for each one broken (none by default)."""
        return iter(())


S = TypeVar("S", bound=Section)
Parse = Callable[[Any, "Context"], Any]


class Context:
    """What a parser may need: the config file (paths are relative to its directory) and
    the values of the enclosing table read so far (a default that derives from one)."""

    def __init__(self, file: Path, values: Mapping[str, Any]) -> None:
        self.file = file
        self.values = values


def extra(t: mi.Type) -> dict[str, Any]:
    return dict(t.extra or {}) if isinstance(t, mi.Metadata) else {}


def description(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata) and t.extra_json_schema:
        return str(t.extra_json_schema.get("description", ""))
    return ""


def bare(t: mi.Type) -> mi.Type:
    """The type without its Metadata and without a `| None`."""
    if isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.UnionType):
        rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if len(rest) == 1:
            t = rest[0]
    return t


def section_type(t: mi.Type) -> type[Section] | None:
    b = bare(t)
    if isinstance(b, mi.StructType) and issubclass(b.cls, Section):
        return b.cls
    return None


def show(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def choices(hint: Any) -> tuple[Any, ...]:
    """The values of a `Literal` annotation, in declaration order (msgspec sorts them)."""
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    return get_args(hint) if get_origin(hint) is Literal else ()


def explain(t: mi.Type, value: Any, hint: Any = None) -> str:
    """Why `value` does not fit declared type `t`, and what would (from the declaration)."""
    why = extra(t)
    b = bare(t)
    if isinstance(b, mi.IntType):
        if type(value) is not int:
            return f"must be an integer, got {show(value)}"
        if b.ge is not None and value < b.ge:
            return f"must be >= {b.ge}{why.get('ge_why', '')}, got {value}"
        if b.le is not None and value > b.le:
            return f"must be at most {b.le}{why.get('le_why', '')}, got {value}"
    if isinstance(b, mi.FloatType):
        if type(value) not in (int, float):
            return f"must be a number, got {show(value)}"
        return f"must be a {'positive ' if b.gt == 0 else ''}finite number, got {value}"
    if isinstance(b, mi.BoolType):
        return f"must be true or false, got {show(value)}"
    if isinstance(b, mi.LiteralType):
        values = choices(hint) or b.values
        return f"must be one of {', '.join(map(str, values))}; got {value!r}"
    if isinstance(b, mi.StrType):
        return f"must be a non-empty string, got {show(value)}"
    return f"is not valid: {show(value)}"


@functools.cache
def schema(cls: type[Section]) -> tuple[mi.StructType, dict[str, Any]]:
    """A section's declaration: msgspec's view of its fields, and their annotations."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info, get_type_hints(cls, include_extras=True)


def read_section(
    cls: type[S], table: Any, *, file: Path, prefix: str, outer: Mapping[str, Any]
) -> S:
    """Check a TOML table against section `cls`; `outer` is the enclosing table's values."""
    if not isinstance(table, dict):
        raise ConfigError(file, prefix.rstrip("."), f"must be a table ([{prefix.rstrip('.')}]), got {show(table)}")
    info, hints = schema(cls)
    values: dict[str, Any] = {}
    for f in info.fields:
        name = prefix + f.name
        ex = extra(f.type)
        if ex.get("internal"):  # not from the file: given by the caller
            values[f.name] = outer[f.name]
            continue
        ctx = Context(file, {**outer, **values})
        sub = section_type(f.type)
        if f.name in table:
            values[f.name] = read_value(f.type, hints[f.name], table[f.name], name, ctx)
        elif "default_from" in ex:
            values[f.name] = ex["default_from"](ctx)
        elif sub is not None:  # an absent section: its defaults (None: the section is off)
            if f.default is not None:
                values[f.name] = read_section(sub, {}, file=file, prefix=f"{name}.", outer=values)
        elif f.required:
            raise ConfigError(file, name, "is required")
    names = {f.name for f in info.fields if not extra(f.type).get("internal")}
    unknown = sorted(k for k in table if k not in names)
    if unknown:
        raise ConfigError(
            file, prefix + unknown[0], "unknown field (check the spelling; see docs/operations.md)"
        )
    return finish(cls, values, file, prefix)


def finish(cls: type[S], values: Mapping[str, Any], file: Path, prefix: str) -> S:
    """Build the section and apply its cross-field rules."""
    sec = cls(**values)
    for field, problem in sec.problems():
        raise ConfigError(file, prefix + field, problem)
    return sec


def read_value(t: mi.Type, hint: Any, value: Any, name: str, ctx: Context) -> Any:
    parse: Parse | None = extra(t).get("parse")
    if parse is not None:
        try:
            return parse(value, ctx)
        except Problem as p:
            raise ConfigError(ctx.file, name + p.at, p.problem) from None
    sub = section_type(t)
    if sub is not None:
        return read_section(sub, value, file=ctx.file, prefix=f"{name}.", outer=ctx.values)
    try:
        out = msgspec.convert(value, hint, strict=True)
    except msgspec.ValidationError:
        raise ConfigError(ctx.file, name, explain(t, value, hint)) from None
    return out
