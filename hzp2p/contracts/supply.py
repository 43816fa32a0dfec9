"""Supply chain: product lots, their custody chain, recalls.

A manufacturer registers a lot (product, doses, expiry, allowed temperature
range in hundredths of a degree C) and holds its custody. Custody moves by
`lot.transfer` only from the current custodian to an active member holding a
custody role; a recalled or quarantined lot may only go back to its
manufacturer. `lot.recall` is the lot's manufacturer's or an authority's; `lot.release`
lets an authority lift a quarantine after investigating it.
The cold-chain contract quarantines lots (hzp2p.contracts.coldchain) and the
vaccination contract draws doses from them; both use the helpers here.
Every change is appended to the lot's event list (lot/e/<lot>/...).
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts.api import TxContext
from hzp2p.contracts.domain_queries import (
    append_event,
    fail,
    institution,
    k_lot,
    k_lot_events,
    load,
    p_id,
    p_int,
    p_only,
    p_text,
    store,
)
from hzp2p.contracts.registry import contract, payload_generator

CUSTODY_ROLES = ("carrier", "vaccination_site", "hospital", "manufacturer")
TEMP_LIMIT_CENTI_C = 30_000  # |temperature| bound, hundredths of a degree C
MAX_QUANTITY = 1_000_000_000
REGISTER_FIELDS = frozenset(
    {"lot_id", "product", "quantity", "expiry_ms", "temp_min_centi_c", "temp_max_centi_c"}
)
REASON_FIELDS = frozenset({"lot_id", "reason"})


def lot_status(lot: dict[str, Any]) -> str:
    """The status: "recalled", "quarantined" or "active" (a recall outranks a quarantine)."""
    if lot["recall"] is not None:
        return "recalled"
    if lot["quarantine"] is not None:
        return "quarantined"
    return "active"


def get_lot(ctx: TxContext, lot_id: str) -> dict[str, Any]:
    lot: dict[str, Any] | None = load(ctx.state, k_lot(lot_id))
    if lot is None:
        fail(ctx, f"unknown lot {lot_id!r}")
    return lot


def put_lot(ctx: TxContext, lot: dict[str, Any], event: dict[str, Any] | None = None) -> None:
    assert 0 <= lot["remaining"] <= lot["quantity"], "remaining doses out of range"
    lot["status"] = lot_status(lot)
    store(ctx.state, k_lot(lot["lot_id"]), lot)
    if event is not None:
        append_event(ctx, k_lot_events(lot["lot_id"]), event)


@contract("lot.register")
def lot_register(ctx: TxContext) -> None:
    """Payload: lot_id, product, quantity, expiry_ms, temp_min_centi_c, temp_max_centi_c."""
    maker = ctx.require_member("manufacturer")
    p_only(ctx, REGISTER_FIELDS)
    lot_id = p_id(ctx, "lot_id")
    product = p_id(ctx, "product")
    quantity = p_int(ctx, "quantity", 1, MAX_QUANTITY)
    expiry = p_int(ctx, "expiry_ms", ctx.timestamp_ms + 1, 2**62)
    tmin = p_int(ctx, "temp_min_centi_c", -TEMP_LIMIT_CENTI_C, TEMP_LIMIT_CENTI_C)
    tmax = p_int(ctx, "temp_max_centi_c", -TEMP_LIMIT_CENTI_C, TEMP_LIMIT_CENTI_C)
    if tmin >= tmax:
        fail(ctx, "temp_min_centi_c must be below temp_max_centi_c")
    if ctx.state.get(k_lot(lot_id)) is not None:
        fail(ctx, f"lot {lot_id!r} already registered")
    put_lot(
        ctx,
        {
            "lot_id": lot_id,
            "product": product,
            "manufacturer": maker.inst_id,
            "quantity": quantity,
            "remaining": quantity,
            "expiry_ms": expiry,
            "temp_min_centi_c": tmin,
            "temp_max_centi_c": tmax,
            "custodian": maker.inst_id,
            "custodians": [maker.inst_id],
            "recall": None,
            "quarantine": None,
            "registered_ms": ctx.timestamp_ms,
            "height": ctx.height,
        },
        {"kind": "register", "from": None, "to": maker.inst_id},
    )


@contract("lot.transfer")
def lot_transfer(ctx: TxContext) -> None:
    """Payload: lot_id, to (institution id). Sender must be the current custodian."""
    sender = ctx.require_member()
    p_only(ctx, frozenset({"lot_id", "to"}))
    lot = get_lot(ctx, p_id(ctx, "lot_id"))
    to = p_int(ctx, "to", 0, 2**63 - 1)
    if lot["custodian"] != sender.inst_id:
        fail(ctx, f"sender {sender.inst_id} is not the custodian of lot {lot['lot_id']!r}")
    if to == sender.inst_id:
        fail(ctx, "cannot transfer a lot to its current custodian")
    recipient = institution(ctx.state, to)
    if recipient is None or not recipient.active:
        fail(ctx, f"recipient {to} is not an active member")
    if not any(r in recipient.roles for r in CUSTODY_ROLES):
        fail(ctx, f"recipient {to} holds no custody role ({'/'.join(CUSTODY_ROLES)})")
    status = lot_status(lot)
    if status != "active" and to != lot["manufacturer"]:
        fail(ctx, f"lot is {status}: it may only return to its manufacturer")
    lot["custodian"] = to
    if to not in lot["custodians"]:
        lot["custodians"] = sorted([*lot["custodians"], to])
    put_lot(ctx, lot, {"kind": "transfer", "from": sender.inst_id, "to": to})


@contract("lot.recall")
def lot_recall(ctx: TxContext) -> None:
    """Payload: lot_id, reason. By the lot's manufacturer or an authority."""
    sender = ctx.require_member()
    p_only(ctx, REASON_FIELDS)
    lot = get_lot(ctx, p_id(ctx, "lot_id"))
    reason = p_text(ctx, "reason")
    if sender.inst_id != lot["manufacturer"] and not sender.has_role("authority"):
        fail(ctx, "only the lot's manufacturer or an authority may recall it")
    if lot["recall"] is not None:
        fail(ctx, f"lot {lot['lot_id']!r} already recalled")
    lot["recall"] = {
        "by": sender.inst_id,
        "reason": reason,
        "height": ctx.height,
        "timestamp_ms": ctx.timestamp_ms,
    }
    put_lot(ctx, lot, {"kind": "recall", "by": sender.inst_id, "reason": reason})


@payload_generator("lot.register", "manufacturer")
def _gen_lot(i: int) -> dict[str, Any]:
    return {
        "expiry_ms": 2**60,
        "lot_id": f"bench-{i}",
        "product": "bench-vaccine",
        "quantity": 1000,
        "temp_max_centi_c": 800,
        "temp_min_centi_c": 200,
    }


@contract("lot.release")
def lot_release(ctx: TxContext) -> None:
    """Payload: lot_id, reason. An authority lifts a quarantine after investigating it;
    the quarantine evidence stays in the lot's events."""
    authority = ctx.require_member("authority")
    p_only(ctx, REASON_FIELDS)
    lot = get_lot(ctx, p_id(ctx, "lot_id"))
    reason = p_text(ctx, "reason")
    if lot["quarantine"] is None:
        fail(ctx, f"lot {lot['lot_id']!r} is not quarantined")
    evidence = lot["quarantine"]
    lot["quarantine"] = None
    put_lot(
        ctx,
        lot,
        {"kind": "release", "by": authority.inst_id, "reason": reason, "evidence": evidence},
    )
