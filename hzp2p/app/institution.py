"""`hzp2p institution ...`: a member's records client over a gateway, with its signing key.

An institution without a daemon of its own (or a records system beside one) signs each
request with its member signing key (the file `hzp2p keygen` / `hzp2p join` wrote; the
gateway checks it against current membership): `whoami` (the member the key belongs to),
`records` (the live records it holds a key to), `record ID` (one, decrypted on this side
with the key the record's sealed key was made for: the one derived from its signing key;
a record re-wrapped to a rotated encryption key is opened by the node's key store, `admin
record`). The gateway's `venue trust-list` (public) is here too, for tools/venue.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzp2p.app.common import add_common, ident, no_subcommand, run
from hzp2p.app.errors import AppError

if TYPE_CHECKING:
    from hzp2p.app.session import Session


def whoami(s: Session, _a: argparse.Namespace) -> tuple[Any, str]:
    me = s.signed("/v1/institution/me", "institution")
    return me, f"member {me['inst_id']} ({me['name']}), roles {', '.join(me['roles'])}"


def records(s: Session, _a: argparse.Namespace) -> tuple[Any, str]:
    recs = s.signed("/v1/institution/records", "records")
    lines = [f"{r['record_id']:<20} {r['type']:<14} written by member {r['writer']} at block "
             f"{r['height']}" for r in recs]
    return {"records": recs}, "\n".join(lines) or "no records held"


def record(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    view = s.signed(f"/v1/institution/records/{a.record_id}", "record")
    fields = s.open(view)
    out = {k: view[k] for k in ("record_id", "subject", "type", "writer", "timestamp_ms",
                                "height", "holder")}
    out["fields"] = fields
    return out, "\n".join(f"{k}: {v}" for k, v in fields.items())


def trust_list(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    """GET /v1/trust-list saved for `hzp2p verify-code --trust-list` (a venue's scanner)."""
    tl = s.public("/v1/trust-list", "trust list")
    try:
        a.out.write_text(json.dumps(tl), encoding="utf-8")
    except OSError as exc:
        raise AppError(f"cannot write {a.out}: {exc.strerror or exc}", 2) from None
    keys = len(tl.get("credential_keys", []))
    return ({"file": str(a.out), "height": tl.get("height"), "credential_keys": keys},
            f"wrote {a.out}: {keys} credential key(s), {len(tl.get('members', []))} members, "
            f"height {tl.get('height')}")


def add_trust_list(sub: Any) -> None:
    """`... trust-list --gateway URL --out FILE` under a parent command (`hzp2p venue`)."""
    p = sub.add_parser("trust-list", help="save the gateway's trust list for verify-code")
    add_common(p, None)
    p.add_argument("--out", type=Path, required=True, metavar="FILE")
    p.set_defaults(func=lambda args: run("venue trust-list", args, trust_list))



KEY_HELP = "the institution's member signing key file"



def register(subparsers: Any) -> None:
    i = subparsers.add_parser("institution",
                              help="a member's records client over a gateway, with its key file")
    sub = i.add_subparsers(dest="institution_command", metavar="SUBCOMMAND")
    i.set_defaults(func=no_subcommand(i))

    def add(name: str, op: Any, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_common(p, KEY_HELP)
        p.set_defaults(func=lambda args: run(f"institution {name}", args, op))
        return p

    add("whoami", whoami, "the member this key belongs to")
    add("records", records, "the live records this institution holds a key to")
    p = add("record", record, "one record it holds, decrypted on this side")
    p.add_argument("record_id", type=ident, metavar="RECORD")
