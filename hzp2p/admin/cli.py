"""`hzp2p admin`: the operator's command for a running daemon, spoken over its admin socket.

It owns argument parsing, the mapping of each subcommand to one admin method,
and output (human-readable by default, JSON with --json). The submit commands
(submit, submit-raw, submit-many, and the JSON payload conventions) live in
hzp2p.admin.cli_submit; what all commands share in hzp2p.admin.cli_common. Exit status: 0 ok,
1 the operation failed (one-line reason on stderr), 2 wrong usage (including
a bad config file).

    hzp2p admin --config CFG [--socket PATH] [--json] [--timeout S] SUBCOMMAND ...

Each subcommand is one operation of the node, declared once in COMMANDS below (and
SUBMIT_COMMANDS in hzp2p.admin.cli_submit): its admin method, the parameters the
server checks before the handler runs (`wire`; "lin" is the optional `linearizable:
bool` param — read through ReadIndex when true), what it answers (`result`), and how
the CLI renders it. hzp2p.admin.operations collects them; docs/operations.md has the
table. `hzp2p admin SUBCOMMAND --help` shows each.

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
import json
import math
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hzp2p.admin.cli_audit import refused_command, render_block, render_tx
from hzp2p.admin.cli_common import (
    DEFAULT_WAIT_S,
    PROG,
    WAIT_MARGIN_S,
    Command,
    Usage,
    fmt,
    render_mapping,
    row,
)
from hzp2p.admin.cli_common import (
    lot_id_arg as _lot_id,
)
from hzp2p.admin.cli_common import (
    non_negative_int as _non_negative_int,
)
from hzp2p.admin.cli_common import (
    positive_int as _positive_int,
)
from hzp2p.admin.cli_common import (
    pseudonym_arg as _pseudonym,
)
from hzp2p.admin.cli_datasets import DATASET_COMMANDS
from hzp2p.admin.cli_receipt import receipt_command
from hzp2p.admin.cli_records import RECORD_COMMANDS
from hzp2p.admin.cli_rotate import rotate_keys_command
from hzp2p.admin.cli_submit import (
    SUBMIT_COMMANDS,
    PayloadError,
    decode_bytes_tags,
    payload_from_json,
    receipt_failure,
    render_receipt,
)
from hzp2p.admin.cli_views import VIEW_COMMANDS
from hzp2p.admin.client import DEFAULT_TIMEOUT_S, AdminClientError, call_sync
from hzp2p.admin.paging import with_paging
from hzp2p.admin.protocol import LIN, LOT, MAX_INT, NODE_ID, SUBJECT, WAIT, AdminError, Param
from hzp2p.config import ConfigError, load_config, parse_host_port
from hzp2p.contracts.api import ROLES

__all__ = ["COMMANDS", "PayloadError", "decode_bytes_tags", "payload_from_json", "register",
           "run_command"]

# ---------------------------------------------------------------------------
# argparse value types (argparse turns their errors into exit status 2)






def _tx_hash(text: str) -> str:
    try:
        ok = len(bytes.fromhex(text)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError("a transaction hash is 64 hex digits")
    return text.lower()






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


# ---------------------------------------------------------------------------
# Commands


def _no_args(_p: argparse.ArgumentParser) -> None:
    pass


def _no_params(_a: argparse.Namespace) -> dict[str, Any]:
    return {}


def _with_read(params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "linearizable", False):
        params["linearizable"] = True
    return params


def _render_list(key: str, empty: str) -> Callable[[Any], str]:
    def render(result: Any) -> str:
        items = result.get(key) if isinstance(result, Mapping) else None
        if not items:
            return empty
        head = render_mapping(result, skip=(key,))
        body = "\n".join(row(i) if isinstance(i, Mapping) else fmt(i) for i in items)
        return f"{head}\n{body}" if head else body

    return render



def _render_verify(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    snap = result.get("snapshot_height")
    if result.get("ok"):
        if snap is not None and snap == result.get("height"):
            return (
                f"chain OK: the snapshot at height {fmt(snap)} verified (state digest "
                "checked); no blocks after it yet, earlier blocks are not stored on this node"
            )
        if snap is not None:
            return (
                f"chain OK: verified blocks {fmt(result.get('from_height'))}.."
                f"{fmt(result.get('height'))} from the snapshot at height {fmt(snap)} "
                "(state digest checked); earlier blocks are not stored on this node"
            )
        return (
            f"chain OK: {fmt(result.get('blocks_checked'))} blocks verified "
            f"up to height {fmt(result.get('height'))}"
        )
    where = f" (verifying from the snapshot at height {fmt(snap)})" if snap is not None else ""
    return (
        f"chain FAULT at height {fmt(result.get('first_bad_height'))}: "
        f"{fmt(result.get('reason'))}{where}"
    )


def _verify_failure(_args: argparse.Namespace, result: Any) -> str | None:
    if isinstance(result, Mapping) and result.get("ok") is True:
        return None
    first_bad = result.get("first_bad_height") if isinstance(result, Mapping) else None
    reason = result.get("reason") if isinstance(result, Mapping) else None
    return f"chain verification failed at height {fmt(first_bad)}: {fmt(reason)}"


def _render_metrics(result: Any) -> str:
    if isinstance(result, Mapping) and isinstance(result.get("text"), str):
        return str(result["text"]).rstrip("\n")
    return fmt(result)


def _render_status(result: Any) -> str:
    return render_mapping(result)


# -- per-command arguments and params ---------------------------------------


def _args_block(p: argparse.ArgumentParser) -> None:
    p.add_argument("height", type=_non_negative_int, metavar="HEIGHT")


def _args_tx(p: argparse.ArgumentParser) -> None:
    p.add_argument("tx_hash", type=_tx_hash, metavar="HASH")


def _args_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--integrity", action="store_true", help="also re-check stored state against the chain"
    )


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
        raise Usage(f"add-learner needs {flags} (or a --file with them)")
    name = fields["name"]
    if not isinstance(name, str) or not name.strip():
        raise Usage("--name must be a non-empty string")
    roles = fields["roles"]
    if isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",") if r.strip()]
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise Usage("--roles must name at least one role")
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise Usage(f"unknown roles {', '.join(unknown)}; known: {', '.join(sorted(ROLES))}")
    for key in ("signing_key", "node_key"):
        value = fields[key]
        try:
            ok = isinstance(value, str) and len(bytes.fromhex(value)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise Usage(f"--{key.replace('_', '-')} must be a public key of 64 hex digits")
    address = fields["address"]
    try:
        parse_host_port(address)
    except ValueError as exc:
        raise Usage(f"--address {exc}") from None
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
        raise Usage(f"cannot read --file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise Usage(f"--file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise Usage(f"--file {path} must hold a table/object")
    unknown = sorted(set(data) - set(_LEARNER_FIELDS))
    if unknown:
        raise Usage(f"--file {path}: unknown fields {', '.join(unknown)}")
    return data




def _args_state_scan(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix", metavar="PREFIX", help="a hex key prefix, or - for all state")
    p.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="at most N rows (the daemon answers at most 10,000)",
    )
    p.add_argument("--after", metavar="KEY", help="start after this key (hex): the `next` cursor")


def _params_state_scan(args: argparse.Namespace) -> dict[str, Any]:
    prefix = str(args.prefix)
    if prefix != "-":
        try:
            bytes.fromhex(prefix)
        except ValueError:
            raise Usage("PREFIX must be hex (an even number of hex digits) or -") from None
        if not prefix or len(prefix) > 1024:
            raise Usage("PREFIX must be 2..1024 hex digits (or -)")
        prefix = prefix.lower()
    params: dict[str, Any] = {"prefix": prefix}
    if args.limit is not None:
        params["limit"] = args.limit
    if args.after is not None:
        try:
            bytes.fromhex(args.after)
        except ValueError:
            raise Usage("--after must be a hex key (the `next` of the previous page)") from None
        params["after"] = args.after.lower()
    return params


def _render_state_scan(result: Any) -> str:
    items = result.get("items") if isinstance(result, Mapping) else None
    if not isinstance(items, list):
        return fmt(result)
    if not items:
        return "no state under this prefix"
    text = "\n".join(
        f"{fmt(i[0])}  {fmt(i[1])}" if isinstance(i, list | tuple) and len(i) == 2 else fmt(i)
        for i in items
    )
    nxt = result.get("next")
    return text + (f"\n(more: --after {nxt})" if nxt else "")


def _args_vote(p: argparse.ArgumentParser) -> None:
    p.add_argument("proposal_id", type=_non_negative_int, metavar="ID", help="the proposal's id")
    p.add_argument("choice", choices=("yes", "no"), metavar="yes|no", help="approve or reject")


def _params_vote(args: argparse.Namespace) -> dict[str, Any]:
    return {"proposal_id": args.proposal_id, "approve": args.choice == "yes", "wait_s": args.wait}


def _render_proposals(result: Any) -> str:
    items = result.get("proposals") if isinstance(result, Mapping) else None
    if not items:
        return "no proposals"
    out = []
    for p in items:
        target = p.get("params", {}).get("name") or p.get("params", {}).get("inst_id")
        out.append(
            f"#{fmt(p.get('id'))}  {fmt(p.get('status')):<8} {fmt(p.get('action'))} "
            f"{fmt(target)}  yes={fmt(p.get('yes'))} no={fmt(p.get('no'))} "
            f"needs {fmt(p.get('votes_needed'))} more  (proposed by {fmt(p.get('proposer'))} "
            f"at height {fmt(p.get('proposed_height'))})"
        )
    return "\n".join(out)


def _args_subject(p: argparse.ArgumentParser) -> None:
    p.add_argument("subject", type=_pseudonym, metavar="SUBJECT", help="the subject's pseudonym")


def _args_lot(p: argparse.ArgumentParser) -> None:
    p.add_argument("lot", type=_lot_id, metavar="LOT", help="the lot id")


COMMANDS: tuple[Command, ...] = (
    Command("status", "status", "this node's Raft and chain position", _no_args, _no_params, _render_status,
            wire=(), result="node_id, role (leader|follower|candidate|learner), term, leader_id, commit_index, applied_index, height, peers (connected ids), mempool, log_first_index, snapshots"),
    Command("peers", "peers", "known peers and their connection state", _no_args, _no_params, _render_list("peers", "no peers"),
            wire=(), result="peers: [{node_id, address, role (voter|learner), connected, match_index}]"),
    Command("members", "members", "consortium members", _no_args, _no_params, _render_list("members", "no members"), reads=True,
            wire=(LIN,), result="members: [{inst_id, name, roles, voter, active, address, signing_key, node_key}]"),
    Command("block", "block", "one block by height", _args_block, lambda a: {"height": a.height}, render_block, reads=True,
            wire=(Param("height", "int", min_value=0, max_value=MAX_INT), LIN), result="height, hash, prev_hash, merkle_root, proposer, timestamp, txs: [{tx_hash, type, status, reason}], proposer_name, tx_details: [{signer, payload (byte strings as sizes), nonce, valid_from_ms, valid_until_ms}], certificate: {signers, signer_ids, voters, quorum, carried_in} or null, carries_certificates; not_found past the chain"),
    Command("tx", "tx", "a transaction's receipt by hash", _args_tx, lambda a: {"tx_hash": a.tx_hash}, render_tx, reads=True,
            wire=(Param("tx_hash", "hex", exact_len=64), LIN), result="receipt: tx_hash, status (committed|rejected|pending), height, index, type, reason, problems (refused at admission); in a block also signer: {key, inst_id, name, current_key} or {key, citizen}, payload (byte strings as sizes), nonce, valid_from_ms, valid_until_ms, certificate; not_found if unknown"),
    Command("verify", "verify", "re-verify the local chain (from its snapshot if it caught up by one)", _args_verify, lambda a: {"integrity": a.integrity}, _render_verify, _verify_failure,
            wire=(Param("integrity", "bool", required=False),), result="ok, height, blocks_checked, first_bad_height, reason, from_height, snapshot_height"),
    Command("metrics", "metrics", "metrics in Prometheus text format", _no_args, _no_params, _render_metrics,
            wire=(), result="text: Prometheus text exposition"),
    Command("transfer-leader", "transfer_leader", "hand leadership to NODE", _args_node, _params_node, render_mapping,
            wire=(NODE_ID,), result="target"),
    Command("add-learner", "add_learner", "propose admitting an institution as a learner", _args_add_learner, _params_add_learner, render_receipt, receipt_failure, waits=True,
            wire=(
        Param("name", "str", max_len=200),
        Param("roles", "str_list"),
        Param("signing_key", "hex", exact_len=64),
        Param("node_key", "hex", exact_len=64),
        Param("address", "str", max_len=300),
        WAIT,
    ), result="receipt, plus node_id (the id assigned) and proposal_id"),
    Command("promote", "promote", "make learner NODE a voter", _args_node, _params_node, render_receipt, receipt_failure, waits=True,
            wire=(NODE_ID, WAIT), result="receipt, plus proposal_id"),
    Command("remove", "remove", "remove NODE from the consortium", _args_node, _params_node, render_receipt, receipt_failure, waits=True,
            wire=(NODE_ID, WAIT), result="receipt, plus proposal_id"),
    Command("subject-records", "subject_records", "a subject's records", _args_subject, lambda a: {"subject": a.subject}, _render_list("records", "no records"), reads=True,
            wire=(SUBJECT, LIN), result="subject, records: [{record_id, type, writer, ciphertext, holders, erased, height, ...}]"),
    Command("lot-history", "lot_history", "a lot's custody and quality history", _args_lot, lambda a: {"lot": a.lot}, _render_list("events", "no events"), reads=True,
            wire=(LOT, LIN), result="lot, record (status as of the head: active|quarantined|recalled|expired), events"),
    Command("access-log", "access_log", "who read a subject's records, and why", _args_subject, lambda a: {"subject": a.subject}, _render_list("entries", "no accesses"), reads=True,
            wire=(SUBJECT, LIN), result="subject, entries: [{kind, by, grantee, purpose, record_id, height, ...}]"),
    Command("proposals", "proposals", "open and recent membership proposals", _no_args,
            _no_params, _render_proposals, reads=True, wire=(LIN,),
            result="proposals: [{id, action, params, status (open|approved|rejected|failed|"
                   "expired), yes, no, votes_needed, proposer, proposed_height, expires_ms}]"),
    Command("vote", "vote", "vote on a membership proposal as this node's institution",
            _args_vote, _params_vote, render_receipt, receipt_failure, waits=True,
            wire=(Param("proposal_id", "int", min_value=0, max_value=MAX_INT),
                  Param("approve", "bool"), WAIT),
            result="receipt, plus proposal: the proposal after the vote"),
    *SUBMIT_COMMANDS,
    receipt_command(),  # writes a file: hzp2p.admin.cli_receipt (issue 19)
    refused_command(),  # the auditors' view: hzp2p.admin.cli_audit (issue 19)
    rotate_keys_command(),  # key rotation: hzp2p.admin.cli_rotate (issue 19)
    *VIEW_COMMANDS,
    *RECORD_COMMANDS,
    *DATASET_COMMANDS,
    Command("state-scan", "state_scan", "raw committed state under a hex key prefix", _args_state_scan, _params_state_scan, _render_state_scan,
            wire=(
        Param("prefix", "str", max_len=1024),
        Param("limit", "int", required=False, min_value=1),
        Param("after", "hex", required=False, max_len=2048),
    ), result="items: [[key_hex, value_hex]] (at most MAX_SCAN rows), next: the last key "
              "when more may follow (pass it as after), else null"),
)
COMMANDS = with_paging(COMMANDS)  # every list pages: hzp2p.admin.paging


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


def _runner(cmd: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return run_command(cmd, args)

    return run


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    if args.config is None:
        raise Usage("--config CFG (or --socket PATH) is required")
    try:
        return load_config(args.config).admin.socket
    except ConfigError as exc:
        raise Usage(str(exc)) from None


def run_command(cmd: Command, args: argparse.Namespace) -> int:
    """Run one admin subcommand; returns the exit status."""
    try:
        socket_path = _socket_path(args)
        params = cmd.params(args)
    except Usage as exc:
        print(f"{PROG} {cmd.name}: error: {exc}", file=sys.stderr)
        return 2
    if cmd.reads:
        params = _with_read(params, args)
    timeout_s = float(args.timeout)
    if cmd.waits:
        timeout_s = max(timeout_s, float(args.wait) + WAIT_MARGIN_S)
    try:
        if cmd.call is not None:
            result = cmd.call(socket_path, params, timeout_s)
        else:
            result = call_sync(socket_path, cmd.method, params, timeout_s=timeout_s)
    except AdminError as exc:
        if args.json:
            _print_json({"error": exc.to_wire()})
        print(f"{PROG} {cmd.name}: {_error_line(exc)}", file=sys.stderr)
        return 1
    except AdminClientError as exc:
        print(f"{PROG} {cmd.name}: {exc}", file=sys.stderr)
        return 1
    if cmd.streams:
        pass  # printed as it came
    elif args.json:
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
