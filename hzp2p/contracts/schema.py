"""Stateless payload checks: every problem of a payload's shape, found without any state.

Each contract declares one `Schema` (hzp2p.contracts.registry.contract). The same
schema object is run in two places: at admission, by the node that first receives a
transaction and by the leader before its mempool (hzp2p.contracts.engine.precheck_tx),
so a malformed payload — an unknown field that might carry a name or an identity-card
number in the clear, a wrong type, an oversized value — never enters a mempool, a
block or the Raft log; and again at execution, before the handler (defence in depth,
deterministic). A schema knows nothing of state or of the block's time: whatever needs
either (a lot's expiry, a rule version's bound) is the handler's.

A check returns *all* problems, each a `Problem(field, reason)` (field paths like
``record.sealed_keys`` or ``readings[3].t_ms``), so a client fixes a payload in one go.
Reasons never echo a submitted value: a refusal is stored and shown, and the value may
be exactly the personal data that must not be kept. Unknown field *names* are echoed
only when they look like identifiers (a name such as ``id_card`` helps; arbitrary text
is summarised).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 256
ID_PATTERN = r"[A-Za-z0-9._:\-]{1,64}"
ID_RE = re.compile(ID_PATTERN)
SUBJECT_RE = re.compile(r"[0-9a-f]{32}")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
MAX_PROBLEMS = 32
"""Problems reported per payload (a hostile payload could have thousands)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a payload: where (a field path; "" for the payload itself) and why."""

    field: str
    reason: str

    def text(self) -> str:
        return f"{self.field} {self.reason}" if self.field else self.reason


def problems_text(problems: Iterable[Problem]) -> str:
    """The one-line form of a list of problems (verdict reasons, log lines)."""
    return "; ".join(p.text() for p in problems)


Check = Callable[[Any, str], list[Problem]]
"""A field check: (value, its path) -> its problems (empty when the value fits)."""
Rule = Callable[[Mapping[str, Any], bytes], list[Problem]]
"""A cross-field check of a payload whose fields each passed: (payload, signer) -> problems
(an ordering between two fields, a signature inside the payload)."""


def _one(path: str, reason: str) -> list[Problem]:
    return [Problem(path, reason)]


def _is_int(v: Any) -> bool:
    return type(v) is int


def _names(keys: Iterable[Any]) -> str:
    shown = sorted(k for k in keys if isinstance(k, str) and _NAME_RE.fullmatch(k))
    hidden = sum(1 for k in keys if not (isinstance(k, str) and _NAME_RE.fullmatch(k)))
    if hidden:
        shown.append(f"{hidden} other(s)")
    return ", ".join(shown)


# ---------------------------------------------------------------- field checks


def Int(lo: int, hi: int) -> Check:
    def check(v: Any, path: str) -> list[Problem]:
        if not _is_int(v):
            return _one(path, "must be an integer")
        if not lo <= v <= hi:
            return _one(path, f"out of range [{lo}, {hi}]")
        return []

    return check


def Bool() -> Check:
    def check(v: Any, path: str) -> list[Problem]:
        return [] if type(v) is bool else _one(path, "must be a boolean")

    return check


def Text(max_len: int = MAX_TEXT) -> Check:
    """A non-empty string of at most `max_len` characters (free text: clear on chain)."""

    def check(v: Any, path: str) -> list[Problem]:
        if not isinstance(v, str) or not v.strip():
            return _one(path, "must be a non-empty string")
        if len(v) > max_len:
            return _one(path, f"longer than {max_len} characters")
        return []

    return check


def Match(pattern: re.Pattern[str] | str, shown: str = "") -> Check:
    """A string matching `pattern` as a whole (re.fullmatch: `$` would let "x\\n" through)."""
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    what = shown or rx.pattern

    def check(v: Any, path: str) -> list[Problem]:
        if type(v) is not str or not rx.fullmatch(v):
            return _one(path, f"must match {what}")
        return []

    return check


def Id() -> Check:
    return Match(ID_RE, "[A-Za-z0-9._:-]{1,64}")


def Subject() -> Check:
    def check(v: Any, path: str) -> list[Problem]:
        if type(v) is not str or not SUBJECT_RE.fullmatch(v):
            return _one(path, "must be a subject pseudonym (32 lowercase hex digits)")
        return []

    return check


def Bytes(min_len: int, max_len: int | None = None) -> Check:
    hi = min_len if max_len is None else max_len

    def check(v: Any, path: str) -> list[Problem]:
        if not isinstance(v, bytes):
            return _one(path, "must be bytes")
        if not min_len <= len(v) <= hi:
            size = f"{min_len}" if min_len == hi else f"{min_len}..{hi}"
            return _one(path, f"must be {size} bytes")
        return []

    return check


def Key32() -> Check:
    """32 bytes (a key or a hash), also accepted as 64 hex characters (a JSON payload)."""

    def check(v: Any, path: str) -> list[Problem]:
        if isinstance(v, str):
            try:
                v = bytes.fromhex(v)
            except ValueError:
                return _one(path, "is not hex")
        if not isinstance(v, bytes) or len(v) != 32:
            return _one(path, "must be 32 bytes (or 64 hex characters)")
        return []

    return check


def key32(v: bytes | str) -> bytes:
    """The bytes of a value that passed Key32."""
    return bytes.fromhex(v) if isinstance(v, str) else v


def Choice(*choices: str) -> Check:
    allowed = frozenset(choices)

    def check(v: Any, path: str) -> list[Problem]:
        if type(v) is not str or v not in allowed:
            return _one(path, f"must be one of {', '.join(choices)}")
        return []

    return check


def ListOf(item: Check, min_len: int, max_len: int, *, distinct: bool = False) -> Check:
    def check(v: Any, path: str) -> list[Problem]:
        if type(v) is not list:
            return _one(path, f"must be a list of {min_len}..{max_len} items")
        if not min_len <= len(v) <= max_len:
            return _one(path, f"must have {min_len}..{max_len} items")
        out: list[Problem] = []
        for i, x in enumerate(v):
            out += item(x, f"{path}[{i}]")
            if len(out) >= MAX_PROBLEMS:
                break
        if distinct and not out and len({repr(x) for x in v}) != len(v):
            out += _one(path, "items must be distinct")
        return out

    return check


def MapOf(key: Check, value: Check, max_len: int) -> Check:
    """A map whose keys and values each pass a check (e.g. sealed keys by holder)."""

    def check(v: Any, path: str) -> list[Problem]:
        if not isinstance(v, Mapping):
            return _one(path, "must be a map")
        if len(v) > max_len:
            return _one(path, f"must have at most {max_len} entries")
        out: list[Problem] = []
        for k in v:
            kp = key(k, f"{path} key")
            out += kp
            if not kp:
                out += value(v[k], f"{path}[{k}]")
        return out

    return check


def _plain_size(v: Any, depth: int) -> int | None:
    """Rough encoded size of a plain value (None if it is not plain or nests too deep)."""
    if v is None or type(v) in (bool, int):
        return 9
    if type(v) in (str, bytes):
        return len(v) + 5
    if depth <= 0:
        return None
    if type(v) is list:
        items: Iterable[Any] = v
    elif isinstance(v, Mapping) and all(type(k) is str for k in v):
        items = [*v.keys(), *v.values()]
    else:
        return None
    total = 5
    for x in items:
        n = _plain_size(x, depth - 1)
        if n is None:
            return None
        total += n
    return total


def FreeMap(max_bytes: int, max_depth: int = 4) -> Check:
    """A map with string keys of plain values (strings, numbers, booleans, bytes, null, lists
    and maps of those, nested at most `max_depth` deep), bounded in size; its content is
    free text in the clear (e.g. a public data set's metadata)."""

    def check(v: Any, path: str) -> list[Problem]:
        if not isinstance(v, Mapping):
            return _one(path, "must be a map")
        size = _plain_size(v, max_depth)
        if size is None:
            return _one(path, f"must hold only plain values, nested at most {max_depth} deep")
        if size > max_bytes:
            return _one(path, f"larger than {max_bytes} bytes")
        return []

    return check


# ---------------------------------------------------------------- schemas


@dataclass(frozen=True, slots=True)
class Schema:
    """The allowed fields of a payload (or of a nested map), each with its check."""

    required: Mapping[str, Check]
    optional: Mapping[str, Check] | None = None
    rules: tuple[Rule, ...] = ()
    """Cross-field checks, run only when every field passed its own."""

    def fields(self) -> frozenset[str]:
        return frozenset(self.required) | frozenset(self.optional or {})

    def problems(self, payload: Any, signer: bytes = b"", path: str = "") -> list[Problem]:
        """Every problem of `payload` against this schema (empty: it fits)."""
        if not isinstance(payload, Mapping):
            return _one(path, "must be a map")
        out: list[Problem] = []
        optional = self.optional or {}
        unknown = [k for k in payload if k not in self.required and k not in optional]
        if unknown:
            out.append(Problem("", f"unknown {path or 'payload'} field(s): {_names(unknown)}"))
        missing = sorted(k for k in self.required if k not in payload)
        if missing:
            out.append(Problem(path, f"missing field(s): {', '.join(missing)}"))
        for name, check in (*self.required.items(), *optional.items()):
            if name in payload:
                out += check(payload[name], f"{path}.{name}" if path else name)
            if len(out) >= MAX_PROBLEMS:
                return out[:MAX_PROBLEMS]
        if not out:
            for rule in self.rules:
                out += rule(payload, signer)
        return out[:MAX_PROBLEMS]

    def nested(self) -> Check:
        """This schema as a field check (a map inside the payload)."""

        def check(v: Any, path: str) -> list[Problem]:
            return self.problems(v, b"", path)

        return check


def one_of(field: str, schemas: Mapping[str, Schema]) -> Callable[[Any, bytes], list[Problem]]:
    """A payload whose shape depends on the value of `field` (e.g. member.propose's action)."""
    choice = Choice(*schemas)

    def check(payload: Any, signer: bytes) -> list[Problem]:
        if not isinstance(payload, Mapping):
            return _one("", "must be a map")
        bad = choice(payload.get(field), field)
        if bad:
            return bad
        return schemas[payload[field]].problems(payload, signer)

    return check
