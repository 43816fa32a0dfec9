"""`hzp2p verify-receipt` (offline, genesis only) and `hzp2p admin receipt` (write one from a node).

    hzp2p verify-receipt FILE --genesis genesis.toml [--json]
        0: the receipt proves what it says (one sentence on stdout); 1: it does not (the
        reason on stderr); 2: wrong usage (a file that cannot be read, a genesis that
        does not load).
    hzp2p admin --config CFG receipt TX_HASH --out FILE [--hash-only] [--base64] [--json]
        asks the node for the transaction's receipt (hzp2p.node.receipts) and writes it to
        FILE; --hash-only leaves the transaction's body out (its hash and signature stay);
        --base64 writes it as one line of base64 text, the form to put in a QR code (a
        3-voter hash-only receipt is ~1.5 KB of text; a QR code holds up to ~2.9 KB).

verify-receipt reads either form.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        proven = verify_receipt(_binary(data), genesis)
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


def _binary(data: bytes) -> bytes:
    """A receipt file's bytes: as written, or decoded from the base64 text form."""
    text = data.strip()
    if text and all(c in _B64 for c in text):
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            return data
    return data


_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


# ---------------------------------------------------------------- admin receipt


def add_admin_receipt(
    sub: Any, common_options: Callable[..., None], socket_path: Callable[[argparse.Namespace], Path]
) -> None:
    """Add `receipt` to the `hzp2p admin` subcommands (called by hzp2p.admin.cli)."""
    p = sub.add_parser("receipt", help="write an offline receipt for a committed transaction",
                       description="Write an offline receipt for a committed transaction "
                       "(check it with `hzp2p verify-receipt`).")
    common_options(p, top=False)
    p.add_argument("tx_hash", metavar="TX_HASH", help="the transaction hash (hex)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write it")
    p.add_argument("--hash-only", action="store_true",
                   help="leave the transaction's body out (only its hash and signature)")
    p.add_argument("--base64", action="store_true",
                   help="write one line of base64 text (for a QR code) instead of binary")
    p.set_defaults(func=lambda a: run_admin_receipt(a, socket_path))


def run_admin_receipt(
    args: argparse.Namespace, socket_path: Callable[[argparse.Namespace], Path]
) -> int:
    from hzp2p.admin.client import AdminClientError, call_sync
    from hzp2p.admin.protocol import AdminError

    name = f"{PROG} admin receipt"
    try:
        tx_hash = bytes.fromhex(args.tx_hash)
        if len(tx_hash) != 32:
            raise ValueError
    except ValueError:
        print(f"{name}: error: TX_HASH must be 64 hex digits", file=sys.stderr)
        return 2
    try:
        sock = socket_path(args)
    except Exception as exc:  # the admin CLI's Usage: a bad or missing config
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    params: dict[str, Any] = {"tx_hash": tx_hash.hex()}
    if args.hash_only:
        params["hash_only"] = True
    try:
        result = call_sync(sock, "receipt", params, timeout_s=float(args.timeout))
    except AdminError as exc:
        if args.json:
            print(json.dumps({"error": exc.to_wire()}, default=str))
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        print(f"{name}: {exc.code}: {exc.message}{hint}", file=sys.stderr)
        return 1
    except AdminClientError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    data = result["receipt"]
    if args.base64:
        data = base64.b64encode(data) + b"\n"
    try:
        _write_atomically(args.out, data)
    except OSError as exc:
        print(f"{name}: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    summary = {k: v for k, v in result.items() if k != "receipt"}
    summary["out"] = str(args.out)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"receipt for transaction {summary['tx_hash']} ({summary['verdict']}, block "
              f"{summary['height']}, certified by {', '.join(summary['certified_by'])}: "
              f"{len(summary['certified_by'])} of {summary['voters']} voters) written to "
              f"{args.out} ({len(data)} bytes)")
    return 0


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
