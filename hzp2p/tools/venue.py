"""`hzp2p venue qr`: the text of the QR code a venue shows today, signed with its key file.

(`hzp2p venue trust-list` saves a gateway's trust list for `hzp2p verify-code`:
hzp2p.app.institution.)

A venue (registered by a member with `venue.register`: its id and the public half of a
key from `hzp2p keygen DIR --kind venue`) prints the day's code — venue id, day number,
its public key and its signature over them for this chain (hzp2p.contracts.exposure
.make_venue_qr) — for a screen or a printed poster; a citizen's app scans it and keeps the
check-in sealed to her alone. The code rotates daily: `--day` (days since 1970-01-01 UTC)
prints another day's; the default is today. A wrong key file or genesis is exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hzp2p.app.institution import add_trust_list
from hzp2p.contracts.exposure import make_venue_qr
from hzp2p.contracts.schema import ID_RE
from hzp2p.ledger.genesis import GenesisError, load_genesis
from hzp2p.node.keys import KeyFileError, load_signing_key

DAY_MS = 86_400_000


def cmd_qr(args: argparse.Namespace) -> int:
    if not ID_RE.fullmatch(args.venue):
        print("hzp2p venue qr: error: --venue must be 1..64 of [A-Za-z0-9._:-]", file=sys.stderr)
        return 2
    try:
        key = load_signing_key(args.key)
        chain_id = load_genesis(args.genesis).chain_id
    except (KeyFileError, GenesisError, OSError) as exc:
        print(f"hzp2p venue qr: error: {exc}", file=sys.stderr)
        return 2
    day = args.day if args.day is not None else time.time_ns() // 1_000_000 // DAY_MS
    text = make_venue_qr(key, chain_id, args.venue, day)
    out = {"qr": text, "venue_id": args.venue, "day": day,
           "verify_key": bytes(key.verify_key).hex()}
    print(json.dumps(out) if args.json else text)
    return 0


def _day(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"a day number is a non-negative integer, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    v = subparsers.add_parser("venue", help="venue tools (print the day's signed QR code)")
    sub = v.add_subparsers(dest="venue_command", metavar="SUBCOMMAND")
    qr = sub.add_parser("qr", help="print the venue's QR code text for today")
    qr.add_argument("--key", type=Path, required=True, help="the venue's key file")
    qr.add_argument("--venue", required=True, help="the venue's registered id")
    qr.add_argument("--genesis", type=Path, required=True, help="the consortium's genesis.toml")
    qr.add_argument("--day", type=_day, help="days since 1970-01-01 UTC (default: today)")
    qr.add_argument("--json", action="store_true")
    qr.set_defaults(func=cmd_qr)
    # a venue's scanner saves the gateway's trust list for `hzp2p verify-code` (docs/citizens.md)
    add_trust_list(sub)
    v.set_defaults(func=lambda _a: (v.print_usage(sys.stderr), 2)[1])
