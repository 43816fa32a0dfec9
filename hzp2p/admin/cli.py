"""`hzp2p admin`: the operator's command for a running daemon, spoken over its admin socket.

It owns argument parsing, the mapping of each subcommand to one admin method,
and output (human-readable by default, JSON with --json). Exit status: 0 ok,
1 the operation failed (one-line reason on stderr), 2 wrong usage (including
a bad config file).

    hzp2p admin --config CFG [--socket PATH] [--json] [--timeout S] SUBCOMMAND ...

Admin methods (the daemon registers one handler per method; params are checked
against hzp2p.admin.protocol.METHOD_PARAMS before the handler runs; "lin" is
the optional `linearizable: bool` param — read through ReadIndex when true):

  status            {} -> {node_id, role: leader|follower|candidate|learner, term,
                    leader_id: int|None, commit_index, applied_index, height, peers: [node_id]}
                    (peers: ids of the peers currently connected)
  peers             {} -> {peers: [{node_id, address, role: voter|learner, connected: bool,
                    match_index: int|None}]}
  members           {lin} -> {members: [{inst_id, name, roles: [str], voter: bool, active: bool,
                    address, signing_key: hex, node_key: hex}]}
  block             {height: int >= 0, lin} -> {height, hash, prev_hash, merkle_root, proposer,
                    timestamp, txs: [{tx_hash, type, status}]}; not_found if absent
  tx                {tx_hash: hex, lin} -> {tx_hash, status: committed|rejected|pending, height,
                    index, type, reason}; not_found if unknown
  verify            {integrity: bool} -> {ok: bool, height, blocks_checked,
                    first_bad_height: int|None, reason: str|None, from_height: int,
                    snapshot_height: int|None}  (a node that installed a snapshot
                    verifies it and blocks snapshot_height+1..height from its tip)
                    (integrity: also re-check the stored state against the chain)
  metrics           {} -> {text: Prometheus text exposition}
  submit            {type: str, payload: map, wait_s: float >= 0, idempotency_key?: str}
                    -> {tx_hash, status: committed|rejected|pending, height: int|None,
                    index: int|None, reason: str|None}; signs with this node's institution
                    key, forwards to the leader, waits up to wait_s for the receipt. The same
                    (type, payload, idempotency_key) submitted again to this node must yield
                    the same tx_hash (the daemon derives the nonce from the key, or from the
                    payload when none is given), so a retry is never applied twice.
  transfer_leader   {node_id: int} -> {target: node_id} (transfer started)
  add_learner       {name, roles: [str], signing_key: hex, node_key: hex, address: "host:port",
                    wait_s} -> receipt as for submit, plus node_id: int|None (the id assigned)
  promote           {node_id, wait_s} -> receipt as for submit (learner becomes voter)
  remove            {node_id, wait_s} -> receipt as for submit
  subject_records   {subject: str, lin} -> {subject, records: [{tx_hash, type, height, ...}]}
  lot_history       {lot: str, lin} -> {lot, events: [{tx_hash, type, height, ...}]}
  access_log        {subject: str, lin} -> {subject, entries: [{tx_hash, grantee, purpose,
                    height, ...}]}
  submit_raw        {tx: hex, wait_s} -> receipt as for submit; a transaction signed
                    elsewhere (a citizen's app, another institution's tool), as the hex of
                    its encoding (hzp2p.ledger.tx), forwarded to the leader like submit
  state_scan        {prefix: hex | "-", limit?: int >= 1} -> {items: [[key_hex, value_hex]]}
                    raw committed state under a key prefix ("-": everything), at most
                    10,000 rows (fewer with limit)

Exit 1 also when: submit/membership receipts say rejected (or pending after a
non-zero --wait), verify reports ok=false, or the daemon answers with an error.

Bytes in `submit --payload JSON` (BYTES_IN_JSON): JSON has no bytes, but many
contracts require bytes fields (keys, signatures, ciphertexts: e.g.
sensor.register's verify_key). Anywhere in the payload, an object with exactly
one key "$hex" or "$b64" and a string value stands for bytes:
    {"$hex": "<hex digits>"}          e.g. {"verify_key": {"$hex": "8f3a..."}}
    {"$b64": "<standard base64>"}     e.g. {"signature": {"$b64": "q83v..."}}
The CLI decodes them (payload_from_json) before sending, so the daemon signs
real bytes (the admin socket speaks msgpack, which carries bytes natively). A
malformed tag, or any other one-key object whose key starts with "$", is a
usage error (exit 2). Output (--json) shows bytes as plain hex strings.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hzp2p.admin.client import DEFAULT_TIMEOUT_S, AdminClientError, call_sync
from hzp2p.admin.protocol import AdminError
from hzp2p.contracts.api import ROLES
from hzp2p.ledger.tx import MAX_TX_BYTES
from hzp2p.node.config import ConfigError, load_config, parse_host_port

DEFAULT_WAIT_S = 10.0
WAIT_MARGIN_S = 5.0
"""Extra client time beyond --wait, so the daemon's own answer arrives first."""
PROG = "hzp2p admin"


class _Usage(Exception):
    """Wrong usage found after parsing (exit 2)."""


# ---------------------------------------------------------------------------
# argparse value types (argparse turns their errors into exit status 2)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _node_id(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("node ids are positive integers")
    return value


def _seconds(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _timeout(text: str) -> float:
    return _seconds(text, allow_zero=False)


def _wait(text: str) -> float:
    return _seconds(text, allow_zero=True)


def _hex(text: str) -> str:
    try:
        bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a hex string, got {text!r}") from None
    if not text or len(text) > 128:
        raise argparse.ArgumentTypeError("expected a hex string of 2..128 digits")
    return text.lower()


# ---------------------------------------------------------------------------
# Commands


@dataclass(frozen=True)
class _Command:
    name: str
    method: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    params: Callable[[argparse.Namespace], dict[str, Any]]
    render: Callable[[Any], str]
    failure: Callable[[argparse.Namespace, Any], str | None] = lambda _a, _r: None
    """A one-line reason when the result means the operation failed (exit 1)."""
    reads: bool = False
    waits: bool = False


def _no_args(_p: argparse.ArgumentParser) -> None:
    pass


def _no_params(_a: argparse.Namespace) -> dict[str, Any]:
    return {}


def _with_read(params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "linearizable", False):
        params["linearizable"] = True
    return params


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value) or "-"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _render_mapping(result: Any, skip: tuple[str, ...] = ()) -> str:
    if not isinstance(result, Mapping):
        return _fmt(result)
    lines = []
    for key, value in result.items():
        if key in skip:
            continue
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{key}:")
            lines.extend(f"  {_row(v)}" for v in value)
        else:
            lines.append(f"{key}: {_fmt(value)}")
    return "\n".join(lines)


def _row(item: Mapping[str, Any]) -> str:
    return "  ".join(f"{k}={_fmt(v)}" for k, v in item.items())


def _render_list(key: str, empty: str) -> Callable[[Any], str]:
    def render(result: Any) -> str:
        items = result.get(key) if isinstance(result, Mapping) else None
        if not items:
            return empty
        head = _render_mapping(result, skip=(key,))
        body = "\n".join(_row(i) if isinstance(i, Mapping) else _fmt(i) for i in items)
        return f"{head}\n{body}" if head else body

    return render


def _render_block(result: Any) -> str:
    if not isinstance(result, Mapping):
        return _fmt(result)
    head = _render_mapping(result, skip=("txs",))
    txs = result.get("txs") or []
    lines = [head, f"txs: {len(txs)}"]
    for tx in txs:
        if isinstance(tx, Mapping):
            lines.append(f"  {_fmt(tx.get('tx_hash'))}  {_fmt(tx.get('type'))}  {_fmt(tx.get('status'))}")
    return "\n".join(lines)


def _render_receipt(result: Any) -> str:
    if not isinstance(result, Mapping):
        return _fmt(result)
    status, tx_hash = result.get("status"), _fmt(result.get("tx_hash"))
    if status == "committed":
        line = f"committed {tx_hash} at height {_fmt(result.get('height'))} index {_fmt(result.get('index'))}"
    elif status == "rejected":
        line = f"rejected {tx_hash}: {_fmt(result.get('reason'))}"
    else:
        line = f"{_fmt(status)} {tx_hash}"
    extra = {
        k: v
        for k, v in result.items()
        if k not in ("status", "tx_hash", "height", "index", "reason") and v is not None
    }
    return line + ("\n" + _render_mapping(extra) if extra else "")


def _receipt_failure(args: argparse.Namespace, result: Any) -> str | None:
    if not isinstance(result, Mapping):
        return None
    status = result.get("status")
    if status == "rejected":
        return f"rejected: {_fmt(result.get('reason'))}"
    if status == "pending" and getattr(args, "wait", DEFAULT_WAIT_S) > 0:
        return (
            f"not committed within --wait {args.wait:g} s; "
            f"check later with `hzp2p admin tx {_fmt(result.get('tx_hash'))}`"
        )
    return None


def _render_verify(result: Any) -> str:
    if not isinstance(result, Mapping):
        return _fmt(result)
    snap = result.get("snapshot_height")
    if result.get("ok"):
        if snap is not None and snap == result.get("height"):
            return (
                f"chain OK: the snapshot at height {_fmt(snap)} verified (state digest "
                "checked); no blocks after it yet, earlier blocks are not stored on this node"
            )
        if snap is not None:
            return (
                f"chain OK: verified blocks {_fmt(result.get('from_height'))}.."
                f"{_fmt(result.get('height'))} from the snapshot at height {_fmt(snap)} "
                "(state digest checked); earlier blocks are not stored on this node"
            )
        return (
            f"chain OK: {_fmt(result.get('blocks_checked'))} blocks verified "
            f"up to height {_fmt(result.get('height'))}"
        )
    where = f" (verifying from the snapshot at height {_fmt(snap)})" if snap is not None else ""
    return (
        f"chain FAULT at height {_fmt(result.get('first_bad_height'))}: "
        f"{_fmt(result.get('reason'))}{where}"
    )


def _verify_failure(_args: argparse.Namespace, result: Any) -> str | None:
    if isinstance(result, Mapping) and result.get("ok") is True:
        return None
    first_bad = result.get("first_bad_height") if isinstance(result, Mapping) else None
    reason = result.get("reason") if isinstance(result, Mapping) else None
    return f"chain verification failed at height {_fmt(first_bad)}: {_fmt(reason)}"


def _render_metrics(result: Any) -> str:
    if isinstance(result, Mapping) and isinstance(result.get("text"), str):
        return str(result["text"]).rstrip("\n")
    return _fmt(result)


def _render_status(result: Any) -> str:
    return _render_mapping(result)


# -- per-command arguments and params ---------------------------------------


def _args_block(p: argparse.ArgumentParser) -> None:
    p.add_argument("height", type=_non_negative_int, metavar="HEIGHT")


def _args_tx(p: argparse.ArgumentParser) -> None:
    p.add_argument("tx_hash", type=_hex, metavar="HASH")


def _args_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--integrity", action="store_true", help="also re-check stored state against the chain"
    )


BYTES_TAGS = ("$hex", "$b64")
"""One-key JSON objects that stand for bytes in a --payload (see BYTES_IN_JSON above)."""


class PayloadError(ValueError):
    """A --payload that is not a JSON object, or holds a malformed bytes tag."""


def decode_bytes_tags(value: Any, path: str = "payload") -> Any:
    """`value` (parsed JSON) with every {"$hex": str} / {"$b64": str} replaced by its bytes;
    PayloadError naming the path of a malformed tag."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, text),) = value.items()
            if isinstance(tag, str) and tag.startswith("$"):
                return _decode_tag(tag, text, f"{path}.{tag}")
        return {k: decode_bytes_tags(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [decode_bytes_tags(v, f"{path}[{i}]") for i, v in enumerate(value)]
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
        payload = json.loads(text)
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


def _params_submit(args: argparse.Namespace) -> dict[str, Any]:
    try:
        payload = payload_from_json(args.payload)
    except PayloadError as exc:
        raise _Usage(f"--payload {exc}") from None
    if not args.tx_type or len(args.tx_type) > 64:
        raise _Usage("TYPE must be a non-empty name of at most 64 characters")
    params: dict[str, Any] = {"type": args.tx_type, "payload": payload, "wait_s": args.wait}
    if args.idempotency_key is not None:
        if not args.idempotency_key or len(args.idempotency_key) > 128:
            raise _Usage("--idempotency-key must be 1..128 characters")
        params["idempotency_key"] = args.idempotency_key
    return params


def _args_node(p: argparse.ArgumentParser) -> None:
    p.add_argument("node_id", type=_node_id, metavar="NODE")


def _params_node(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"node_id": args.node_id}
    if hasattr(args, "wait"):
        params["wait_s"] = args.wait
    return params


def _args_add_learner(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", type=Path, help="TOML or JSON file with the fields below")
    p.add_argument("--name", help="the institution's name")
    p.add_argument("--roles", help=f"comma-separated roles from: {', '.join(sorted(ROLES))}")
    p.add_argument("--signing-key", help="its signing (verify) key, 64 hex digits")
    p.add_argument("--node-key", help="its daemon's transport (verify) key, 64 hex digits")
    p.add_argument("--address", help="its daemon's host:port")


_LEARNER_FIELDS = ("name", "roles", "signing_key", "node_key", "address")


def _params_add_learner(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.file is not None:
        fields.update(_read_learner_file(args.file))
    for key in _LEARNER_FIELDS:
        value = getattr(args, key)
        if value is not None:
            fields[key] = value
    missing = [k for k in _LEARNER_FIELDS if k not in fields]
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise _Usage(f"add-learner needs {flags} (or a --file with them)")
    name = fields["name"]
    if not isinstance(name, str) or not name.strip():
        raise _Usage("--name must be a non-empty string")
    roles = fields["roles"]
    if isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",") if r.strip()]
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise _Usage("--roles must name at least one role")
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise _Usage(f"unknown roles {', '.join(unknown)}; known: {', '.join(sorted(ROLES))}")
    for key in ("signing_key", "node_key"):
        value = fields[key]
        try:
            ok = isinstance(value, str) and len(bytes.fromhex(value)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise _Usage(f"--{key.replace('_', '-')} must be a public key of 64 hex digits")
    address = fields["address"]
    try:
        parse_host_port(address)
    except ValueError as exc:
        raise _Usage(f"--address {exc}") from None
    return {
        "name": name.strip(),
        "roles": sorted(set(roles)),
        "signing_key": str(fields["signing_key"]).lower(),
        "node_key": str(fields["node_key"]).lower(),
        "address": address,
        "wait_s": args.wait,
    }


def _read_learner_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _Usage(f"cannot read --file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _Usage(f"--file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise _Usage(f"--file {path} must hold a table/object")
    unknown = sorted(set(data) - set(_LEARNER_FIELDS))
    if unknown:
        raise _Usage(f"--file {path}: unknown fields {', '.join(unknown)}")
    return data


def _args_submit_raw(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "tx_hex",
        metavar="TXHEX",
        help="the signed transaction's encoding as hex, or - to read it from stdin",
    )


def _params_submit_raw(args: argparse.Namespace) -> dict[str, Any]:
    text = str(args.tx_hex)
    if text == "-":
        text = sys.stdin.read()
    text = "".join(text.split()).lower()
    if not text:
        raise _Usage("TXHEX is empty")
    try:
        bytes.fromhex(text)
    except ValueError:
        raise _Usage("TXHEX must be a hex string (an encoded, signed transaction)") from None
    if len(text) > 2 * MAX_TX_BYTES:
        raise _Usage(f"TXHEX encodes more than {MAX_TX_BYTES} bytes, the transaction size limit")
    return {"tx": text, "wait_s": args.wait}


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got 0")
    return value


def _args_state_scan(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix", metavar="PREFIX", help="a hex key prefix, or - for all state")
    p.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="at most N rows (the daemon answers at most 10,000)",
    )


def _params_state_scan(args: argparse.Namespace) -> dict[str, Any]:
    prefix = str(args.prefix)
    if prefix != "-":
        try:
            bytes.fromhex(prefix)
        except ValueError:
            raise _Usage("PREFIX must be hex (an even number of hex digits) or -") from None
        if not prefix or len(prefix) > 1024:
            raise _Usage("PREFIX must be 2..1024 hex digits (or -)")
        prefix = prefix.lower()
    params: dict[str, Any] = {"prefix": prefix}
    if args.limit is not None:
        params["limit"] = args.limit
    return params


def _render_state_scan(result: Any) -> str:
    items = result.get("items") if isinstance(result, Mapping) else None
    if not isinstance(items, list):
        return _fmt(result)
    if not items:
        return "no state under this prefix"
    return "\n".join(
        f"{_fmt(i[0])}  {_fmt(i[1])}" if isinstance(i, list | tuple) and len(i) == 2 else _fmt(i)
        for i in items
    )


def _args_subject(p: argparse.ArgumentParser) -> None:
    p.add_argument("subject", metavar="SUBJECT", help="the subject's pseudonym")


def _args_lot(p: argparse.ArgumentParser) -> None:
    p.add_argument("lot", metavar="LOT", help="the lot id")


COMMANDS: tuple[_Command, ...] = (
    _Command("status", "status", "this node's Raft and chain position", _no_args, _no_params, _render_status),
    _Command("peers", "peers", "known peers and their connection state", _no_args, _no_params, _render_list("peers", "no peers")),
    _Command("members", "members", "consortium members", _no_args, _no_params, _render_list("members", "no members"), reads=True),
    _Command("block", "block", "one block by height", _args_block, lambda a: {"height": a.height}, _render_block, reads=True),
    _Command("tx", "tx", "a transaction's receipt by hash", _args_tx, lambda a: {"tx_hash": a.tx_hash}, _render_mapping, reads=True),
    _Command("verify", "verify", "re-verify the local chain (from its snapshot if it caught up by one)", _args_verify, lambda a: {"integrity": a.integrity}, _render_verify, _verify_failure),
    _Command("metrics", "metrics", "metrics in Prometheus text format", _no_args, _no_params, _render_metrics),
    _Command("submit", "submit", "sign and submit a transaction", _args_submit, _params_submit, _render_receipt, _receipt_failure, waits=True),
    _Command("transfer-leader", "transfer_leader", "hand leadership to NODE", _args_node, _params_node, _render_mapping),
    _Command("add-learner", "add_learner", "propose admitting an institution as a learner", _args_add_learner, _params_add_learner, _render_receipt, _receipt_failure, waits=True),
    _Command("promote", "promote", "make learner NODE a voter", _args_node, _params_node, _render_receipt, _receipt_failure, waits=True),
    _Command("remove", "remove", "remove NODE from the consortium", _args_node, _params_node, _render_receipt, _receipt_failure, waits=True),
    _Command("subject-records", "subject_records", "a subject's records", _args_subject, lambda a: {"subject": a.subject}, _render_list("records", "no records"), reads=True),
    _Command("lot-history", "lot_history", "a lot's custody and quality history", _args_lot, lambda a: {"lot": a.lot}, _render_list("events", "no events"), reads=True),
    _Command("access-log", "access_log", "who read a subject's records, and why", _args_subject, lambda a: {"subject": a.subject}, _render_list("entries", "no accesses"), reads=True),
    _Command("submit-raw", "submit_raw", "submit a transaction signed elsewhere (hex)", _args_submit_raw, _params_submit_raw, _render_receipt, _receipt_failure, waits=True),
    _Command("state-scan", "state_scan", "raw committed state under a hex key prefix", _args_state_scan, _params_state_scan, _render_state_scan),
)


# ---------------------------------------------------------------------------
# Parser and runner


def _common_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before or after the subcommand; the subcommand's copy only overrides when given.
    dflt: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--config", type=Path, metavar="CFG", help="the node's config.toml", **dflt)
    p.add_argument("--socket", type=Path, metavar="PATH", help="admin socket (overrides --config)", **dflt)
    p.add_argument("--json", action="store_true", help="machine-readable output", **dflt)
    p.add_argument(
        "--timeout",
        type=_timeout,
        metavar="S",
        help=f"seconds to wait for the daemon (default {DEFAULT_TIMEOUT_S:g})",
        **({"default": DEFAULT_TIMEOUT_S} if top else dflt),
    )


def register(subparsers: Any) -> None:
    """Add `admin` and its subcommands to the `hzp2p` parser."""
    admin = subparsers.add_parser(
        "admin", help="talk to a running daemon over its admin socket", description=(__doc__ or "").split("\n\n")[0]
    )
    _common_options(admin, top=True)
    admin.set_defaults(func=_missing_subcommand(admin))
    sub = admin.add_subparsers(dest="admin_command", metavar="SUBCOMMAND", parser_class=type(admin))
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        _common_options(p, top=False)
        cmd.add_args(p)
        if cmd.reads:
            p.add_argument(
                "--linearizable", action="store_true", help="read through the leader (ReadIndex)"
            )
        if cmd.waits:
            p.add_argument(
                "--wait",
                type=_wait,
                default=DEFAULT_WAIT_S,
                metavar="SECONDS",
                help=f"wait this long for the receipt (default {DEFAULT_WAIT_S:g}; 0: do not wait)",
            )
        p.set_defaults(func=_runner(cmd))


def _missing_subcommand(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a SUBCOMMAND is required", file=sys.stderr)
        return 2

    return run


def _runner(cmd: _Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return run_command(cmd, args)

    return run


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    if args.config is None:
        raise _Usage("--config CFG (or --socket PATH) is required")
    try:
        return load_config(args.config).admin.socket
    except ConfigError as exc:
        raise _Usage(str(exc)) from None


def run_command(cmd: _Command, args: argparse.Namespace) -> int:
    """Run one admin subcommand; returns the exit status."""
    try:
        socket_path = _socket_path(args)
        params = cmd.params(args)
    except _Usage as exc:
        print(f"{PROG} {cmd.name}: error: {exc}", file=sys.stderr)
        return 2
    if cmd.reads:
        params = _with_read(params, args)
    timeout_s = float(args.timeout)
    if cmd.waits:
        timeout_s = max(timeout_s, float(args.wait) + WAIT_MARGIN_S)
    try:
        result = call_sync(socket_path, cmd.method, params, timeout_s=timeout_s)
    except AdminError as exc:
        if args.json:
            _print_json({"error": exc.to_wire()})
        print(f"{PROG} {cmd.name}: {_error_line(exc)}", file=sys.stderr)
        return 1
    except AdminClientError as exc:
        print(f"{PROG} {cmd.name}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(result)
    else:
        print(cmd.render(result))
    reason = cmd.failure(args, result)
    if reason is not None:
        print(f"{PROG} {cmd.name}: {reason}", file=sys.stderr)
        return 1
    return 0


def _error_line(exc: AdminError) -> str:
    line = f"{exc.code}: {exc.message}"
    if exc.leader_id is not None:
        line += f" (leader is node {exc.leader_id})"
    if exc.hint:
        line += f" (hint: {exc.hint})"
    return line.replace("\n", " ")


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=_json_default, ensure_ascii=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
