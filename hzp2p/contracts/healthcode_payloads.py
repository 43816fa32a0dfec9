"""Payload builders of the health-code life (issue 17), re-exported by hzp2p.client.

Pure functions below the client layer (like privacy.erase_request_message and
coldchain.readings_message), so the client library stays one module of ~600 lines.

Venues, exposures, recoveries, appeals and rule proposals, and the padded plaintext
and random id of a check-in record (so neither a venue nor its id's length shows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hzp2p.contracts.exposure import VenueQR
from hzp2p.ledger.codec import pack


def venue_register_payload(venue_id: str, verify_key: bytes) -> dict[str, Any]:
    return {"venue_id": venue_id, "verify_key": verify_key}


def exposure_publish_payload(
    exposure_id: str,
    venue_id: str,
    from_ms: int,
    to_ms: int,
    level: str,
    case_ref: str | None = None,
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "exposure_id": exposure_id,
        "venue_id": venue_id,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "level": level,
    }
    if case_ref is not None:
        p["case_ref"] = case_ref
    return p


def recovery_payload(subject: str, recovered_ms: int, reason: str) -> dict[str, Any]:
    return {"subject": subject, "recovered_ms": recovered_ms, "reason": reason}


def appeal_payload(
    subject: str, appeal_id: str, event: int, reason: str, evidence_hash: bytes | None = None
) -> dict[str, Any]:
    p: dict[str, Any] = {"subject": subject, "appeal_id": appeal_id, "event": event, "reason": reason}
    if evidence_hash is not None:
        p["evidence_hash"] = evidence_hash
    return p


def resolve_payload(
    subject: str, appeal_id: str, outcome: str, reason: str, colour: str | None = None
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "subject": subject,
        "appeal_id": appeal_id,
        "outcome": outcome,
        "reason": reason,
    }
    if colour is not None:
        p["colour"] = colour
    return p


def rules_propose_payload(
    rule: str, params: Mapping[str, int], activation_height: int
) -> dict[str, Any]:
    return {"rule": rule, "params": dict(params), "activation_height": activation_height}


CHECKIN_PLAINTEXT_BYTES = 224
"""Every check-in's fields pack to exactly this many bytes, so ciphertexts all have one size."""


def checkin_fields(qr: VenueQR, t_ms: int) -> dict[str, Any]:
    """The encrypted fields of a check-in, padded to CHECKIN_PLAINTEXT_BYTES."""
    fields: dict[str, Any] = {
        "venue_id": qr.venue_id,
        "day": qr.day,
        "t_ms": t_ms,
        "venue_sig": qr.signature,
        "pad": b"",
    }
    n = CHECKIN_PLAINTEXT_BYTES - len(pack(fields))
    assert 0 <= n < 256, "check-in fields do not fit their padded size"
    fields["pad"] = bytes(n)
    assert len(pack(fields)) == CHECKIN_PLAINTEXT_BYTES
    return fields


def new_checkin_id() -> str:
    """A random record id of fixed length (it says nothing about the visit)."""
    return "ci-" + os.urandom(12).hex()
