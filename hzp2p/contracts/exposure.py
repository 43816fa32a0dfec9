"""Venues, private check-ins and exposures: travel history that only its owner can read.

- `venue.register` (any active member): a venue is a verify key registered under a
  member institution (`venue/<venue_id>`); `venue.revoke` retires it. A venue displays
  a QR code rotating daily: its id, the day number, its verify key and its signature
  over `venue_qr_message(chain_id, venue_id, day)` (`make_venue_qr` / `parse_venue_qr` /
  `verify_venue_qr`; a citizen's app checks it before recording a check-in).
- `checkin.record` (signed by the citizen): one or more check-ins, each an encrypted
  record of type "checkin" sealed to her alone (hzp2p.contracts.privacy); the chain
  sees a record id, a ciphertext of fixed size and her pseudonym, never a venue or a
  time of visit. Only her grant or an authority's logged emergency request (both by
  access.share, which she signs) hands a key to anyone.
- `exposure.publish` (authority): a venue and a time window of concern (from, to,
  level, optional case reference), public so every app can match its own check-ins
  locally; nothing about anyone who did not match reaches the chain.
- `exposure.declare` (signed by the citizen): names a published exposure that is
  current (its window ended less than `quarantine_days` ago by the rules in force);
  her code turns yellow until the window's end plus `quarantine_days` (codelife).
  Each exposure is declared once per subject.

Layout:
  venue/<venue_id>           a venue: institution, verify key, active
  expo/<exposure_id>         a published exposure
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from hzp2p.contracts import privacy
from hzp2p.contracts.api import TxContext, decode_value, encode_value
from hzp2p.contracts.codelife import k_declared
from hzp2p.contracts.domain_queries import (
    DAY_MS,
    StateReader,
    fail,
    load,
    store,
    values,
)
from hzp2p.contracts.healthcode import current_code, lifecycle_rules, write_code
from hzp2p.contracts.registry import contract, payload_generator
from hzp2p.contracts.schema import Bytes, Choice, Id, Int, ListOf, Problem, Schema
from hzp2p.crypto.records import pseudonym

QR_DOMAIN = "hzp2p.venue.qr.v1"
QR_PREFIX = "HZV1."
LEVELS = ("low", "medium", "high")
MAX_WINDOW_MS = 7 * DAY_MS
"""Longest time window one exposure may name."""
MAX_AGE_MS = 30 * DAY_MS
"""An exposure window may start at most this long before its publication."""
MAX_CHECKINS_PER_TX = 64
"""Check-ins per checkin.record (an app may send a day's check-ins at once)."""

VENUE_SCHEMA = Schema({"venue_id": Id(), "verify_key": Bytes(32)})
VENUE_REVOKE_SCHEMA = Schema({"venue_id": Id()})
CHECKIN_SCHEMA = Schema(
    {"records": ListOf(privacy.ENVELOPE_SCHEMA.nested(), 1, MAX_CHECKINS_PER_TX)}
)


def _window(payload: Any, signer: bytes) -> list[Problem]:
    if payload["from_ms"] >= payload["to_ms"]:
        return [Problem("to_ms", "must be after from_ms")]
    if payload["to_ms"] - payload["from_ms"] > MAX_WINDOW_MS:
        return [Problem("to_ms", f"window longer than {MAX_WINDOW_MS // DAY_MS} days")]
    return []


PUBLISH_SCHEMA = Schema(
    {
        "exposure_id": Id(),
        "venue_id": Id(),
        "from_ms": Int(0, 2**62),
        "to_ms": Int(0, 2**62),
        "level": Choice(*LEVELS),
    },
    {"case_ref": Id()},
    rules=(_window,),
)
DECLARE_SCHEMA = Schema({"exposure_id": Id()})


def k_venue(venue_id: str) -> bytes:
    return f"venue/{venue_id}".encode()


def k_exposure(exposure_id: str = "") -> bytes:
    return f"expo/{exposure_id}".encode()


# ---------------------------------------------------------------- the venue QR code


class VenueQRError(ValueError):
    """A scanned text is not a valid venue QR code (or not one valid today)."""


@dataclass(frozen=True, slots=True)
class VenueQR:
    venue_id: str
    day: int  # days since the epoch (UTC): the code rotates daily
    verify_key: bytes
    signature: bytes


def venue_qr_message(chain_id: str, venue_id: str, day: int) -> bytes:
    """What a venue's key signs for the QR code it shows on `day`."""
    return encode_value([QR_DOMAIN, chain_id, venue_id, day])


def make_venue_qr(
    venue_key: nacl.signing.SigningKey, chain_id: str, venue_id: str, day: int
) -> str:
    """The text of a venue's QR code for `day` (day number = time_ms // DAY_MS)."""
    sig = bytes(venue_key.sign(venue_qr_message(chain_id, venue_id, day)).signature)
    body = encode_value([venue_id, day, bytes(venue_key.verify_key), sig])
    return QR_PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")


def parse_venue_qr(text: str, chain_id: str) -> VenueQR:
    """Decode and check the signature of a scanned QR text (raises VenueQRError)."""
    if not text.startswith(QR_PREFIX) or len(text) > 512:
        raise VenueQRError("not a venue QR code")
    raw = text[len(QR_PREFIX) :]
    try:
        body = decode_value(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        venue_id, day, vk, sig = body
        qr = VenueQR(venue_id, day, vk, sig)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise VenueQRError("malformed venue QR code") from exc
    if Id()(qr.venue_id, "venue_id") or type(qr.day) is not int or qr.day < 0:
        raise VenueQRError("malformed venue QR code")
    if not (isinstance(vk, bytes) and len(vk) == 32 and isinstance(sig, bytes)):
        raise VenueQRError("malformed venue QR code")
    try:
        nacl.signing.VerifyKey(vk).verify(venue_qr_message(chain_id, venue_id, day), sig)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise VenueQRError("venue QR signature is invalid") from exc
    return qr


def verify_venue_qr(state: StateReader, qr: VenueQR, now_ms: int) -> dict[str, Any]:
    """The venue a parsed QR code belongs to, if it is registered, active, its key and
    shown today (`now_ms`); raises VenueQRError otherwise."""
    venue = venue_record(state, qr.venue_id)
    if venue is None or not venue["active"]:
        raise VenueQRError(f"venue {qr.venue_id!r} is not registered")
    if venue["verify_key"] != qr.verify_key:
        raise VenueQRError("venue QR is not signed by the venue's registered key")
    if qr.day != now_ms // DAY_MS:
        raise VenueQRError("venue QR code is not today's")
    return venue


# ---------------------------------------------------------------- venues


@contract("venue.register", schema=VENUE_SCHEMA)
def venue_register(ctx: TxContext) -> None:
    """A member registers a venue key: venue_id, verify_key (Ed25519)."""
    inst = ctx.require_member()
    venue_id, vk = ctx.payload["venue_id"], ctx.payload["verify_key"]
    if ctx.state.get(k_venue(venue_id)) is not None:
        fail(ctx, f"venue {venue_id!r} already registered")
    if vk == bytes(32):
        fail(ctx, "verify_key must not be all zeros")
    store(
        ctx.state,
        k_venue(venue_id),
        {
            "venue_id": venue_id,
            "inst_id": inst.inst_id,
            "verify_key": vk,
            "active": True,
            "height": ctx.height,
            "tx_hash": ctx.tx_hash,
        },
    )


@contract("venue.revoke", schema=VENUE_REVOKE_SCHEMA)
def venue_revoke(ctx: TxContext) -> None:
    """The venue's institution retires it: venue_id (its QR codes no longer verify)."""
    inst = ctx.require_member()
    venue = venue_record(ctx.state, ctx.payload["venue_id"])
    if venue is None or venue["inst_id"] != inst.inst_id:
        fail(ctx, f"venue {ctx.payload['venue_id']!r} is not registered by this institution")
    if not venue["active"]:
        fail(ctx, "venue already revoked")
    venue.update(active=False, revoked_height=ctx.height)
    store(ctx.state, k_venue(venue["venue_id"]), venue)


# ---------------------------------------------------------------- check-ins


@contract("checkin.record", schema=CHECKIN_SCHEMA, citizen=True)
def checkin_record(ctx: TxContext) -> None:
    """Signed by the citizen: records (check-in envelopes sealed to her alone)."""
    if ctx.sender is not None:
        fail(ctx, "must be signed by the subject's own key, not an institution's")
    subject = pseudonym(ctx.signer)
    for env in ctx.payload["records"]:
        privacy.store_record(ctx, None, subject, "checkin", env)


# ---------------------------------------------------------------- exposures


@contract("exposure.publish", schema=PUBLISH_SCHEMA)
def exposure_publish(ctx: TxContext) -> None:
    """An authority publishes a venue and window of concern: exposure_id, venue_id,
    from_ms, to_ms, level [, case_ref]."""
    authority = ctx.require_member("authority")
    p = ctx.payload
    venue = venue_record(ctx.state, p["venue_id"])
    if venue is None:
        fail(ctx, f"venue {p['venue_id']!r} is not registered")
    if p["to_ms"] > ctx.timestamp_ms:
        fail(ctx, "to_ms must not be after the block timestamp")
    if p["from_ms"] < ctx.timestamp_ms - MAX_AGE_MS:
        fail(ctx, f"from_ms is more than {MAX_AGE_MS // DAY_MS} days ago")
    key = k_exposure(p["exposure_id"])
    if ctx.state.get(key) is not None:
        fail(ctx, f"exposure {p['exposure_id']!r} already published")
    store(
        ctx.state,
        key,
        {
            "exposure_id": p["exposure_id"],
            "venue_id": p["venue_id"],
            "from_ms": p["from_ms"],
            "to_ms": p["to_ms"],
            "level": p["level"],
            "case_ref": p.get("case_ref"),
            "by": authority.inst_id,
            "height": ctx.height,
            "timestamp_ms": ctx.timestamp_ms,
            "tx_hash": ctx.tx_hash,
        },
    )


@contract("exposure.declare", schema=DECLARE_SCHEMA, citizen=True)
def exposure_declare(ctx: TxContext) -> None:
    """Signed by the citizen whose app matched a published exposure: exposure_id."""
    if ctx.sender is not None:
        fail(ctx, "must be signed by the subject's own key, not an institution's")
    subject = pseudonym(ctx.signer)
    r = lifecycle_rules(ctx)
    exposure_id = ctx.payload["exposure_id"]
    exp = exposure(ctx.state, exposure_id)
    if exp is None:
        fail(ctx, f"exposure {exposure_id!r} was not published")
    days = r.params["quarantine_days"]
    until = exp["to_ms"] + days * DAY_MS
    if ctx.timestamp_ms >= until:
        fail(ctx, f"exposure {exposure_id!r} expired (its {days}-day quarantine period is over)")
    dkey = k_declared(subject, exposure_id)
    if ctx.state.get(dkey) is not None:
        fail(ctx, f"exposure {exposure_id!r} already declared")
    store(ctx.state, dkey, {"height": ctx.height, "tx_hash": ctx.tx_hash})
    code = current_code(ctx, subject)
    before = code["colour"]
    decl = {
        "exposure_id": exposure_id,
        "to_ms": exp["to_ms"],
        "until_ms": until,
        "quarantine_days": days,
        "declared_tx": ctx.tx_hash,
    }
    if before == "green":
        code.update(
            colour="yellow",
            source="exposure",
            reason=f"declared exposure {exposure_id} ({exp['level']})",
            since_ms=ctx.timestamp_ms,
            rules_version=r.version,
            cause_tx=ctx.tx_hash,
            exposure=decl,
        )
    elif (
        code["source"] == "exposure"
        and code.get("exposure") is not None
        and until > code["exposure"]["until_ms"]
    ):
        code["exposure"] = decl  # a later exposure extends the quarantine
    write_code(
        ctx,
        code,
        {
            "event": "exposure.declare",
            "by": "subject",
            "exposure_id": exposure_id,
            "until_ms": until,
            "changed": code["colour"] != before,
            "reason": code["reason"] if code["colour"] != before else "",
            "rules_version": r.version,
        },
    )


# ---------------------------------------------------------------- queries


def venue_record(state: StateReader, venue_id: str) -> dict[str, Any] | None:
    rec: dict[str, Any] | None = load(state, k_venue(venue_id))
    return rec


def exposure(state: StateReader, exposure_id: str) -> dict[str, Any] | None:
    rec: dict[str, Any] | None = load(state, k_exposure(exposure_id))
    return rec


def exposures(state: StateReader) -> list[dict[str, Any]]:
    """Every published exposure, by id (what an app downloads to match locally)."""
    return values(state, k_exposure())


def current_exposures(
    state: StateReader, now_ms: int, quarantine_days: int
) -> list[dict[str, Any]]:
    """Published exposures that can still be declared at `now_ms`."""
    return [e for e in exposures(state) if now_ms < e["to_ms"] + quarantine_days * DAY_MS]


def declared(state: StateReader, subject: str, exposure_id: str) -> bool:
    return state.get(k_declared(subject, exposure_id)) is not None


@payload_generator("venue.register")
def _gen_venue(i: int) -> dict[str, Any]:
    return {"venue_id": f"bench-venue-{i}", "verify_key": bytes([1 + i % 255]) * 32}
