"""Appeals against a health code (纠错, the correction interface of GB/T 38963).

- `healthcode.appeal` (signed by the citizen): subject (must be her own pseudonym),
  appeal_id, event (the sequence number of the code event she contests, from her
  history), reason (one of APPEAL_REASONS: a citizen's own words could carry her name
  or identity number, and the chain keeps everything in the clear for good) [,
  evidence_hash: 32 bytes, the hash of her statement and evidence, handed to the
  authority off chain or as an encrypted record].
  Refused on someone else's code, an unknown event, a reused appeal id, or while an
  appeal on the same event is open.
- `healthcode.resolve` (authority): subject, appeal_id, outcome ("upheld": the code
  stands; "corrected": the code takes `colour`, source "appeal"), reason [, colour].

Both sides and the outcome go into her code history and her access log (an authority
looked at her code); an appeal open longer than the rules' `appeal_limit_days` is
listed by hzp2p.contracts.codelife.overdue_appeals.
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts.api import TxContext, decode_value
from hzp2p.contracts.codelife import COLOURS, k_appeal, k_open_appeal
from hzp2p.contracts.domain_queries import (
    append_event,
    fail,
    k_access_log,
    k_code_hist,
    load,
    store,
)
from hzp2p.contracts.healthcode import current_code, lifecycle_rules, write_code
from hzp2p.contracts.registry import contract
from hzp2p.contracts.schema import Choice, Id, Int, Key32, Problem, Schema, Subject, Text, key32
from hzp2p.crypto.records import pseudonym

OUTCOMES = ("upheld", "corrected")
APPEAL_REASONS = (
    "not_my_sample",
    "wrong_result",
    "wrong_time",
    "exposure_not_mine",
    "recovered",
    "period_over",
    "other",
)
APPEAL_SCHEMA = Schema(
    {
        "subject": Subject(),
        "appeal_id": Id(),
        "event": Int(0, 2**40),
        "reason": Choice(*APPEAL_REASONS),
    },
    {"evidence_hash": Key32()},
)


def _colour_iff_corrected(payload: Any, signer: bytes) -> list[Problem]:
    corrected = payload["outcome"] == "corrected"
    if corrected and "colour" not in payload:
        return [Problem("colour", "needed when the outcome is corrected")]
    if not corrected and "colour" in payload:
        return [Problem("colour", "only with the outcome corrected")]
    return []


RESOLVE_SCHEMA = Schema(
    {"subject": Subject(), "appeal_id": Id(), "outcome": Choice(*OUTCOMES), "reason": Text()},
    {"colour": Choice(*COLOURS)},
    rules=(_colour_iff_corrected,),
)


def _log(ctx: TxContext, subject: str, entry: dict[str, Any]) -> None:
    """Her access log: who acted on her code, and why (no record involved)."""
    append_event(
        ctx,
        k_access_log(subject),
        {**entry, "record_id": None, "record_type": "healthcode", "grantee": None},
    )


@contract("healthcode.appeal", schema=APPEAL_SCHEMA, citizen=True)
def healthcode_appeal(ctx: TxContext) -> None:
    """Signed by the citizen: subject, appeal_id, event, reason [, evidence_hash]."""
    if ctx.sender is not None:
        fail(ctx, "must be signed by the subject's own key, not an institution's")
    p = ctx.payload
    subject = p["subject"]
    if pseudonym(ctx.signer) != subject:
        fail(ctx, "a citizen may appeal only her own code")
    r = lifecycle_rules(ctx)
    event_key = k_code_hist(subject) + f"{p['event']:010d}".encode()
    event: dict[str, Any] | None = load(ctx.state, event_key)
    if event is None:
        fail(ctx, f"no event {p['event']} in this code's history")
    akey = k_appeal(subject, p["appeal_id"])
    if ctx.state.get(akey) is not None:
        fail(ctx, f"appeal {p['appeal_id']!r} already exists")
    for _, raw in ctx.state.scan(k_appeal(subject)):
        other = decode_value(raw)
        if other["status"] == "open" and other["event"] == p["event"]:
            fail(ctx, f"appeal {other['appeal_id']!r} on event {p['event']} is still open")
    evidence = key32(p["evidence_hash"]) if "evidence_hash" in p else None
    store(
        ctx.state,
        akey,
        {
            "appeal_id": p["appeal_id"],
            "subject": subject,
            "event": p["event"],
            "event_tx": event["tx_hash"],
            "reason": p["reason"],
            "evidence_hash": evidence,
            "status": "open",
            "opened_ms": ctx.timestamp_ms,
            "opened_height": ctx.height,
            "tx_hash": ctx.tx_hash,
            "rules_version": r.version,
        },
    )
    store(ctx.state, k_open_appeal(ctx.timestamp_ms, subject, p["appeal_id"]), 1)
    code = current_code(ctx, subject)
    write_code(
        ctx,
        code,
        {
            "event": "healthcode.appeal",
            "by": "subject",
            "appeal_id": p["appeal_id"],
            "on_event": p["event"],
            "reason": p["reason"],
            "changed": False,
            "rules_version": r.version,
        },
    )
    _log(
        ctx,
        subject,
        {"kind": "appeal", "by": "subject", "purpose": "correction", "reason": p["reason"],
         "appeal_id": p["appeal_id"]},
    )


@contract("healthcode.resolve", schema=RESOLVE_SCHEMA)
def healthcode_resolve(ctx: TxContext) -> None:
    """An authority resolves an open appeal: subject, appeal_id, outcome, reason [, colour]."""
    authority = ctx.require_member("authority")
    r = lifecycle_rules(ctx)
    p = ctx.payload
    subject, appeal_id, outcome, reason = p["subject"], p["appeal_id"], p["outcome"], p["reason"]
    akey = k_appeal(subject, appeal_id)
    appeal: dict[str, Any] | None = load(ctx.state, akey)
    if appeal is None:
        fail(ctx, f"no appeal {appeal_id!r} on this subject's code")
    if appeal["status"] != "open":
        fail(ctx, f"appeal {appeal_id!r} is already {appeal['status']}")
    code = current_code(ctx, subject)
    before = code["colour"]
    if outcome == "corrected":
        code.update(
            colour=p["colour"],
            source="appeal",
            reason=f"appeal {appeal_id} corrected: {reason}",
            since_ms=ctx.timestamp_ms,
            rules_version=r.version,
            cause_tx=ctx.tx_hash,
            exposure=None,
        )
    appeal.update(
        status=outcome,
        resolved_ms=ctx.timestamp_ms,
        resolved_height=ctx.height,
        resolved_by=authority.inst_id,
        resolution=reason,
        resolve_tx=ctx.tx_hash,
        colour=p.get("colour"),
    )
    store(ctx.state, akey, appeal)
    ctx.state.delete(k_open_appeal(appeal["opened_ms"], subject, appeal_id))
    write_code(
        ctx,
        code,
        {
            "event": "healthcode.resolve",
            "by": authority.inst_id,
            "appeal_id": appeal_id,
            "outcome": outcome,
            "reason": reason,
            "changed": code["colour"] != before,
            "rules_version": r.version,
        },
    )
    _log(
        ctx,
        subject,
        {"kind": "appeal.resolve", "by": authority.inst_id, "purpose": "correction",
         "reason": reason, "appeal_id": appeal_id, "outcome": outcome},
    )
