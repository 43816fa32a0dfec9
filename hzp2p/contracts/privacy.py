"""Privacy and consent: encrypted records, consent grants, key hand-overs, erasure.

The chain never sees personal fields in the clear. A record (written by
vaccination.record, lab.result, recovery.record or record.write) carries a ciphertext
under a per-record key and that key sealed to exactly two holders: the subject
("subject") and the writer ("inst:<id>"). A record the subject writes herself (a
venue check-in, `checkin.record` in hzp2p.contracts.exposure) is sealed to the subject
alone, so no institution holds its key. Anyone else becomes a holder only through a
checked `access.share` (by a holding institution, or by the subject herself), on one
of two bases:
- "grant": an unexpired, unrevoked consent grant, signed by the subject, whose
  grantee, record types and purpose cover the hand-over;
- "emergency": an open `access.emergency` authorisation, which an authority
  requests with a stated reason and a holder then honours.
Every share and emergency request is appended to the subject's access log.
`consent.revoke` blocks further shares under that grant and withdraws the
keys handed over under it from state. `record.erase` deletes every sealed key
of the record from state for good (the ciphertext stays, unreadable) and
refuses all later shares. Institutions may register their own X25519
encryption keys (`enckey.set`, rotatable) and move their copies of record keys
to the current one (`access.rewrap`), so a retired private key can be
destroyed; see docs/contracts.md for what erasure can and cannot undo.
"""

from __future__ import annotations

from typing import Any

import nacl.exceptions
import nacl.signing

from hzp2p.contracts.api import Institution, TxContext, decode_value, encode_value
from hzp2p.contracts.domain_queries import (
    DAY_MS,
    append_event,
    append_seq,
    fail,
    institution,
    k_access_log,
    k_emergency,
    k_enc_key,
    k_grant,
    k_held,
    k_record,
    k_subject_records,
    load,
    rule_version,
    store,
)
from hzp2p.contracts.registry import contract, rules
from hzp2p.contracts.schema import (
    Bytes,
    Choice,
    Id,
    Int,
    ListOf,
    MapOf,
    Match,
    Problem,
    Schema,
    Subject,
    Text,
)
from hzp2p.crypto.records import (
    MAX_CIPHERTEXT_BYTES,
    MIN_CIPHERTEXT_BYTES,
    SEALED_KEY_BYTES,
    SUBJECT_HOLDER,
    institution_holder,
    pseudonym,
)

RECORD_TYPES = ("vaccination", "lab_result", "diagnosis", "checkin")
SUBJECT_WRITTEN = ("checkin",)
"""Record types the subject writes herself, sealed to her alone."""
# record.write: which role may write which record type directly
WRITE_ROLES = {"diagnosis": "hospital", "lab_result": "lab"}
PRIVACY_RULES: dict[int, dict[str, int]] = {
    1: {"emergency_window_ms": DAY_MS, "max_grant_days": 3650, "max_grant_types": 8},
}
rules("privacy", PRIVACY_RULES)
ERASE_DOMAIN = "hzp2p.record.erase.v1"
MAX_GRANT_TYPES = 8
INST_ID = Int(0, 2**63 - 1)
_HOLDER = Match(r"subject|inst:[0-9]{1,19}", "'subject' or 'inst:<id>'")
ENVELOPE_SCHEMA = Schema(
    {
        "record_id": Id(),
        "ciphertext": Bytes(MIN_CIPHERTEXT_BYTES, MAX_CIPHERTEXT_BYTES),
        "key_commitment": Bytes(32),
        "sealed_keys": MapOf(_HOLDER, Bytes(SEALED_KEY_BYTES), 8),
    }
)
"""An encrypted record as it travels in a payload: nothing else may ride along."""
WRITE_SCHEMA = Schema(
    {
        "subject": Subject(),
        "record_type": Choice(*sorted(WRITE_ROLES)),
        "record": ENVELOPE_SCHEMA.nested(),
    }
)
GRANT_SCHEMA = Schema(
    {
        "grant_id": Id(),
        "grantee": INST_ID,
        "record_types": ListOf(Choice(*RECORD_TYPES), 1, MAX_GRANT_TYPES),
        "purpose": Text(128),
        "expiry_ms": Int(0, 2**62),
    }
)
REVOKE_SCHEMA = Schema({"grant_id": Id()})


def _share_basis(payload: Any, signer: bytes) -> list[Problem]:
    if payload["basis"] == "grant":
        missing = sorted(k for k in ("grant_id", "purpose") if k not in payload)
        return [Problem("", f"basis 'grant' needs {', '.join(missing)}")] if missing else []
    # would ride along unchecked (and unlogged): refuse, like any unknown field
    stray = sorted(k for k in ("grant_id", "purpose") if k in payload)
    return [Problem(k, "not used with basis 'emergency'") for k in stray]


SHARE_SCHEMA = Schema(
    {
        "record_id": Id(),
        "grantee": INST_ID,
        "sealed_key": Bytes(SEALED_KEY_BYTES),
        "basis": Choice("grant", "emergency"),
    },
    {"grant_id": Id(), "purpose": Text(128)},
    rules=(_share_basis,),
)
EMERGENCY_SCHEMA = Schema({"record_id": Id(), "reason": Text()})


def _erase_request(payload: Any, signer: bytes) -> list[Problem]:
    req = payload.get("subject_request")
    if req is None:
        return []
    try:
        nacl.signing.VerifyKey(req["subject_key"]).verify(
            erase_request_message(payload["record_id"]), req["signature"]
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return [Problem("subject_request.signature", "is invalid")]
    return []


ERASE_SCHEMA = Schema(
    {"record_id": Id()},
    {"subject_request": Schema({"subject_key": Bytes(32), "signature": Bytes(64)}).nested()},
    rules=(_erase_request,),
)
ENCKEY_SCHEMA = Schema({"key_id": Int(0, 2**31), "public_key": Bytes(32)})
REWRAP_SCHEMA = Schema({"record_id": Id(), "sealed_key": Bytes(SEALED_KEY_BYTES)})


def erase_request_message(record_id: str) -> bytes:
    """What a subject signs to ask the writer to erase `record_id` on their behalf."""
    return encode_value([ERASE_DOMAIN, record_id])


# ---------------------------------------------------------------- records


def store_record(
    ctx: TxContext,
    writer: Institution | None,
    subject: str,
    record_type: str,
    env: Any = None,
) -> str:
    """Validate an encrypted envelope (default: ctx.payload["record"]) and store it; returns
    its id.

    An institution's record must seal the key to exactly the subject and the writer; a
    record the subject writes herself (`writer` None, a type in SUBJECT_WRITTEN) to the
    subject alone. The contract cannot see inside a sealed box, so a holder checks what
    it opens against `key_commitment` (hzp2p.crypto.records.open_sealed_key).
    """
    assert record_type in RECORD_TYPES
    assert (writer is None) == (record_type in SUBJECT_WRITTEN)
    if env is None:
        env = ctx.payload["record"]  # its shape passed ENVELOPE_SCHEMA
    record_id: str = env["record_id"]
    ciphertext, commitment, sealed = env["ciphertext"], env["key_commitment"], env["sealed_keys"]
    writer_holder = SUBJECT_HOLDER if writer is None else institution_holder(writer.inst_id)
    expected = sorted({SUBJECT_HOLDER, writer_holder})
    if sorted(sealed) != expected:
        fail(
            ctx,
            f"record.sealed_keys must seal the key to exactly {' and '.join(map(repr, expected))}",
        )
    if ctx.state.get(k_record(record_id)) is not None:
        fail(ctx, f"record {record_id!r} already exists")
    by: Any = "subject" if writer is None else writer.inst_id
    holders = {
        h: {
            "sealed_key": sealed[h],
            "key_id": current_key_id(ctx, writer.inst_id)
            if writer is not None and h == writer_holder
            else 0,
            "via": "writer" if writer is not None and h == writer_holder else "subject",
            "by": by,
            "height": ctx.height,
        }
        for h in sorted(sealed)
    }
    if writer is not None:
        ctx.state.put(k_held(writer.inst_id, record_id), encode_value(ctx.height))
    store(
        ctx.state,
        k_record(record_id),
        {
            "record_id": record_id,
            "subject": subject,
            "type": record_type,
            "writer": None if writer is None else writer.inst_id,
            "ciphertext": ciphertext,
            "key_commitment": commitment,
            "holders": holders,
            "erased": None,
            "height": ctx.height,
            "timestamp_ms": ctx.timestamp_ms,
            "tx_hash": ctx.tx_hash,
        },
    )
    append_seq(ctx.state, k_subject_records(subject), record_id)
    return record_id


def current_key_id(ctx: TxContext, inst_id: int) -> int:
    """The id of an institution's current encryption key (0: derived from its signing key)."""
    reg: dict[str, Any] | None = load(ctx.state, k_enc_key(inst_id))
    return 0 if reg is None else int(reg["key_id"])


def _holder_inst(holder: str) -> int | None:
    return int(holder[5:]) if holder.startswith("inst:") else None


def _drop_holders(ctx: TxContext, rec: dict[str, Any], keep: dict[str, Any]) -> None:
    """Keep only the holders in `keep`, updating the holder index."""
    for h in sorted(rec["holders"]):
        inst = _holder_inst(h)
        if h not in keep and inst is not None:
            ctx.state.delete(k_held(inst, rec["record_id"]))
    rec["holders"] = {h: keep[h] for h in sorted(keep)}


def _record(ctx: TxContext, record_id: str) -> dict[str, Any]:
    rec: dict[str, Any] | None = load(ctx.state, k_record(record_id))
    if rec is None:
        fail(ctx, f"unknown record {record_id!r}")
    if rec["erased"] is not None:
        fail(ctx, f"record {record_id!r} was erased")
    return rec


def _log(ctx: TxContext, rec: dict[str, Any], entry: dict[str, Any]) -> None:
    append_event(
        ctx,
        k_access_log(rec["subject"]),
        {**entry, "record_id": rec["record_id"], "record_type": rec["type"]},
    )


def _member(ctx: TxContext, inst_id: int, what: str) -> Institution:
    inst = institution(ctx.state, inst_id)
    if inst is None or not inst.active:
        fail(ctx, f"{what} {inst_id} is not an active member")
    return inst


@contract("record.write", schema=WRITE_SCHEMA)
def record_write(ctx: TxContext) -> None:
    """A record with no other contract: payload subject, record_type, record (envelope)."""
    record_type = ctx.payload["record_type"]
    writer = ctx.require_member(WRITE_ROLES[record_type])
    store_record(ctx, writer, ctx.payload["subject"], record_type)


# ---------------------------------------------------------------- consent


def _citizen_subject(ctx: TxContext) -> str:
    if ctx.sender is not None:
        fail(ctx, "must be signed by the subject's own key, not an institution's")
    return pseudonym(ctx.signer)


@contract("consent.grant", schema=GRANT_SCHEMA, citizen=True)
def consent_grant(ctx: TxContext) -> None:
    """Signed by the subject: grant_id, grantee, record_types, purpose, expiry_ms."""
    subject = _citizen_subject(ctx)
    _, rules = rule_version(ctx, "privacy", PRIVACY_RULES)
    p = ctx.payload
    grant_id, grantee, types, purpose = p["grant_id"], p["grantee"], p["record_types"], p["purpose"]
    if len(types) > rules["max_grant_types"]:
        fail(ctx, f"record_types may name at most {rules['max_grant_types']} types")
    expiry = p["expiry_ms"]
    latest = ctx.timestamp_ms + rules["max_grant_days"] * DAY_MS
    if not ctx.timestamp_ms < expiry <= latest:
        fail(ctx, f"expiry_ms out of range [{ctx.timestamp_ms + 1}, {latest}]")
    _member(ctx, grantee, "grantee")
    key = k_grant(subject, grant_id)
    if ctx.state.get(key) is not None:
        fail(ctx, f"grant {grant_id!r} already exists")
    store(
        ctx.state,
        key,
        {
            "grant_id": grant_id,
            "subject": subject,
            "grantee": grantee,
            "record_types": sorted(set(types)),
            "purpose": purpose,
            "expiry_ms": expiry,
            "granted_ms": ctx.timestamp_ms,
            "height": ctx.height,
            "revoked_ms": None,
        },
    )


@contract("consent.revoke", schema=REVOKE_SCHEMA, citizen=True)
def consent_revoke(ctx: TxContext) -> None:
    """Signed by the subject: grant_id. Later shares under it are refused; keys handed
    over under it are withdrawn from state."""
    subject = _citizen_subject(ctx)
    grant_id: str = ctx.payload["grant_id"]
    key = k_grant(subject, grant_id)
    grant: dict[str, Any] | None = load(ctx.state, key)
    if grant is None:
        fail(ctx, f"unknown grant {grant_id!r}")
    if grant["revoked_ms"] is not None:
        fail(ctx, f"grant {grant_id!r} already revoked")
    grant["revoked_ms"] = ctx.timestamp_ms
    grant["revoked_height"] = ctx.height
    store(ctx.state, key, grant)
    via = f"grant:{grant_id}"
    for _, rid in list(ctx.state.scan(k_subject_records(subject))):
        rkey = k_record(decode_value(rid))
        rec: dict[str, Any] | None = load(ctx.state, rkey)
        assert rec is not None
        kept = {h: v for h, v in rec["holders"].items() if v["via"] != via}
        if len(kept) != len(rec["holders"]):
            _drop_holders(ctx, rec, kept)
            store(ctx.state, rkey, rec)


# ---------------------------------------------------------------- access


def _covering_grant(ctx: TxContext, rec: dict[str, Any], grantee: int, purpose: str) -> str:
    grant_id: str = ctx.payload["grant_id"]
    grant: dict[str, Any] | None = load(ctx.state, k_grant(rec["subject"], grant_id))
    if grant is None:
        fail(ctx, f"no grant {grant_id!r} from this record's subject")
    if grant["revoked_ms"] is not None:
        fail(ctx, f"grant {grant_id!r} was revoked")
    if grant["expiry_ms"] <= ctx.timestamp_ms:
        fail(ctx, f"grant {grant_id!r} expired")
    if grant["grantee"] != grantee:
        fail(ctx, f"grant {grant_id!r} does not name institution {grantee}")
    if rec["type"] not in grant["record_types"]:
        fail(ctx, f"grant {grant_id!r} does not cover record type {rec['type']!r}")
    if grant["purpose"] != purpose:
        fail(ctx, f"grant {grant_id!r} does not cover purpose {purpose!r}")
    return grant_id


@contract("access.share", schema=SHARE_SCHEMA, citizen=True)
def access_share(ctx: TxContext) -> None:
    """A key holder hands a record key to a grantee: an institution holding it, or the
    record's subject herself (signed with her key: the only way to hand over a record
    sealed to her alone, such as a check-in), on the same bases.

    Payload: record_id, grantee, sealed_key, basis ("grant" | "emergency"),
    and for "grant": grant_id and purpose.
    """
    p = ctx.payload
    by: Any
    if ctx.sender is None:
        rec = _record(ctx, p["record_id"])
        if pseudonym(ctx.signer) != rec["subject"] or SUBJECT_HOLDER not in rec["holders"]:
            fail(ctx, "signer is neither a member nor this record's subject")
        by = "subject"
    else:
        sender = ctx.require_member()
        rec = _record(ctx, p["record_id"])
        if institution_holder(sender.inst_id) not in rec["holders"]:
            fail(
                ctx, f"sender {sender.inst_id} does not hold the key of record {rec['record_id']!r}"
            )
        by = sender.inst_id
    grantee_id, sealed_key, basis = p["grantee"], p["sealed_key"], p["basis"]
    grantee = _member(ctx, grantee_id, "grantee")
    holder = institution_holder(grantee_id)
    if holder in rec["holders"]:
        fail(ctx, f"institution {grantee_id} already holds this record's key")
    entry: dict[str, Any] = {"kind": "share", "by": by, "grantee": grantee_id}
    if basis == "grant":
        purpose = p["purpose"]
        grant_id = _covering_grant(ctx, rec, grantee_id, purpose)
        via = f"grant:{grant_id}"
        entry.update(purpose=purpose, grant_id=grant_id)
    else:
        ekey = k_emergency(rec["record_id"], grantee_id)
        auth: dict[str, Any] | None = load(ctx.state, ekey)
        if auth is None or auth["fulfilled"]:
            fail(ctx, f"no open emergency authorisation for institution {grantee_id}")
        if auth["expires_ms"] <= ctx.timestamp_ms:
            fail(ctx, "emergency authorisation expired")
        if not grantee.has_role("authority"):
            fail(ctx, f"institution {grantee_id} is no longer an authority")
        auth["fulfilled"] = True
        auth["fulfilled_by"] = by
        store(ctx.state, ekey, auth)
        via = "emergency"
        entry.update(purpose="emergency", reason=auth["reason"])
    holders = dict(rec["holders"])
    holders[holder] = {
        "sealed_key": sealed_key,
        "key_id": current_key_id(ctx, grantee_id),
        "via": via,
        "by": by,
        "height": ctx.height,
    }
    rec["holders"] = {h: holders[h] for h in sorted(holders)}
    ctx.state.put(k_held(grantee_id, rec["record_id"]), encode_value(ctx.height))
    store(ctx.state, k_record(rec["record_id"]), rec)
    _log(ctx, rec, entry)


@contract("access.emergency", schema=EMERGENCY_SCHEMA)
def access_emergency(ctx: TxContext) -> None:
    """An authority's break-glass request: record_id, reason. A holder then hands the key
    over with access.share basis "emergency" within the rules' window."""
    authority = ctx.require_member("authority")
    rec = _record(ctx, ctx.payload["record_id"])
    reason = ctx.payload["reason"]
    _, rules = rule_version(ctx, "privacy", PRIVACY_RULES)
    if institution_holder(authority.inst_id) in rec["holders"]:
        fail(ctx, f"institution {authority.inst_id} already holds this record's key")
    ekey = k_emergency(rec["record_id"], authority.inst_id)
    prev: dict[str, Any] | None = load(ctx.state, ekey)
    if prev is not None and not prev["fulfilled"] and prev["expires_ms"] > ctx.timestamp_ms:
        fail(ctx, "an emergency authorisation for this record is already open")
    store(
        ctx.state,
        ekey,
        {
            "record_id": rec["record_id"],
            "authority": authority.inst_id,
            "reason": reason,
            "requested_ms": ctx.timestamp_ms,
            "expires_ms": ctx.timestamp_ms + rules["emergency_window_ms"],
            "fulfilled": False,
        },
    )
    _log(
        ctx,
        rec,
        {
            "kind": "emergency",
            "by": authority.inst_id,
            "grantee": authority.inst_id,
            "purpose": "emergency",
            "reason": reason,
        },
    )


@contract("record.erase", schema=ERASE_SCHEMA, citizen=True)
def record_erase(ctx: TxContext) -> None:
    """Destroy a record's sealed keys. Signed by the subject, or submitted by the writer
    with `subject_request` = {subject_key, signature over erase_request_message} (the
    signature is checked by the stateless check)."""
    rec = _record(ctx, ctx.payload["record_id"])
    if ctx.sender is None:
        if pseudonym(ctx.signer) != rec["subject"]:
            fail(ctx, "only the record's subject may erase it")
        by: Any = "subject"
    else:
        writer = ctx.require_member()
        if writer.inst_id != rec["writer"]:
            fail(ctx, "only the record's subject or its writer (on request) may erase it")
        req = ctx.payload.get("subject_request")
        if req is None:
            fail(ctx, "subject_request: needed when the writer erases")
        if pseudonym(req["subject_key"]) != rec["subject"]:
            fail(ctx, "subject_request key is not the record's subject")
        by = writer.inst_id
    _drop_holders(ctx, rec, {})
    rec["erased"] = {"by": by, "height": ctx.height, "timestamp_ms": ctx.timestamp_ms}
    store(ctx.state, k_record(rec["record_id"]), rec)
    _log(ctx, rec, {"kind": "erase", "by": by, "grantee": None, "purpose": "erasure"})
    assert not rec["holders"]


# ---------------------------------------------------------------- encryption keys


@contract("enckey.set", schema=ENCKEY_SCHEMA)
def enckey_set(ctx: TxContext) -> None:
    """A member registers (or rotates to) its own X25519 encryption key: key_id, public_key.

    key_id must be the current id + 1 (the first registered key is 1; 0 is the key
    derived from the signing key). Records sealed to an older key stay sealed to it
    until the holder rewraps them (`access.rewrap`); once it has, it can destroy the
    old private key, and the sealed keys of erased records in the block history die with it.
    """
    inst = ctx.require_member()
    current = current_key_id(ctx, inst.inst_id)
    key_id, public_key = ctx.payload["key_id"], ctx.payload["public_key"]
    if key_id != current + 1:
        fail(ctx, f"key_id must be {current + 1} (current key id is {current})")
    if public_key == bytes(32):
        fail(ctx, "public_key must not be all zeros")
    store(
        ctx.state,
        k_enc_key(inst.inst_id),
        {
            "inst_id": inst.inst_id,
            "key_id": key_id,
            "public_key": public_key,
            "height": ctx.height,
            "timestamp_ms": ctx.timestamp_ms,
        },
    )


@contract("access.rewrap", schema=REWRAP_SCHEMA)
def access_rewrap(ctx: TxContext) -> None:
    """A holder replaces its own sealed key with one sealed to its current encryption key:
    record_id, sealed_key. Not a new access (nobody new gets the key), so not logged;
    refused for erased records, whose keys must stay dead."""
    inst = ctx.require_member()
    rec = _record(ctx, ctx.payload["record_id"])
    sealed_key = ctx.payload["sealed_key"]
    holder = institution_holder(inst.inst_id)
    entry = rec["holders"].get(holder)
    if entry is None:
        fail(ctx, f"sender {inst.inst_id} does not hold the key of record {rec['record_id']!r}")
    current = current_key_id(ctx, inst.inst_id)
    if entry.get("key_id", 0) == current:
        fail(ctx, f"already sealed to the current key {current}")
    rec["holders"][holder] = {
        **entry,
        "sealed_key": sealed_key,
        "key_id": current,
        "rewrapped_height": ctx.height,
    }
    store(ctx.state, k_record(rec["record_id"]), rec)
