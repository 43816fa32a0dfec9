"""`hzp2p verify-receipt` (offline, genesis only) and `hzp2p admin receipt` (write one from a node).

    hzp2p verify-receipt FILE --genesis genesis.toml [--json]
        0: the receipt proves what it says (one sentence on stdout); 1: it does not (the
        reason on stderr); 2: wrong usage (a file that cannot be read, a genesis that
        does not load).
    hzp2p admin --config CFG receipt TX_HASH --out FILE [--hash-only] [--base64] [--json]
        (declared as an admin operation: `receipt_command`, listed in hzp2p.admin.cli)
        asks the node for the transaction's receipt (hzp2p.node.receipts) and writes it to
        FILE; --hash-only leaves the transaction's body out (its hash and signature stay);
        --base64 writes it as one line of base64 text; --compact as the QR-sized text form
        "HZR1:" + base45 (hzp2p.credentials.receipt_text: a 3-voter hash-only receipt is
        ~1.7 K characters; a QR code's alphanumeric mode holds up to 3,391).

verify-receipt reads all three forms.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hzp2p.credentials.receipt_text import receipt_bytes, to_compact
from hzp2p.ledger.genesis import GenesisError, load_genesis
from hzp2p.ledger.receipt import MAX_RECEIPT_BYTES, ReceiptError, verify_receipt

PROG = "hzp2p"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "verify-receipt", help="check a transaction receipt offline, against the genesis only",
        description="Check a receipt written by `hzp2p admin receipt`, with no network.")
    p.add_argument("file", type=Path, metavar="FILE", help="the receipt file")
    p.add_argument("--genesis", type=Path, required=True, metavar="GENESIS",
                   help="the consortium's genesis.toml")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    try:
        genesis = load_genesis(args.genesis)
    except (OSError, GenesisError, ValueError) as exc:
        print(f"{PROG} verify-receipt: error: genesis {args.genesis}: {exc}", file=sys.stderr)
        return 2
    try:
        with open(args.file, "rb") as f:
            data = f.read(MAX_RECEIPT_BYTES + 1)
    except OSError as exc:
        print(f"{PROG} verify-receipt: error: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        proven = verify_receipt(receipt_bytes(data), genesis)
    except ReceiptError as exc:
        if args.json:
            print(json.dumps({"ok": False, "reason": str(exc)}))
        print(f"{PROG} verify-receipt: invalid: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(proven.as_dict(), ensure_ascii=False))
    else:
        print(proven.sentence())
    return 0



# ---------------------------------------------------------------- admin receipt


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("tx_hash", metavar="TX_HASH", help="the transaction hash (hex)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write it")
    p.add_argument("--hash-only", action="store_true",
                   help="leave the transaction's body out (only its hash and signature)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--base64", action="store_true",
                      help="write one line of base64 text instead of binary")
    form.add_argument("--compact", action="store_true",
                      help="write the QR-sized text form (HZR1: + base45; use with --hash-only)")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    try:
        tx_hash = bytes.fromhex(args.tx_hash)
    except ValueError:
        tx_hash = b""
    if len(tx_hash) != 32:
        from hzp2p.admin.cli_common import Usage

        raise Usage("TX_HASH must be 64 hex digits")
    params: dict[str, Any] = {"tx_hash": tx_hash.hex()}
    if args.hash_only:
        params["hash_only"] = True
    # where to write: read by _call, never sent
    params["_out"] = str(args.out)
    params["_form"] = "base64" if args.base64 else "compact" if args.compact else "binary"
    return params


def _call(socket_path: Path, params: dict[str, Any], timeout_s: float) -> Any:
    from hzp2p.admin.client import AdminClientError, call_sync

    out, form = Path(params.pop("_out")), params.pop("_form")
    result = dict(call_sync(socket_path, "receipt", params, timeout_s=timeout_s))
    data: bytes = result.pop("receipt")
    if form == "base64":
        data = base64.b64encode(data) + b"\n"
    elif form == "compact":
        data = to_compact(data).encode() + b"\n"
    try:
        _write_atomically(out, data)
    except OSError as exc:
        raise AdminClientError(f"cannot write {out}: {exc.strerror}") from None
    result["out"] = str(out)
    return result


def _render(r: Any) -> str:
    return (f"receipt for transaction {r['tx_hash']} ({r['verdict']}, block {r['height']}, "
            f"certified by {', '.join(r['certified_by'])}: {len(r['certified_by'])} of "
            f"{r['voters']} voters) written to {r['out']} ({r['bytes']} bytes)")


def receipt_command() -> Any:
    """The `hzp2p admin receipt` operation (listed in hzp2p.admin.cli's COMMANDS)."""
    from hzp2p.admin.cli_common import Command
    from hzp2p.admin.protocol import Param

    return Command(
        "receipt", "receipt", "write an offline receipt for a committed transaction",
        _args, _params, _render, call=_call,
        wire=(Param("tx_hash", "hex", exact_len=64), Param("hash_only", "bool", required=False)),
        result="receipt (bytes), tx_hash, height, index, verdict, certified_by: [names], voters, "
               "bytes; not_found if unknown; unavailable while its block is not certified",
    )


def _write_atomically(path: Path, data: bytes) -> None:
    d = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".receipt-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
