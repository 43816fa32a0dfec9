"""The auditors' commands: `admin refused`, and how `admin tx` / `admin block` show signers,
payload sizes, verdicts and certificates (the node side is hzp2p.node.audit_views).

    hzp2p admin --config CFG tx HASH        receipt + signer, payload (sizes), certificate
    hzp2p admin --config CFG block HEIGHT   + proposer, each tx's signer, the certificate
    hzp2p admin --config CFG refused [--from TIME] [--to TIME] [--limit N] [--after CURSOR]

TIME is ISO 8601 (`2026-12-08`, `2026-12-08T01:30:00Z`; UTC unless it names a zone) or
epoch milliseconds. `refused` lists newest first; when more remain it prints the cursor
to pass as --after.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from typing import Any

from hzp2p.admin.cli_common import Command, fmt, iso_ms, render_mapping
from hzp2p.admin.cli_submit import render_receipt
from hzp2p.admin.protocol import MAX_INT, Param

MAX_LIMIT = 1000
AUDIT_KEYS = ("signer", "payload", "nonce", "valid_from_ms", "valid_until_ms", "certificate",
              "audit_problem")


def time_arg(text: str) -> int:
    """ISO 8601 (UTC unless a zone is given) or epoch milliseconds -> epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (ISO 8601 such as 2026-12-08T01:30:00Z, or epoch ms)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def limit_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 0 < n <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_LIMIT}")
    return n


def render_signer(s: Any) -> str:
    if not isinstance(s, Mapping):
        return fmt(s)
    if "citizen" in s:
        return f"citizen {fmt(s['citizen'])} (key {fmt(s.get('key'))})"
    old = "" if s.get("current_key") else ", a key it has since rotated away"
    return f"{fmt(s.get('name'))} (institution {fmt(s.get('inst_id'))}, key {fmt(s.get('key'))}{old})"


def render_certificate(c: Any) -> str:
    if c is None:
        return "not certified yet"
    if not isinstance(c, Mapping):
        return fmt(c)
    if "problem" in c:
        return f"carried in block {fmt(c.get('carried_in'))}: {fmt(c['problem'])}"
    return (f"signed by {fmt(c.get('signers'))} ({len(c.get('signer_ids') or [])} of "
            f"{fmt(c.get('voters'))} voters, {fmt(c.get('quorum'))} needed), carried in block "
            f"{fmt(c.get('carried_in'))}")


def _payload_lines(p: Any, indent: str) -> list[str]:
    if not isinstance(p, Mapping):
        return [f"{indent}{fmt(p)}"]
    out = []
    for k, v in p.items():
        if isinstance(v, Mapping) and v:
            out.append(f"{indent}{k}:")
            out.extend(_payload_lines(v, indent + "  "))
        else:
            out.append(f"{indent}{k}: {fmt(v)}")
    return out


def render_tx(result: Any) -> str:
    """`admin tx`: the receipt line, then the auditors' view when the tx is in a block."""
    if not isinstance(result, Mapping):
        return fmt(result)
    lines = [render_receipt({k: v for k, v in result.items() if k not in AUDIT_KEYS})]
    if "signer" in result:
        lines.append(f"signer: {render_signer(result['signer'])}")
        lines.append(f"valid: {iso_ms(result.get('valid_from_ms'))} .. "
                     f"{iso_ms(result.get('valid_until_ms'))}, nonce {fmt(result.get('nonce'))}")
        lines.append("payload (byte strings other than keys and hashes shown as their size):")
        lines.extend(_payload_lines(result.get("payload"), "  "))
        lines.append(f"certificate: {render_certificate(result.get('certificate'))}")
    if result.get("audit_problem"):
        lines.append(f"audit: {fmt(result['audit_problem'])}")
    return "\n".join(lines)


def render_block(result: Any) -> str:
    """`admin block`: the header, the certificate, each transaction with signer and verdict."""
    if not isinstance(result, Mapping):
        return fmt(result)
    skip = ("txs", "tx_details", "certificate", "carries_certificates", "proposer_name")
    lines = [render_mapping(result, skip=skip)]
    if result.get("proposer_name"):
        lines[0] = lines[0].replace(f"proposer: {fmt(result.get('proposer'))}",
                                    f"proposer: {fmt(result.get('proposer'))} "
                                    f"({fmt(result['proposer_name'])})")
    if "certificate" in result:
        lines.append(f"certificate: {render_certificate(result.get('certificate'))}")
    carried = result.get("carries_certificates") or []
    if carried:
        lines.append("carries certificates of blocks: "
                     + ", ".join(fmt(c.get("height", "?")) for c in carried))
    txs = result.get("txs") or []
    details = result.get("tx_details") or [None] * len(txs)
    lines.append(f"txs: {len(txs)}")
    for tx, d in zip(txs, details, strict=False):
        if not isinstance(tx, Mapping):
            continue
        why = f" ({fmt(tx.get('reason'))})" if tx.get("status") == "rejected" else ""
        lines.append(f"  {fmt(tx.get('tx_hash'))}  {fmt(tx.get('type'))}  "
                     f"{fmt(tx.get('status'))}{why}")
        if isinstance(d, Mapping):
            lines.append(f"    signer: {render_signer(d.get('signer'))}")
            lines.extend(_payload_lines(d.get("payload"), "    "))
    return "\n".join(lines)


# ---------------------------------------------------------------- admin refused


def _args_refused(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_ms", type=time_arg, metavar="TIME",
                   help="only refusals at or after TIME (ISO 8601 or epoch ms)")
    p.add_argument("--to", dest="to_ms", type=time_arg, metavar="TIME",
                   help="only refusals at or before TIME")
    p.add_argument("--limit", type=limit_arg, default=50, help="at most N (1..1000, default 50)")
    p.add_argument("--after", metavar="CURSOR", help="continue after this cursor "
                   "(printed when more remain)")


def _params_refused(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": args.limit}
    if args.from_ms is not None:
        params["from_ms"] = args.from_ms
    if args.to_ms is not None:
        params["to_ms"] = args.to_ms
    if args.after:
        params["after"] = args.after
    return params


def _render_refused(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    items = result.get("refused") or []
    if not items:
        return "no refused transactions"
    lines = []
    for r in items:
        where = ("at admission" if r.get("where") == "admission"
                 else f"in block {fmt(r.get('height'))} #{fmt(r.get('index'))}")
        lines.append(f"{iso_ms(r.get('at_ms'))}  {fmt(r.get('tx_hash'))}  {fmt(r.get('type'))}  "
                     f"{where}: {fmt(r.get('reason'))}")
        lines.extend(f"    {fmt(f)}: {fmt(why)}" for f, why in r.get("problems") or [])
    if result.get("next_after"):
        lines.append(f"more: --after {result['next_after']}")
    return "\n".join(lines)


def refused_command() -> Command:
    return Command(
        "refused", "refused", "refused transactions with their reasons, newest first",
        _args_refused, _params_refused, _render_refused, reads=True,
        wire=(Param("from_ms", "int", required=False, min_value=0, max_value=MAX_INT),
              Param("to_ms", "int", required=False, min_value=0, max_value=MAX_INT),
              Param("limit", "int", required=False, min_value=1, max_value=MAX_LIMIT),
              Param("after", "str", required=False, max_len=100)),
        result="refused: [{tx_hash, type, reason, problems: [[field, reason]], where "
               "(admission|block), at_ms, height, index}] newest first, next_after (a cursor, "
               "null at the end), note",
    )
