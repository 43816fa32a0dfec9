"""`hzp2p citizen ...`: what a citizen's app does over a gateway, with her key file.

Her key file (`hzp2p citizen-key FILE`) is her identity: its public key hashes to her
pseudonym, every request is signed with it (hzp2p.gateway.signing) and names that
pseudonym, and her own transactions are signed with it on her side (hzp2p.client) before
`POST /v1/tx`. Records come back encrypted; `--decrypt` / `record ID` open them here.
`exposures --match` downloads the public list and matches it against her check-ins,
decrypted here: nothing about where she went is sent. Every subcommand takes `--gateway
URL` (or $HZP2P_GATEWAY), `--key FILE` and `--json`; a refused request prints the
gateway's problem in one line (exit 1), a bad key file or argument exits 2.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzp2p.app.common import add_common, ident, no_subcommand, run
from hzp2p.app.errors import AppError
from hzp2p.client import VenueQRError, parse_venue_qr
from hzp2p.contracts.appeals import APPEAL_REASONS

if TYPE_CHECKING:
    from hzp2p.app.session import Session

DAY_MS = 86_400_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


def _receipt_text(r: dict[str, Any]) -> str:
    return f"{r['type']} {r['status']} at block {r['height']} (tx {r['tx_hash']})"


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise AppError(f"cannot write {path}: {exc.strerror or exc}", 2) from None


# ---------------------------------------------------------------- reading


def whoami(s: Session, _a: argparse.Namespace) -> tuple[Any, str]:
    st = s.public("/v1/status", "status")
    out = {"pseudonym": s.pseudonym, "public_key": s.public_key, "gateway": s.url,
           "chain_id": st["chain_id"], "height": st["height"]}
    return out, (f"pseudonym {s.pseudonym}\npublic key {s.public_key}\ngateway {s.url} "
                 f"(chain {st['chain_id']}, height {st['height']})")


def health_code(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    if a.history:
        hist = s.me("/v1/me/health-code/history", "health-code history")
        lines = [f"{e['seq'] if e['seq'] is not None else '-':>4}  {_iso(e['timestamp_ms'])}  "
                 f"{e['colour']:<7} {e['event']}  {e['reason']}" for e in hist]
        return {"subject": s.pseudonym, "history": hist}, "\n".join(lines) or "no events"
    code = s.me("/v1/me/health-code", "health code")
    cred = code.get("credential")
    if (a.credential_out or a.qr) and not cred:
        raise AppError(f"the gateway issued no credential: {code.get('credential_problem')}")
    if a.credential_out:
        _write(a.credential_out, (cred + "\n").encode())
    if a.qr:
        from hzp2p.credentials.qr import to_png  # segno: the gateway extra

        _write(a.qr, to_png(cred))
    since = f" since {_iso(code['since_ms'])}" if code["since_ms"] else ""
    text = (f"{code['colour']}{since} ({code['source']})"
            + (f": {code['why']}" if code["why"] else ""))
    if cred:
        text += f"\ncredential valid until {_iso(code['credential_valid_until_s'] * 1000)}"
    elif code.get("credential_problem"):
        text += f"\nno credential: {code['credential_problem']}"
    return code, text


def _record_line(r: dict[str, Any]) -> str:
    by = "herself" if r["writer"] is None else f"member {r['writer']}"
    return (f"{r['record_id']:<20} {r['type']:<14} {_iso(r['timestamp_ms'])}  by {by}"
            + ("  (erased)" if r["erased"] else ""))


def records(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    recs = s.me("/v1/me/records", "records")
    lines = []
    for r in recs:
        lines.append(_record_line(r))
        if a.decrypt and not r["erased"]:
            view = s.me(f"/v1/me/records/{r['record_id']}", "record")
            f = r["fields"] = s.open(view)
            lines.append(f"    at {f.get('venue_id')}, {_iso(f.get('t_ms'))}" if r["type"] == "checkin"
                         else "    " + ", ".join(f"{k}: {v}" for k, v in f.items()))
    return {"subject": s.pseudonym, "records": recs}, "\n".join(lines) or "no records"


def record(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    view = s.me(f"/v1/me/records/{a.record_id}", "record")
    fields = s.open(view)
    out = {k: view[k] for k in ("record_id", "type", "writer", "timestamp_ms", "height")}
    out["fields"] = fields
    return out, "\n".join(f"{k}: {v}" for k, v in fields.items())


def access_log(s: Session, _a: argparse.Namespace) -> tuple[Any, str]:
    log = s.me("/v1/me/access-log", "access log")
    lines = [f"{_iso(e['timestamp_ms'])}  {e['kind']:<10} "
             + (f"record {e['record_id']} to member {e['grantee']} ({e['purpose']})"
                if e.get("record_id") else f"her code, by {e['by']}")
             + (f": {e['reason']}" if e.get("reason") else "") for e in log]
    return {"subject": s.pseudonym, "entries": log}, "\n".join(lines) or "nobody"


def grants(s: Session, _a: argparse.Namespace) -> tuple[Any, str]:
    gs = s.me("/v1/me/grants", "grants")
    lines = [f"{g['grant_id']:<12} member {g['grantee']:<4} {','.join(g['record_types'])} "
             f"for {g['purpose']!r} until {_iso(g['expiry_ms'])}"
             + (f" (revoked {_iso(g['revoked_ms'])})" if g["revoked_ms"] else "") for g in gs]
    return {"subject": s.pseudonym, "grants": gs}, "\n".join(lines) or "no grants"


def _my_checkins(s: Session) -> list[dict[str, Any]]:
    out = []
    for r in s.me("/v1/me/records", "records"):
        if r["type"] != "checkin" or r["erased"]:
            continue
        f = s.open(s.me(f"/v1/me/records/{r['record_id']}", "check-in"))
        out.append({"record_id": r["record_id"], "venue_id": f["venue_id"], "t_ms": f["t_ms"]})
    return out


def exposures(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    found = s.public("/v1/exposures", "exposures")
    out: dict[str, Any] = {"exposures": found}
    lines = [f"{e['exposure_id']:<12} {e['venue_id']:<20} {_iso(e['from_ms'])} .. "
             f"{_iso(e['to_ms'])}  {e['level']}" for e in found]
    if a.match:
        visits = _my_checkins(s)
        matched = [e["exposure_id"] for e in found
                   if any(v["venue_id"] == e["venue_id"] and e["from_ms"] <= v["t_ms"] <= e["to_ms"]
                          for v in visits)]
        out.update(checkins=len(visits), matched=matched)
        lines.append(f"matched against {len(visits)} check-in(s) on this side: "
                     + (", ".join(matched) or "none"))
    return out, "\n".join(lines) or "no exposures published"


def receipt(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    proof = s.signed(f"/v1/tx/{a.tx_hash}/proof", "receipt",
                     query="include_tx=true" if a.include_tx else "")
    _write(a.out, base64.b64decode(proof["receipt"]))
    out = {k: v for k, v in proof.items() if k != "receipt"}
    out["file"] = str(a.out)
    return out, (f"wrote {a.out} ({proof['receipt_bytes']} bytes): {proof['type']} "
                 f"{proof['verdict']} in block {proof['height']}, certified by "
                 f"{', '.join(proof['certified_by'])}; check it with `hzp2p verify-receipt "
                 f"{a.out} --genesis genesis.toml`")


# ---------------------------------------------------------------- her transactions


def _posted(s: Session, tx: Any, extra: dict[str, Any] | None = None) -> tuple[Any, str]:
    r = s.post(tx)
    return {**r, **(extra or {})}, _receipt_text(r)


def checkin(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    try:
        qr = parse_venue_qr(a.venue_qr, s.chain_id)
    except VenueQRError as exc:
        raise AppError(f"--venue-qr is not a venue's code of this chain: {exc}", 2) from None
    t = _now_ms()
    r, text = _posted(s, s.client().checkin(t, [(qr, t)]), {"venue_id": qr.venue_id, "t_ms": t})
    return r, f"check-in at {qr.venue_id}, sealed to you alone: {text}"


def declare(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    return _posted(s, s.client().declare_exposure(_now_ms(), a.exposure_id))


def appeal(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    evidence = None
    if a.evidence_hash is not None:
        try:
            evidence = bytes.fromhex(a.evidence_hash)
        except ValueError:
            raise AppError("--evidence-hash must be hex", 2) from None
    tx = s.client().appeal(_now_ms(), appeal_id=a.id or f"AP-{secrets.token_hex(4)}",
                           event=a.event, reason=a.reason, evidence_hash=evidence)
    return _posted(s, tx, {"appeal_id": tx.payload["appeal_id"]})


def grant(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    t = _now_ms()
    types = [x.strip() for x in a.types.split(",") if x.strip()]
    tx = s.client().grant(t, grant_id=a.id or f"G-{secrets.token_hex(4)}", grantee=a.to,
                          record_types=types, purpose=a.purpose, expiry_ms=t + a.days * DAY_MS)
    return _posted(s, tx, {"grant_id": tx.payload["grant_id"]})


def revoke(s: Session, a: argparse.Namespace) -> tuple[Any, str]:
    return _posted(s, s.client().revoke(_now_ms(), grant_id=a.grant_id))


# ---------------------------------------------------------------- the command



def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 0 < v < 2**31:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return v


def _event(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v < 2**31:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event number (see health-code "
                                         "--history)")
    return v


def _tx_hash(text: str) -> str:
    t = text.lower()
    if len(t) != 64 or any(c not in "0123456789abcdef" for c in t):
        raise argparse.ArgumentTypeError("a transaction hash is 64 hex digits")
    return t


KEY_HELP = "her key file (hzp2p citizen-key FILE): its public key names her pseudonym"



def register(subparsers: Any) -> None:
    c = subparsers.add_parser("citizen", help="a citizen's app over a gateway, with her key file")
    sub = c.add_subparsers(dest="citizen_command", metavar="SUBCOMMAND")
    c.set_defaults(func=no_subcommand(c))

    def add(name: str, op: Any, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_common(p, KEY_HELP)
        p.set_defaults(func=lambda args: run(f"citizen {name}", args, op))
        return p

    add("whoami", whoami, "her pseudonym and public key, and the gateway's chain")
    p = add("health-code", health_code, "her health code (and a credential for a QR code)")
    p.add_argument("--history", action="store_true", help="every change, with event numbers")
    p.add_argument("--credential-out", type=Path, metavar="FILE",
                   help="write the signed credential text (HZ1:...)")
    p.add_argument("--qr", type=Path, metavar="PNG", help="write the credential as a QR code")
    p = add("records", records, "her records (metadata; --decrypt opens them here)")
    p.add_argument("--decrypt", action="store_true")
    p = add("record", record, "one of her records, decrypted on this side")
    p.add_argument("record_id", type=ident, metavar="RECORD")
    add("access-log", access_log, "who was handed keys to her records, when and why")
    add("grants", grants, "her consent grants, revoked ones included")
    p = add("grant", grant, "sign and post a consent grant (consent.grant)")
    p.add_argument("--to", type=_positive, required=True, metavar="INST", help="the member id")
    p.add_argument("--types", required=True, metavar="T[,T]", help="record types covered")
    p.add_argument("--purpose", required=True)
    p.add_argument("--days", type=_positive, default=30, help="valid this many days (30)")
    p.add_argument("--id", type=ident, help="the grant's id (default: a random G-...)")
    p = add("revoke", revoke, "revoke one of her grants (consent.revoke)")
    p.add_argument("grant_id", type=ident, metavar="GRANT")
    p = add("checkin", checkin, "record a visit from a venue's QR code, sealed to her alone")
    p.add_argument("--venue-qr", required=True, metavar="TEXT", help="the scanned code's text")
    p = add("exposures", exposures, "published exposures (--match: against her check-ins, here)")
    p.add_argument("--match", action="store_true")
    p = add("declare", declare, "declare a matched exposure (exposure.declare)")
    p.add_argument("exposure_id", type=ident, metavar="EXPOSURE")
    p = add("appeal", appeal, "appeal an event of her code's history (healthcode.appeal)")
    p.add_argument("--event", type=_event, required=True, metavar="N",
                   help="the event number (health-code --history)")
    p.add_argument("--reason", required=True, choices=APPEAL_REASONS)
    p.add_argument("--id", type=ident, help="the appeal's id (default: a random AP-...)")
    p.add_argument("--evidence-hash", metavar="HEX", help="hash of evidence she keeps")
    p = add("receipt", receipt, "fetch a transaction's offline receipt into a file")
    p.add_argument("tx_hash", type=_tx_hash, metavar="TX")
    p.add_argument("--out", type=Path, required=True, metavar="FILE")
    p.add_argument("--include-tx", action="store_true",
                   help="carry the whole transaction (her own, or one about her)")
