"""The sans-IO admin protocol: framing bounds, request validation, param schemas."""

from __future__ import annotations

import struct
from pathlib import Path

import msgpack
import pytest

from hzp2p.admin.operations import METHOD_PARAMS
from hzp2p.admin.protocol import (
    AdminError,
    AdminProtocolError,
    FrameDecoder,
    RequestError,
    check_params,
    pack_message,
    parse_request,
    parse_response,
    unpack_message,
)


def test_frames_round_trip_across_split_reads() -> None:
    frames = pack_message({"id": 1, "method": "status", "params": {}}) + pack_message([1, 2])
    decoder = FrameDecoder(1024)
    bodies = []
    for i in range(len(frames)):
        bodies += decoder.feed(frames[i : i + 1])
    assert [unpack_message(b) for b in bodies] == [{"id": 1, "method": "status", "params": {}}, [1, 2]]
    assert decoder.buffered_bytes == 0


def test_oversized_frame_refused_before_buffering() -> None:
    decoder = FrameDecoder(100)
    with pytest.raises(AdminProtocolError, match="exceeds the 100-byte limit"):
        decoder.feed(struct.pack(">I", 101))
    with pytest.raises(AdminProtocolError, match="exceeds"):
        pack_message("x" * 200, max_frame_bytes=100)


def test_garbage_body_is_a_protocol_error() -> None:
    with pytest.raises(AdminProtocolError, match="not valid msgpack"):
        unpack_message(b"\xc1\xc1\xc1")
    with pytest.raises(AdminProtocolError):
        unpack_message(msgpack.packb(1) + b"trailing")


@pytest.mark.parametrize(
    ("obj", "match", "rid"),
    [
        ([1], "must be a map", None),
        ({"method": "status"}, "missing field 'id'", None),
        ({"id": "1", "method": "status"}, "'id' must be an integer", None),
        ({"id": True, "method": "status"}, "'id' must be an integer", None),
        ({"id": -1, "method": "status"}, "'id' must be an integer", None),
        ({"id": 5}, "missing field 'method'", 5),
        ({"id": 5, "method": 3}, "'method' must be a non-empty string", 5),
        ({"id": 5, "method": "x" * 65}, "'method' must be", 5),
        ({"id": 5, "method": "status", "params": [1]}, "'params' must be a map", 5),
        ({"id": 5, "method": "status", "params": {1: 2}}, "param names must be strings", 5),
        ({"id": 5, "method": "status", "extra": 1}, "unknown fields: extra", 5),
    ],
)
def test_malformed_requests_name_the_problem(obj: object, match: str, rid: int | None) -> None:
    with pytest.raises(RequestError, match=match) as info:
        parse_request(obj)
    assert info.value.request_id == rid


def test_valid_request_defaults_params() -> None:
    req = parse_request({"id": 9, "method": "status"})
    assert (req.id, req.method, dict(req.params)) == (9, "status", {})


def test_param_schemas() -> None:
    check_params("block", METHOD_PARAMS["block"], {"height": 0, "linearizable": True})
    cases = [
        ("block", {}, "missing param 'height'"),
        ("block", {"height": "3"}, "'height' must be an integer"),
        ("block", {"height": True}, "'height' must be an integer"),
        ("block", {"height": -1}, "must be >= 0"),
        ("block", {"height": 1, "bogus": 2}, "unknown params: bogus"),
        ("tx", {"tx_hash": "xyz"}, "must be a hex string"),
        ("submit", {"type": "t", "payload": []}, "'payload' must be a map"),
        ("submit", {"type": "t", "payload": {}, "wait_s": float("nan")}, "must be finite"),
        ("add_learner", {"name": "n", "roles": ["lab"], "signing_key": "00", "node_key": "00", "address": "a:1"}, "exactly 64 characters"),
        ("add_learner", {"name": "n", "roles": "lab", "signing_key": "00", "node_key": "00", "address": "a:1"}, "list of non-empty strings"),
        ("submit_raw", {}, "missing param 'tx'"),
        ("submit_raw", {"tx": "zz"}, "must be a hex string"),
        ("submit_raw", {"tx": "00" * (64 * 1024 + 1)}, "at most 131072"),
        ("submit_raw", {"tx": "00", "wait_s": -1}, "must be >= 0"),
        ("state_scan", {}, "missing param 'prefix'"),
        ("state_scan", {"prefix": "ab", "limit": 0}, "must be >= 1"),
        ("state_scan", {"prefix": "ab", "limit": "5"}, "'limit' must be an integer"),
        ("state_scan", {"prefix": "x" * 1025}, "at most 1024"),
    ]
    for method, params, match in cases:
        with pytest.raises(AdminError, match=match) as info:
            check_params(method, METHOD_PARAMS[method], params)
        assert info.value.code == "bad_request"


def test_responses_parse_and_unknown_codes_degrade() -> None:
    ok = parse_response({"id": 1, "ok": True, "result": {"a": 1}})
    assert ok.unwrap() == {"a": 1}
    err = parse_response({"id": 2, "ok": False, "error": {"code": "not_leader", "message": "m", "leader_id": 3}})
    with pytest.raises(AdminError) as info:
        err.unwrap()
    assert (info.value.code, info.value.leader_id) == ("not_leader", 3)
    odd = parse_response({"id": 2, "ok": False, "error": {"code": "brand_new", "message": "m"}})
    assert odd.error is not None and odd.error.code == "internal" and "brand_new" in odd.error.message
    with pytest.raises(AdminProtocolError):
        parse_response({"id": 1, "ok": "yes"})


def test_admin_error_codes_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown admin error code"):
        AdminError("nope", "x")
    assert AdminError("timeout", "slow", hint="h").to_wire() == {"code": "timeout", "message": "slow", "hint": "h"}


def test_submit_raw_and_state_scan_schemas() -> None:
    from hzp2p.ledger.tx import MAX_TX_BYTES

    (tx_param, _) = METHOD_PARAMS["submit_raw"]
    assert tx_param.max_len == 2 * MAX_TX_BYTES  # a maximum-size transaction, as hex, fits
    check_params("submit_raw", METHOD_PARAMS["submit_raw"], {"tx": "00" * MAX_TX_BYTES, "wait_s": 2.5})
    check_params("state_scan", METHOD_PARAMS["state_scan"], {"prefix": "-"})
    check_params("state_scan", METHOD_PARAMS["state_scan"], {"prefix": "ab01", "limit": 10})


def test_daemon_serves_exactly_the_shared_schemas() -> None:
    """The daemon registers every method with METHOD_PARAMS (no private schemas of its own)."""
    from typing import Any, cast

    from hzp2p.admin.server import AdminServer
    from hzp2p.node.handlers import Handlers

    registered: dict[str, Any] = {}

    class Recorder:
        def register(self, method: str, handler: Any, params: Any = None) -> None:
            registered[method] = params

    Handlers(cast(Any, None)).register_all(cast(AdminServer, Recorder()))
    assert set(registered) == set(METHOD_PARAMS)
    assert all(params is None for params in registered.values())


def test_submit_many_items_are_checked_one_by_one() -> None:
    from hzp2p.admin.protocol import MAX_SUBMIT_MANY

    schema = METHOD_PARAMS["submit_many"]
    good = {"type": "epi.report", "payload": {"a": 1}}
    check_params("submit_many", schema, {"items": [good] * MAX_SUBMIT_MANY, "wait_s": 1})
    check_params("submit_many", schema, {"items": [{**good, "idempotency_key": "k"}]})
    bad: list[tuple[object, str]] = [
        ([good] * (MAX_SUBMIT_MANY + 1), f"at most {MAX_SUBMIT_MANY} elements"),
        ([], "non-empty list of maps"),
        (good, "non-empty list of maps"),
        ([good, "x"], "item 1: must be a map"),
        ([good, {"type": "t"}], "item 1: missing field 'payload'"),
        ([{"type": "", "payload": {}}], "item 0: field 'type' must be a non-empty string"),
        ([{"type": "t", "payload": {1: 2}}], "item 0: field 'payload' must be a map"),
        ([{"type": "t" * 65, "payload": {}}], "item 0: field 'type' must have at most 64"),
        ([{**good, "idempotency_key": 3}], "item 0: field 'idempotency_key'"),
        ([{**good, "signer": "me"}], "item 0: unknown field"),
        ([{**good, 5: 1}], "item 0: unknown field"),
    ]
    for items, text in bad:
        with pytest.raises(AdminError) as exc:
            check_params("submit_many", schema, {"items": items})
        assert exc.value.code == "bad_request" and text in exc.value.message, exc.value.message


def test_every_declared_operation_has_a_handler_and_one_declaration(tmp_path: Path) -> None:
    """Adding an operation is one declaration (hzp2p.admin.operations) and one handler."""
    from typing import Any, cast

    from hzp2p.admin.operations import OPERATIONS
    from hzp2p.admin.server import AdminServer
    from hzp2p.node.handlers import Handlers

    server = AdminServer(tmp_path / "admin.sock")
    Handlers(cast(Any, None)).register_all(server)
    assert server.methods == set(METHOD_PARAMS) == {op.method for op in OPERATIONS}
    for op in OPERATIONS:
        assert op.result, f"{op.method}: say what it answers"
        assert op.name == op.method.replace("_", "-")
