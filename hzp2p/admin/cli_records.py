"""`hzp2p admin record write`, `vaccinate`, `lab-result`: personal records from plain fields.

The fields (JSON, or `@FILE`) go to the institution's own daemon over its owner-only
admin socket; the daemon encrypts them under a fresh record key sealed to the subject
(her public key, `--subject-key`) and to the institution, and submits only the
ciphertext: the plaintext never leaves the node except sealed. One operation each
(declared here, served by the handler of the same name).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from hzp2p.admin.cli_common import PROG, Command, Usage, fmt
from hzp2p.admin.cli_keysign import (
    add_key_option,
    build_share,
    build_vaccination,
    relay_or_call,
    with_key,
)
from hzp2p.admin.cli_submit import (
    RECEIPT,
    PayloadError,
    payload_from_json,
    receipt_failure,
    render_receipt,
)
from hzp2p.admin.client import AdminTimeout, call_sync, open_admin_client
from hzp2p.admin.protocol import LOT, MAX_INT, WAIT, Param

_KEY = Param("subject_key", "hex", exact_len=64)
_FIELDS = Param("fields", "map")
_RID = Param("record_id", "str", required=False, pattern=r"[A-Za-z0-9._:\-]{1,64}",
             shown="a record id (1..64 of [A-Za-z0-9._:-])")
_TIME = Param("administered_ms", "int", required=False, min_value=0, max_value=MAX_INT)
RESULT = RECEIPT + ", record_id"


def _subject_key(text: str) -> str:
    try:
        ok = len(bytes.fromhex(text)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError("a subject key is her Ed25519 public key, 64 hex digits")
    return text.lower()


def _time_ms(text: str) -> int:
    if re.fullmatch(r"[0-9]{1,16}", text):
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ISO 8601 or epoch ms, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _fields(text: str) -> dict[str, Any]:
    raw = text
    if text.startswith("@"):
        try:
            raw = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Usage(f"--fields {text}: cannot read: {exc}") from None
    try:
        return payload_from_json(raw)
    except PayloadError as exc:
        raise Usage(f"--fields {exc}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subject-key", type=_subject_key, required=True,
                   help="the subject's public key (64 hex digits)")
    p.add_argument("--fields", metavar="JSON|@FILE",
                   help='the personal fields, e.g. {"name": "...", "id_card": "..."}')
    p.add_argument("--record-id", help="the record's id (default: generated)")


def _base(args: argparse.Namespace, need_fields: bool = True) -> dict[str, Any]:
    params: dict[str, Any] = {"subject_key": args.subject_key, "wait_s": args.wait}
    if args.fields is not None:
        params["fields"] = _fields(args.fields)
    elif need_fields:
        raise Usage("--fields is required")
    if args.record_id is not None:
        if not re.fullmatch(r"[A-Za-z0-9._:\-]{1,64}", args.record_id):
            raise Usage("--record-id must be 1..64 of [A-Za-z0-9._:-]")
        params["record_id"] = args.record_id
    return params


def _args_record(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("write",), metavar="write")
    p.add_argument("--type", dest="record_type", choices=("diagnosis", "lab_result"),
                   required=True, help="diagnosis (hospitals) or lab_result (labs)")
    _common(p)


def _args_vaccinate(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--lot", required=True)
    p.add_argument("--dose", type=int, required=True)
    p.add_argument("--when", type=_time_ms, help="administered at (default: now)")
    add_key_option(p)


def _params_vaccinate(args: argparse.Namespace) -> dict[str, Any]:
    params = {**_base(args), "lot": args.lot, "dose": args.dose}
    if args.when is not None:
        params["administered_ms"] = args.when
    return with_key(args, params, build_vaccination(params))


def _args_lab(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--test-id", required=True)
    p.add_argument("--result", choices=("positive", "negative"), required=True)
    p.add_argument("--sample-time", type=_time_ms, required=True, help="ISO 8601 or epoch ms")


def _params_lab(args: argparse.Namespace) -> dict[str, Any]:
    return {**_base(args, need_fields=False), "test_id": args.test_id, "result": args.result,
            "sample_ms": args.sample_time}


def _args_share(p: argparse.ArgumentParser) -> None:
    p.add_argument("record_id", metavar="RECORD")
    p.add_argument("--to", type=int, required=True, help="the grantee institution's id")
    p.add_argument("--grant", required=True, help="the subject's grant id")
    p.add_argument("--purpose", required=True, help="the grant's purpose, as granted")
    add_key_option(p)


def _params_share(args: argparse.Namespace) -> dict[str, Any]:
    params = {"record_id": args.record_id, "to": args.to, "grant_id": args.grant,
              "purpose": args.purpose, "wait_s": args.wait}
    return with_key(args, params, build_share(params))


def _args_emergency(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("fulfil",), metavar="fulfil")
    p.add_argument("record_id", metavar="RECORD")
    p.add_argument("--to", type=int, required=True, help="the requesting authority's id")


def _args_enc_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("status", "rotate"), metavar="status|rotate",
                   help="status: the key ids held and the records held; rotate: register a "
                        "new key, re-wrap the records held, forget the old keys")


def _params_enc_key(args: argparse.Namespace) -> dict[str, Any]:
    return {"action": args.action, "wait_s": args.wait}


def _render_enc_key(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    if "current_key_id" in result:
        return (f"current encryption key {fmt(result.get('current_key_id'))} "
                f"(held: {fmt(result.get('held_key_ids'))}); "
                f"{fmt(result.get('held_records'))} record(s) held, "
                f"{fmt(result.get('stale_records'))} not yet re-wrapped to it")
    line = render_receipt(result)
    if result.get("status") == "committed":
        line += (f"\nkey {fmt(result.get('previous_key_id'))} -> {fmt(result.get('key_id'))}: "
                 f"{fmt(result.get('rewrapped'))} record(s) re-wrapped, "
                 f"{fmt(result.get('failed'))} failed, {fmt(result.get('stale'))} left; "
                 f"forgotten keys: {fmt(result.get('forgotten'))}")
    return line


PROGRESS_S = 1.0
"""How often `enc-key rotate` asks how many records are left to re-wrap (shown on stderr)."""


def _call_enc_key(socket_path: Path, params: dict[str, Any], timeout_s: float) -> Any:
    """`status` is one call; `rotate` runs while a second request on the same connection
    asks every PROGRESS_S how many records are left, printing it to stderr when it
    changes (stdout keeps the final answer, plain or --json)."""
    if params["action"] != "rotate":
        return call_sync(socket_path, "enc_key", params, timeout_s=timeout_s)

    async def run() -> Any:
        result: Any = None
        with trio.move_on_after(timeout_s) as scope:
            async with open_admin_client(socket_path, connect_timeout_s=timeout_s) as client:
                first = await client.call("enc_key", {"action": "status"}, timeout_s=timeout_s)
                shown: Any = None

                async def progress() -> None:
                    nonlocal shown
                    while True:
                        await trio.sleep(PROGRESS_S)
                        st = await client.call("enc_key", {"action": "status"},
                                               timeout_s=timeout_s)
                        if st["current_key_id"] == first["current_key_id"]:
                            continue  # the new key is not registered yet
                        left = st["stale_records"]
                        if left != shown:
                            print(f"{PROG} enc-key rotate: key {st['current_key_id']} "
                                  f"registered; {left} of {first['held_records']} record(s) "
                                  "left to re-wrap", file=sys.stderr, flush=True)
                            shown = left

                # The call's own error (AdminError) is re-raised outside the nursery, as it
                # is, not wrapped in an ExceptionGroup.
                raised: Exception | None = None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(progress)
                    try:
                        result = await client.call("enc_key", params, timeout_s=timeout_s)
                    except Exception as exc:
                        raised = exc
                    nursery.cancel_scope.cancel()
                if raised is not None:
                    raise raised
                return result
        assert scope.cancelled_caught
        raise AdminTimeout(f"enc_key: no answer from the daemon within {timeout_s:g} s")

    return trio.run(run)


def _enc_key_failure(args: argparse.Namespace, result: Any) -> str | None:
    if args.action != "rotate":
        return None
    failure = receipt_failure(args, result)
    if failure is None and isinstance(result, Mapping) and result.get("stale"):
        return (f"{result['stale']} record(s) still sealed to an older key; the old keys "
                "were kept (run enc-key rotate again later)")
    return failure


_RECORD = Param("record_id", "str", pattern=r"[A-Za-z0-9._:\-]{1,64}", shown="a record id")
_TO = Param("to", "int", min_value=1, max_value=MAX_INT)

RECORD_COMMANDS: tuple[Command, ...] = (
    Command("share", "share", "hand a record key to a grantee under the subject's grant "
            "(done automatically when a grant commits, unless [ledger] auto_share = false)",
            _args_share, _params_share, render_receipt, receipt_failure, waits=True,
            call=relay_or_call("share"),
            wire=(_RECORD, _TO, Param("grant_id", "str", pattern=r"[A-Za-z0-9._:\-]{1,64}",
                                      shown="a grant id"),
                  Param("purpose", "str", max_len=128), WAIT), result=RECEIPT),
    Command("emergency", "emergency", "honour an authority's emergency request: emergency "
            "fulfil RECORD --to AUTHORITY", _args_emergency,
            lambda a: {"record_id": a.record_id, "to": a.to, "wait_s": a.wait},
            render_receipt, receipt_failure, waits=True, wire=(_RECORD, _TO, WAIT),
            result=RECEIPT),
    Command("record", "record", "write an encrypted record from plain fields: record write",
            _args_record, lambda a: {**_base(a), "record_type": a.record_type}, render_receipt,
            receipt_failure, waits=True,
            wire=(Param("record_type", "str", pattern="diagnosis|lab_result",
                        shown="diagnosis or lab_result"), _KEY, _FIELDS, _RID, WAIT),
            result=RESULT),
    Command("vaccinate", "vaccinate", "record a vaccination (personal fields encrypted here)",
            _args_vaccinate, _params_vaccinate, render_receipt, receipt_failure, waits=True,
            call=relay_or_call("vaccinate"),
            wire=(_KEY, _FIELDS, _RID, Param("lot", "str", pattern=LOT.pattern, shown=LOT.shown),
                  Param("dose", "int", min_value=1, max_value=100), _TIME, WAIT),
            result=RESULT),
    Command("lab-result", "lab_result", "report a test result (optional fields encrypted here)",
            _args_lab, _params_lab, render_receipt, receipt_failure, waits=True,
            wire=(_KEY, Param("fields", "map", required=False), _RID,
                  Param("test_id", "str", pattern=r"[A-Za-z0-9._:\-]{1,64}", shown="a test id"),
                  Param("result", "str", pattern="positive|negative", shown="positive|negative"),
                  Param("sample_ms", "int", min_value=0, max_value=MAX_INT), WAIT),
            result=RESULT),
    Command("enc-key", "enc_key", "the institution's encryption keys: enc-key status | "
            "enc-key rotate (new key on chain, records re-wrapped, old key files deleted)",
            _args_enc_key, _params_enc_key, _render_enc_key, _enc_key_failure, waits=True,
            call=_call_enc_key,
            wire=(Param("action", "str", pattern="status|rotate", shown="status or rotate"),
                  WAIT),
            result="status: current_key_id, held_key_ids, public_key, held_records, "
                   "stale_records; rotate: " + RECEIPT + ", key_id, previous_key_id, "
                   "public_key, rewrapped, failed, stale, forgotten [key ids]"),
)
