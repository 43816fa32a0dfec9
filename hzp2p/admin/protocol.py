"""The admin-socket wire protocol, sans IO: frames, requests, responses, errors.

It owns the bytes exchanged between `hzp2p admin` (or any harness) and a
daemon's admin server, so both sides validate the same way and neither does
any I/O here.

Framing: each message is a 4-byte big-endian length followed by that many
bytes of msgpack, framed by hzp2p.net.framing like the peer connections. A
frame larger than the agreed maximum is refused before it is buffered
(AdminProtocolError), so a peer cannot make us hold more memory than
`max_frame_bytes`.

Request:  {"id": int >= 0, "method": str, "params": {str: any}}
Response: {"id": int | None, "ok": True, "result": any}
          {"id": int | None, "ok": False,
           "error": {"code": str, "message": str, "hint"?: str, "leader_id"?: int,
                     "retry_tx"?: str}}
retry_tx (hex) is the signed transaction a `no_quorum` submit was refused with, so the
client can hand the same transaction to another node (submit_raw: never applied twice).
A response's id is None only when the request was too malformed to carry one.

Error codes (ERROR_CODES): bad_request, unknown_method, not_leader, timeout,
not_found, rejected, unavailable, no_quorum, internal.

The parameters of every admin method are declared with its operation
(hzp2p.admin.operations, built from the `Param`s here); the server checks them
(types, required, unknown names) before a handler runs, so handlers see
well-typed params only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from hzp2p.net import framing
from hzp2p.net.errors import LocalProtocolError, OversizedFrame

DEFAULT_MAX_FRAME_BYTES: Final = 1 << 20
"""Default bound on one frame's msgpack body (1 MiB)."""
MAX_METHOD_CHARS: Final = 64
MAX_REQUEST_ID: Final = (1 << 63) - 1

ERROR_CODES: Final = frozenset(
    {
        "bad_request",  # malformed request, wrong or missing params
        "unknown_method",  # no such method
        "not_leader",  # this node cannot serve it now; leader_id names the leader if known
        "timeout",  # the operation did not finish within its deadline
        "not_found",  # no such block, transaction, subject, lot, node
        "rejected",  # the ledger or contracts refused the operation
        "unavailable",  # the server is shutting down or at its connection limit
        "no_quorum",  # this node knows no leader (no quorum reachable): retry via another node
        "internal",  # a bug on the daemon's side (logged there)
    }
)


class AdminProtocolError(Exception):
    """Bytes that do not form a valid frame or message: malformed, oversized, wrong types."""


class AdminError(Exception):
    """A typed error carried in a response: raised by handlers, re-raised by clients."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        leader_id: int | None = None,
        retry_tx: str | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown admin error code {code!r}")
        self.code = code
        self.message = message
        self.hint = hint
        self.leader_id = leader_id
        self.retry_tx = retry_tx
        super().__init__(f"{code}: {message}")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint is not None:
            out["hint"] = self.hint
        if self.leader_id is not None:
            out["leader_id"] = self.leader_id
        if self.retry_tx is not None:
            out["retry_tx"] = self.retry_tx
        return out


class RequestError(AdminProtocolError):
    """A framed message that is not a valid request; `request_id` is set if one was readable."""

    def __init__(self, message: str, request_id: int | None, code: str = "bad_request") -> None:
        super().__init__(message)
        self.request_id = request_id
        self.code = code


# ---------------------------------------------------------------------------
# Framing


def pack_message(obj: Any, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """One frame carrying `obj`; AdminProtocolError if it cannot be encoded or is too large."""
    try:
        body = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise AdminProtocolError(f"cannot encode message: {exc}") from exc
    try:
        return framing.encode_frame(body, max_frame_bytes)
    except LocalProtocolError:
        raise AdminProtocolError(
            f"message of {len(body)} bytes exceeds the {max_frame_bytes}-byte frame limit"
        ) from None


def unpack_message(body: bytes) -> Any:
    """Decode one frame body; AdminProtocolError if it is not exactly one msgpack object."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise AdminProtocolError(f"frame is not valid msgpack: {type(exc).__name__}") from exc


class FrameDecoder:
    """Incremental splitter of a byte stream into frame bodies, bounded by `max_frame_bytes`:
    hzp2p.net.framing's decoder, raising AdminProtocolError.

    Holds at most one partial frame (plus one read's worth of bytes).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        # A 4-byte header cannot declare more than ABSOLUTE_MAX_FRAME_BYTES anyway.
        self._frames = framing.FrameDecoder(min(max_frame_bytes, framing.ABSOLUTE_MAX_FRAME_BYTES))

    @property
    def buffered_bytes(self) -> int:
        return self._frames.buffered_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Complete frame bodies in `data` (and what came before); raises on an oversized frame."""
        try:
            self._frames.feed(data)
            return self._frames.frames()
        except OversizedFrame as exc:
            raise AdminProtocolError(
                f"frame of {exc.declared_bytes} bytes exceeds the {self.max_frame_bytes}-byte limit"
            ) from None


# ---------------------------------------------------------------------------
# Requests and responses


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    method: str
    params: Mapping[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "params": dict(self.params)}


@dataclass(frozen=True, slots=True)
class Response:
    id: int | None
    ok: bool
    result: Any = None
    error: AdminError | None = None

    def to_wire(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.id, "ok": True, "result": self.result}
        assert self.error is not None
        return {"id": self.id, "ok": False, "error": self.error.to_wire()}

    def unwrap(self) -> Any:
        """The result, or the carried AdminError raised."""
        if not self.ok:
            assert self.error is not None
            raise self.error
        return self.result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_request(obj: Any) -> Request:
    """Validate a decoded message as a request; RequestError names what is wrong."""
    if not isinstance(obj, dict):
        raise RequestError(f"request must be a map, got {type(obj).__name__}", None)
    raw_id = obj.get("id")
    request_id: int | None = None
    if isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 <= raw_id <= MAX_REQUEST_ID:
        request_id = raw_id
    if "id" not in obj:
        raise RequestError("request is missing field 'id'", None)
    if request_id is None:
        raise RequestError(
            f"request field 'id' must be an integer in [0, 2^63), got {_describe(raw_id)}", None
        )
    extra = sorted(str(k) for k in obj if k not in ("id", "method", "params"))
    if extra:
        raise RequestError(f"request has unknown fields: {', '.join(extra)}", request_id)
    method = obj.get("method")
    if "method" not in obj:
        raise RequestError("request is missing field 'method'", request_id)
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD_CHARS:
        raise RequestError(
            f"request field 'method' must be a non-empty string of at most "
            f"{MAX_METHOD_CHARS} characters, got {_describe(method)}",
            request_id,
        )
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise RequestError(
            f"request field 'params' must be a map, got {_describe(params)}", request_id
        )
    for key in params:
        if not isinstance(key, str):
            raise RequestError(f"param names must be strings, got {_describe(key)}", request_id)
    return Request(id=request_id, method=method, params=params)


def parse_response(obj: Any) -> Response:
    """Validate a decoded message as a response (client side)."""
    if not isinstance(obj, dict):
        raise AdminProtocolError(f"response must be a map, got {type(obj).__name__}")
    rid = obj.get("id")
    if rid is not None and not _is_int(rid):
        raise AdminProtocolError(f"response id must be an integer or nil, got {_describe(rid)}")
    ok = obj.get("ok")
    if not isinstance(ok, bool):
        raise AdminProtocolError("response field 'ok' must be a boolean")
    if ok:
        return Response(id=rid, ok=True, result=obj.get("result"))
    err = obj.get("error")
    if not isinstance(err, dict):
        raise AdminProtocolError("error response lacks an 'error' map")
    code, message = err.get("code"), err.get("message")
    hint, leader_id = err.get("hint"), err.get("leader_id")
    if not isinstance(code, str) or not isinstance(message, str):
        raise AdminProtocolError("error code and message must be strings")
    if hint is not None and not isinstance(hint, str):
        raise AdminProtocolError("error hint must be a string")
    if leader_id is not None and not _is_int(leader_id):
        raise AdminProtocolError("error leader_id must be an integer")
    retry_tx = err.get("retry_tx")
    if retry_tx is not None and not isinstance(retry_tx, str):
        raise AdminProtocolError("error retry_tx must be a string")
    if code not in ERROR_CODES:
        # A newer daemon may send codes we do not know; keep the message, file it as internal.
        message = f"[{code}] {message}"
        code = "internal"
    return Response(
        id=rid, ok=False,
        error=AdminError(code, message, hint=hint, leader_id=leader_id, retry_tx=retry_tx),
    )


def ok_response(request_id: int | None, result: Any) -> Response:
    return Response(id=request_id, ok=True, result=result)


def error_response(request_id: int | None, error: AdminError) -> Response:
    return Response(id=request_id, ok=False, error=error)


def _describe(value: Any) -> str:
    if value is None:
        return "nil"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


# ---------------------------------------------------------------------------
# Method parameter schemas


@dataclass(frozen=True, slots=True)
class Param:
    """One named parameter: its wire type, whether it is required, its bounds."""

    name: str
    kind: str
    """One of: int, float (int accepted), bool, str, hex (hex string), map, str_list,
    map_list (a list of maps, each checked against `items`)."""
    required: bool = True
    min_value: float | None = None
    max_value: float | None = None
    max_len: int | None = None
    exact_len: int | None = None
    items: tuple[Param, ...] = ()
    """map_list only: the schema every element must fit (unknown keys are refused)."""
    pattern: str | None = None
    """str only: the whole value must match (re.fullmatch); `shown` describes it."""
    shown: str = ""

    def check(self, value: Any) -> str | None:
        """None if `value` fits, else what is wrong with it."""
        kind = self.kind
        if kind == "int":
            if not _is_int(value):
                return f"must be an integer, got {_describe(value)}"
        elif kind == "float":
            if not (_is_int(value) or isinstance(value, float)) or isinstance(value, bool):
                return f"must be a number, got {_describe(value)}"
            if not math.isfinite(value):
                return "must be finite"
        elif kind == "bool":
            if not isinstance(value, bool):
                return f"must be a boolean, got {_describe(value)}"
        elif kind in ("str", "hex"):
            if not isinstance(value, str) or not value:
                return f"must be a non-empty string, got {_describe(value)}"
            if kind == "hex":
                try:
                    bytes.fromhex(value)
                except ValueError:
                    return "must be a hex string"
        elif kind == "map":
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                return f"must be a map with string keys, got {_describe(value)}"
        elif kind == "str_list":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                return f"must be a list of non-empty strings, got {_describe(value)}"
        elif kind == "map_list":
            if not isinstance(value, list) or not value:
                return f"must be a non-empty list of maps, got {_describe(value)}"
            if self.max_len is not None and len(value) > self.max_len:
                return f"must have at most {self.max_len} elements, got {len(value)}"
            for i, item in enumerate(value):
                problem = _check_item(self.items, item)
                if problem is not None:
                    return f"item {i}: {problem}"
        else:  # pragma: no cover - schema bug
            return f"has an unknown schema kind {kind!r}"
        if self.min_value is not None and kind in ("int", "float") and value < self.min_value:
            return f"must be >= {self.min_value:g}, got {value}"
        if self.max_value is not None and kind in ("int", "float") and value > self.max_value:
            return f"must be <= {self.max_value:.0f}"
        if self.pattern is not None and isinstance(value, str) and not re.fullmatch(
            self.pattern, value
        ):
            return f"must be {self.shown or 'of the form ' + self.pattern}"
        if self.max_len is not None and isinstance(value, str | list) and len(value) > self.max_len:
            return f"must have at most {self.max_len} elements/characters"
        if self.exact_len is not None and isinstance(value, str) and len(value) != self.exact_len:
            return f"must have exactly {self.exact_len} characters, got {len(value)}"
        return None


def _check_item(schema: tuple[Param, ...], item: Any) -> str | None:
    """None if `item` is a map fitting `schema` (a map_list element), else what is wrong."""
    if not isinstance(item, dict):
        return f"must be a map, got {_describe(item)}"
    for key in item:
        if not isinstance(key, str) or all(p.name != key for p in schema):
            return f"unknown field {_describe(key)}; takes: {', '.join(p.name for p in schema)}"
    for p in schema:
        if p.name not in item:
            if p.required:
                return f"missing field {p.name!r}"
            continue
        problem = p.check(item[p.name])
        if problem is not None:
            return f"field {p.name!r} {problem}"
    return None


def check_params(method: str, schema: tuple[Param, ...], params: Mapping[str, Any]) -> None:
    """Raise AdminError("bad_request") naming the first wrong, missing or unknown parameter."""
    known = {p.name for p in schema}
    unknown = sorted(k for k in params if k not in known)
    if unknown:
        raise AdminError(
            "bad_request",
            f"{method}: unknown params: {', '.join(unknown)}",
            hint=f"{method} takes: {', '.join(sorted(known)) or 'no params'}",
        )
    for p in schema:
        if p.name not in params:
            if p.required:
                raise AdminError("bad_request", f"{method}: missing param {p.name!r}")
            continue
        problem = p.check(params[p.name])
        if problem is not None:
            raise AdminError("bad_request", f"{method}: param {p.name!r} {problem}")


# Parameters several operations share (each operation's own are declared with it:
# hzp2p.admin.operations).
LIN = Param("linearizable", "bool", required=False)
MAX_INT: Final = 2**63 - 1
SUBJECT = Param("subject", "str", pattern="[0-9a-f]{32}",
                 shown="a subject pseudonym (32 lowercase hex digits)")
WAIT = Param("wait_s", "float", required=False, min_value=0)
TX_TYPE = Param("type", "str", max_len=64)
PAYLOAD = Param("payload", "map")
IDEM_KEY = Param("idempotency_key", "str", required=False, max_len=128)

MAX_SCAN: Final = 10_000
"""Rows one `state_scan` answers at most (a client pages by key prefix past it)."""
NODE_ID = Param("node_id", "int", min_value=1, max_value=MAX_INT)
LOT = Param("lot", "str", pattern=r"[A-Za-z0-9._:\-]{1,64}",
            shown="a lot id (1..64 of [A-Za-z0-9._:-])")
MAX_SUBMIT_MANY: Final = 1000
"""Items in one `submit_many` request (the frame bound, max_request_bytes, also applies)."""


