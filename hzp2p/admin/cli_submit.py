"""`hzp2p admin` submit commands: submit, submit-raw, submit-many, and the JSON payloads
and receipts they share.

It owns how an operator's input becomes submit requests: a --payload JSON object
(bytes written as {"$hex": ...} / {"$b64": ...}, see BYTES_IN_JSON in
hzp2p.admin.cli), a transaction signed elsewhere (hex), or a JSON-lines file of
{type, payload, idempotency_key?} records for `submit-many` (a day's
vaccinations from a hospital's system): every line is checked before anything
is sent, and bad lines are reported by line number (exit 2). The file's records
go out as `submit_many` requests (hzp2p.admin.client.AsyncAdminClient.submit_many),
and each receipt is reported with its line.

Fail fast, retry elsewhere (issue 22): a node that knows no leader answers a submit
within about an election timeout with `no_quorum` and the transaction it signed.
`submit`, `submit-raw` and `submit-many` take `--fallback CFG` (repeatable: other nodes' configs or
admin sockets) and then hand that same signed transaction (`submit_raw`, same hash,
never applied twice) to the fallbacks in turn, and to the first node again, until one
commits it or --wait runs out. `submit` never re-signs elsewhere: the transaction is
always the --config node's institution's — or, with `--key FILE`, signed here with that
key file and relayed as submit-raw (hzp2p.admin.cli_keysign: an institution without its
own daemon).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import itertools
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from hzp2p.admin.cli_common import DEFAULT_WAIT_S, Command, Usage, fmt, render_mapping
from hzp2p.admin.cli_keysign import SIGN, add_key_option, build_tx, relay_or_call, signed, with_key
from hzp2p.admin.client import AdminClientError, open_admin_client
from hzp2p.admin.protocol import (
    IDEM_KEY,
    MAX_SUBMIT_MANY,
    PAYLOAD,
    TX_TYPE,
    WAIT,
    AdminError,
    Param,
)
from hzp2p.config import ConfigError, load_config
from hzp2p.ledger.tx import MAX_TX_BYTES

MAX_FILE_ERRORS = 20
"""Bad lines listed before the rest are only counted."""
MAX_FILE_RECORDS = 1_000_000

def render_receipt(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    status, tx_hash = result.get("status"), fmt(result.get("tx_hash"))
    if status == "committed":
        line = f"committed {tx_hash} at height {fmt(result.get('height'))} index {fmt(result.get('index'))}"
    elif status == "rejected":
        line = f"rejected {tx_hash}: {fmt(result.get('reason'))}"
    else:
        line = f"{fmt(status)} {tx_hash}"
    problems = result.get("problems")
    if isinstance(problems, Mapping) and problems:
        line += "".join(f"\n  {fmt(k)}: {fmt(v)}" for k, v in problems.items())
    extra = {
        k: v
        for k, v in result.items()
        if k not in ("status", "tx_hash", "height", "index", "reason", "problems") and v is not None
    }
    return line + ("\n" + render_mapping(extra) if extra else "")


def receipt_failure(args: argparse.Namespace, result: Any) -> str | None:
    if not isinstance(result, Mapping):
        return None
    status = result.get("status")
    if status == "rejected":
        return f"rejected: {fmt(result.get('reason'))}"
    if status == "pending" and getattr(args, "wait", DEFAULT_WAIT_S) > 0:
        return (
            f"not committed within --wait {args.wait:g} s; "
            f"check later with `hzp2p admin tx {fmt(result.get('tx_hash'))}`"
        )
    return None



BYTES_TAGS = ("$hex", "$b64")
"""One-key JSON objects that stand for bytes in a --payload (see BYTES_IN_JSON above)."""


class PayloadError(ValueError):
    """A --payload that is not a JSON object, or holds a malformed bytes tag."""


MAX_JSON_DEPTH = 32
"""Nesting a payload may have (msgpack and the contracts need far less; Python's own
recursion limit would otherwise turn a deep document into a crash)."""


def _loads(text: str) -> Any:
    """json.loads, with a document nested too deeply for Python refused as such."""
    try:
        return json.loads(text)
    except RecursionError:
        raise PayloadError(f"is nested deeper than {MAX_JSON_DEPTH} levels") from None


def decode_bytes_tags(value: Any, path: str = "payload", depth: int = 0) -> Any:
    """`value` (parsed JSON) with every {"$hex": str} / {"$b64": str} replaced by its bytes;
    PayloadError naming the path of a malformed tag, or of a value nested too deeply."""
    if depth > MAX_JSON_DEPTH:
        raise PayloadError(f"is nested deeper than {MAX_JSON_DEPTH} levels (at {path})")
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, text),) = value.items()
            if isinstance(tag, str) and tag.startswith("$"):
                return _decode_tag(tag, text, f"{path}.{tag}")
        return {k: decode_bytes_tags(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_bytes_tags(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    return value


def _decode_tag(tag: str, text: Any, path: str) -> bytes:
    if tag not in BYTES_TAGS:
        raise PayloadError(
            f'has an unknown tag at {path}; write bytes as {{"$hex": ...}} or {{"$b64": ...}}'
        )
    if not isinstance(text, str):
        raise PayloadError(f"has a bad bytes tag at {path}: the value must be a string")
    try:
        if tag == "$hex":
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        kind = "hex" if tag == "$hex" else "standard base64 (with padding)"
        raise PayloadError(f"has a bad bytes tag at {path}: not valid {kind}") from None


def payload_from_json(text: str) -> dict[str, Any]:
    """A --payload: a JSON object, with bytes written as {"$hex": ...} or {"$b64": ...}."""
    try:
        payload = _loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"is not valid JSON: {exc}") from None
    decoded = decode_bytes_tags(payload) if isinstance(payload, dict) else None
    if not isinstance(decoded, dict):
        raise PayloadError("must be a JSON object")
    return decoded


def _args_submit(p: argparse.ArgumentParser) -> None:
    p.add_argument("tx_type", metavar="TYPE", help="transaction type, e.g. epi.report")
    p.add_argument(
        "--payload",
        required=True,
        metavar="JSON",
        help=(
            'the payload as a JSON object; write bytes fields (keys, signatures, ciphertexts) '
            'as {"$hex": "..."} or {"$b64": "..."}, e.g. '
            '{"sensor_id": "S1", "verify_key": {"$hex": "8f3a..."}}'
        ),
    )
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="retries with the same key yield the same transaction (applied once)",
    )
    _args_fallback(p)
    add_key_option(p)


def _args_fallback(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fallback",
        action="append",
        default=[],
        metavar="CFG",
        help=(
            "another node's config.toml (or admin socket), repeatable: if a node answers "
            "no_quorum, the same signed transaction is handed to these in turn within --wait"
        ),
    )


def _fallback_sockets(args: argparse.Namespace) -> list[str]:
    out = []
    for text in getattr(args, "fallback", None) or []:
        path = Path(text)
        if path.suffix != ".toml":
            out.append(str(path))
            continue
        try:
            out.append(str(load_config(path).admin.socket))
        except ConfigError as exc:
            raise Usage(f"--fallback {text}: {exc}") from None
    return out


def _params_submit(args: argparse.Namespace) -> dict[str, Any]:
    try:
        payload = payload_from_json(args.payload)
    except PayloadError as exc:
        raise Usage(f"--payload {exc}") from None
    if not args.tx_type or len(args.tx_type) > 64:
        raise Usage("TYPE must be a non-empty name of at most 64 characters")
    params: dict[str, Any] = {"type": args.tx_type, "payload": payload, "wait_s": args.wait}
    if args.idempotency_key is not None:
        if not args.idempotency_key or len(args.idempotency_key) > 128:
            raise Usage("--idempotency-key must be 1..128 characters")
        params["idempotency_key"] = args.idempotency_key
    params["_fallbacks"] = _fallback_sockets(args)
    if args.key is not None and args.idempotency_key is not None:
        raise Usage("--idempotency-key is the node's; with --key, resubmit the same signed tx")
    return with_key(args, params, build_tx(args.tx_type, payload))



def _args_readings(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("submit",), metavar="submit")
    p.add_argument("--file", required=True, metavar="FILE|-",
                   help="a payload from `hzp2p sensor sign` (JSON; - for stdin)")
    add_key_option(p)


def _params_readings(args: argparse.Namespace) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Usage(f"cannot read --file {args.file}: {exc}") from None
    try:
        payload = payload_from_json(text)
    except PayloadError as exc:
        raise Usage(f"--file {exc}") from None
    return with_key(args, {"payload": payload, "wait_s": args.wait},
                    build_tx("coldchain.readings", payload))


def _args_submit_raw(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "tx_hex",
        metavar="TXHEX",
        help="the signed transaction's encoding as hex, or - to read it from stdin",
    )
    _args_fallback(p)


def _params_submit_raw(args: argparse.Namespace) -> dict[str, Any]:
    text = str(args.tx_hex)
    if text == "-":
        text = sys.stdin.read()
    text = "".join(text.split()).lower()
    if not text:
        raise Usage("TXHEX is empty")
    try:
        bytes.fromhex(text)
    except ValueError:
        raise Usage("TXHEX must be a hex string (an encoded, signed transaction)") from None
    if len(text) > 2 * MAX_TX_BYTES:
        raise Usage(f"TXHEX encodes more than {MAX_TX_BYTES} bytes, the transaction size limit")
    return {"tx": text, "wait_s": args.wait, "_fallbacks": _fallback_sockets(args)}


async def _submit_with_fallbacks(
    first: str, method: str, params: dict[str, Any], fallbacks: list[str], timeout_s: float
) -> Any:
    """`method` on `first`; on no_quorum (or, for an already signed transaction, an
    unreachable node) the same transaction goes to the fallbacks in turn within the wait."""
    deadline = trio.current_time() + float(params["wait_s"])
    nodes = [first, *fallbacks]
    order = itertools.cycle(nodes)
    for attempt in itertools.count(1):
        node = next(order)
        try:
            async with open_admin_client(node, connect_timeout_s=timeout_s) as client:
                return await client.call(method, params, timeout_s=timeout_s)
        except AdminError as exc:
            if exc.code != "no_quorum" or not fallbacks:
                raise
            if exc.retry_tx is not None:
                method, params = "submit_raw", {"tx": exc.retry_tx, "wait_s": params["wait_s"]}
            elif method == "submit":
                raise  # nothing signed to hand on
            last: Exception = exc
        except AdminClientError as exc:
            if method == "submit" or not fallbacks:
                raise  # `submit` is signed by that node only: nothing to hand on
            last = exc
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            raise last
        params = {**params, "wait_s": remaining}
        if attempt % len(nodes) == 0:  # every node refused: give the cluster a moment
            await trio.sleep(min(0.2, remaining))
    raise AssertionError("unreachable")


def _call_with_fallbacks(method: str) -> Any:
    def call(socket_path: Path, params: dict[str, Any], timeout_s: float) -> Any:
        fallbacks = list(params.pop("_fallbacks", []))
        if SIGN in params:  # --key: signed here, relayed as a transaction signed elsewhere
            raw, _ = signed(params, socket_path, timeout_s)
            return trio.run(_submit_with_fallbacks, str(socket_path), "submit_raw", raw,
                            fallbacks, timeout_s)
        return trio.run(_submit_with_fallbacks, str(socket_path), method, params, fallbacks,
                        timeout_s)

    return call




# ---------------------------------------------------------------------------
# submit-many


def _args_submit_many(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--file",
        required=True,
        metavar="FILE",
        help=(
            "JSON lines, one record per line: "
            '{"type": "vaccination.record", "payload": {...}, "idempotency_key": "..."} '
            "(idempotency_key optional; bytes as {\"$hex\": ...}); blank lines are skipped; "
            "- reads stdin"
        ),
    )
    p.add_argument(
        "--batch",
        type=int,
        default=500,
        metavar="N",
        help=f"records per request (1..{MAX_SUBMIT_MANY}, default 500)",
    )
    _args_fallback(p)


_RECORD_FIELDS = ("type", "payload", "idempotency_key")


def parse_record(text: str) -> dict[str, Any]:
    """One line of a submit-many file as a submit_many item; Usage says what is wrong."""
    try:
        obj = _loads(text)
    except json.JSONDecodeError as exc:
        raise Usage(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except PayloadError as exc:
        raise Usage(f"payload {exc}") from None
    if not isinstance(obj, dict):
        raise Usage("must be a JSON object with type and payload")
    unknown = sorted(set(obj) - set(_RECORD_FIELDS))
    if unknown:
        raise Usage(f"unknown fields {', '.join(unknown)}; a record has {', '.join(_RECORD_FIELDS)}")
    tx_type = obj.get("type")
    if not isinstance(tx_type, str) or not 0 < len(tx_type) <= 64:
        raise Usage("type must be a non-empty name of at most 64 characters")
    if "payload" not in obj:
        raise Usage("missing payload")
    try:
        payload = decode_bytes_tags(obj["payload"]) if isinstance(obj["payload"], dict) else None
    except PayloadError as exc:
        raise Usage(f"payload {exc}") from None
    if not isinstance(payload, dict):
        raise Usage("payload must be a JSON object")
    item: dict[str, Any] = {"type": tx_type, "payload": payload}
    key = obj.get("idempotency_key")
    if key is not None:
        if not isinstance(key, str) or not 0 < len(key) <= 128:
            raise Usage("idempotency_key must be a string of 1..128 characters")
        item["idempotency_key"] = key
    return item


MAX_RECORD_CHARS = 4 * MAX_TX_BYTES
"""A line longer than this cannot become a transaction (JSON needs at most ~4 characters
per payload byte, e.g. "$hex" tags take 2)."""


def read_records(path: str) -> tuple[list[dict[str, Any]], list[int]]:
    """(items, their line numbers) from a JSON-lines file; Usage lists every bad line."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise Usage(f"cannot read --file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise Usage(f"--file {path} is not UTF-8 text") from None
    items: list[dict[str, Any]] = []
    lines: list[int] = []
    errors: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_CHARS:  # characters >= bytes / 4: checked before parsing
            errors.append(f"line {n}: longer than {MAX_RECORD_CHARS} characters (a transaction "
                          f"is at most {MAX_TX_BYTES} bytes)")
            continue
        try:
            items.append(parse_record(line))
            lines.append(n)
        except Usage as exc:
            errors.append(f"line {n}: {exc}")
    if errors:
        shown = errors[:MAX_FILE_ERRORS]
        more = len(errors) - len(shown)
        tail = f"\n  ... and {more} more bad lines" if more else ""
        raise Usage(
            f"--file {path}: {len(errors)} bad line(s), nothing was sent:\n  "
            + "\n  ".join(shown) + tail
        )
    if not items:
        raise Usage(f"--file {path} holds no records")
    if len(items) > MAX_FILE_RECORDS:
        raise Usage(f"--file {path} holds more than {MAX_FILE_RECORDS} records; split it")
    return items, lines


def _params_submit_many(args: argparse.Namespace) -> dict[str, Any]:
    if not 1 <= args.batch <= MAX_SUBMIT_MANY:
        raise Usage(f"--batch must be 1..{MAX_SUBMIT_MANY}")
    items, lines = read_records(str(args.file))
    return {"items": items, "lines": lines, "wait_s": args.wait, "batch": args.batch,
            "_fallbacks": _fallback_sockets(args)}


def _call_submit_many(socket_path: Path, params: dict[str, Any], timeout_s: float) -> Any:
    fallbacks = list(params.pop("_fallbacks", []))

    async def go() -> list[dict[str, Any]]:
        deadline = trio.current_time() + float(params["wait_s"])
        async with open_admin_client(socket_path, connect_timeout_s=timeout_s) as client:
            receipts: list[dict[str, Any]] = await client.submit_many(
                params["items"], wait_s=params["wait_s"], batch=params["batch"],
                timeout_s=timeout_s,
            )
        # The node found no quorum reachable (issue 22): the transactions it signed and
        # could not get committed go, as they are, to the fallbacks within --wait.
        for i, r in enumerate(receipts):
            remaining = deadline - trio.current_time()
            if not (fallbacks and r.get("no_quorum") and r.get("retry_tx")) or remaining <= 0:
                continue
            try:
                receipts[i] = await _submit_with_fallbacks(
                    fallbacks[0], "submit_raw", {"tx": r["retry_tx"], "wait_s": remaining},
                    [*fallbacks[1:], str(socket_path)], timeout_s)
            except (AdminError, AdminClientError):
                continue  # it stays pending, with the node's words
        return receipts

    receipts = trio.run(go)
    counts = {"committed": 0, "rejected": 0, "pending": 0}
    out = []
    for line, r in zip(params["lines"], receipts, strict=True):
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
        out.append({"line": line, **r})
    return {**counts, "receipts": out}


def _render_submit_many(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    lines = [
        f"{fmt(result.get('committed'))} committed, {fmt(result.get('rejected'))} rejected, "
        f"{fmt(result.get('pending'))} pending"
    ]
    for r in result.get("receipts") or []:
        if isinstance(r, Mapping) and r.get("status") != "committed":
            what = (f": {fmt(r.get('reason'))}"
                    if r.get("status") == "rejected" or r.get("no_quorum") else "")
            lines.append(f"line {fmt(r.get('line'))}: {fmt(r.get('status'))} "
                         f"{fmt(r.get('tx_hash'))}{what}")
    return "\n".join(lines)


def _submit_many_failure(args: argparse.Namespace, result: Any) -> str | None:
    if not isinstance(result, Mapping):
        return None
    rejected, pending = result.get("rejected", 0), result.get("pending", 0)
    if rejected or (pending and args.wait > 0):
        return (f"{rejected} record(s) rejected, {pending} not committed within --wait "
                f"{args.wait:g} s (see the lines above)")
    return None


RECEIPT = ("tx_hash, status (committed|rejected|pending), height, index, reason, and for a "
           "refusal problems (field -> reason)")

SUBMIT_COMMANDS: tuple[Command, ...] = (
    Command("submit", "submit", "sign and submit a transaction", _args_submit, _params_submit,
            render_receipt, receipt_failure, waits=True, call=_call_with_fallbacks("submit"),
            wire=(TX_TYPE, PAYLOAD, WAIT, IDEM_KEY), result=RECEIPT),
    # A sensor's signed batch (`hzp2p sensor sign`), submitted as this node's institution.
    Command("readings", "readings", "submit a signed readings batch: readings submit --file F",
            _args_readings, _params_readings, render_receipt, receipt_failure, waits=True,
            call=relay_or_call("readings"), wire=(PAYLOAD, WAIT), result=RECEIPT),
    # A transaction signed elsewhere (citizen apps, other institutions' tools), as hex of its
    # encoding; 2 hex digits per byte of hzp2p.ledger.tx.MAX_TX_BYTES.
    Command("submit-raw", "submit_raw", "submit a transaction signed elsewhere (hex)",
            _args_submit_raw, _params_submit_raw, render_receipt, receipt_failure, waits=True,
            call=_call_with_fallbacks("submit_raw"),
            wire=(Param("tx", "hex", max_len=2 * MAX_TX_BYTES), WAIT), result=RECEIPT),
    # Many submits in one request: each item is signed, pre-checked and answered as `submit`
    # would, one receipt per item in order; a malformed item refuses the whole request.
    Command("submit-many", "submit_many",
            "sign and submit every record of a JSON-lines file (one receipt per line)",
            _args_submit_many, _params_submit_many, _render_submit_many, _submit_many_failure,
            waits=True, call=_call_submit_many,
            wire=(Param("items", "map_list", max_len=MAX_SUBMIT_MANY,
                        items=(TX_TYPE, PAYLOAD, IDEM_KEY)), WAIT),
            result="receipts: [receipt, one per item, in order], committed, rejected, pending"),
)
