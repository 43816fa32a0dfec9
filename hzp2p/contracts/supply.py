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
    lot_status,
    store,
)
from hzp2p.contracts.registry import contract, payload_generator
from hzp2p.contracts.schema import Id, Int, Problem, Schema, Text

CUSTODY_ROLES = ("carrier", "vaccination_site", "hospital", "manufacturer")
TEMP_LIMIT_CENTI_C = 30_000  # |temperature| bound, hundredths of a degree C
MAX_QUANTITY = 1_000_000_000
_TEMP = Int(-TEMP_LIMIT_CENTI_C, TEMP_LIMIT_CENTI_C)


def _range_ordered(payload: Any, signer: bytes) -> list[Problem]:
    if payload["temp_min_centi_c"] >= payload["temp_max_centi_c"]:
        return [Problem("temp_min_centi_c", "must be below temp_max_centi_c")]
    return []


REGISTER_SCHEMA = Schema(
    {
        "lot_id": Id(),
        "product": Id(),
        "quantity": Int(1, MAX_QUANTITY),
        "expiry_ms": Int(0, 2**62),
        "temp_min_centi_c": _TEMP,
        "temp_max_centi_c": _TEMP,
    },
    rules=(_range_ordered,),
)
TRANSFER_SCHEMA = Schema({"lot_id": Id(), "to": Int(0, 2**63 - 1)})
REASON_SCHEMA = Schema({"lot_id": Id(), "reason": Text()})


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


@contract("lot.register", schema=REGISTER_SCHEMA)
def lot_register(ctx: TxContext) -> None:
    """Payload: lot_id, product, quantity, expiry_ms, temp_min_centi_c, temp_max_centi_c."""
    maker = ctx.require_member("manufacturer")
    p = ctx.payload
    lot_id, product, quantity, expiry = p["lot_id"], p["product"], p["quantity"], p["expiry_ms"]
    tmin, tmax = p["temp_min_centi_c"], p["temp_max_centi_c"]
    if expiry <= ctx.timestamp_ms:
        fail(ctx, "expiry_ms must be after the block time")
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


@contract("lot.transfer", schema=TRANSFER_SCHEMA)
def lot_transfer(ctx: TxContext) -> None:
    """Payload: lot_id, to (institution id). Sender must be the current custodian."""
    sender = ctx.require_member()
    lot = get_lot(ctx, ctx.payload["lot_id"])
    to = ctx.payload["to"]
    if lot["custodian"] != sender.inst_id:
        fail(ctx, f"sender {sender.inst_id} is not the custodian of lot {lot['lot_id']!r}")
    if to == sender.inst_id:
        fail(ctx, "cannot transfer a lot to its current custodian")
    recipient = institution(ctx.state, to)
    if recipient is None or not recipient.active:
        fail(ctx, f"recipient {to} is not an active member")
    if not any(r in recipient.roles for r in CUSTODY_ROLES):
        fail(ctx, f"recipient {to} holds no custody role ({'/'.join(CUSTODY_ROLES)})")
    status = lot_status(lot, ctx.timestamp_ms)
    if status != "active" and to != lot["manufacturer"]:
        fail(ctx, f"lot is {status}: it may only return to its manufacturer")
    lot["custodian"] = to
    if to not in lot["custodians"]:
        lot["custodians"] = sorted([*lot["custodians"], to])
    put_lot(ctx, lot, {"kind": "transfer", "from": sender.inst_id, "to": to})


@contract("lot.recall", schema=REASON_SCHEMA)
def lot_recall(ctx: TxContext) -> None:
    """Payload: lot_id, reason. By the lot's manufacturer or an authority."""
    sender = ctx.require_member()
    lot = get_lot(ctx, ctx.payload["lot_id"])
    reason = ctx.payload["reason"]
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


@contract("lot.release", schema=REASON_SCHEMA)
def lot_release(ctx: TxContext) -> None:
    """Payload: lot_id, reason. An authority lifts a quarantine after investigating it;
    the quarantine evidence stays in the lot's events."""
    authority = ctx.require_member("authority")
    lot = get_lot(ctx, ctx.payload["lot_id"])
    reason = ctx.payload["reason"]
    if lot["quarantine"] is None:
        fail(ctx, f"lot {lot['lot_id']!r} is not quarantined")
    evidence = lot["quarantine"]
    lot["quarantine"] = None
    put_lot(
        ctx,
        lot,
        {"kind": "release", "by": authority.inst_id, "reason": reason, "evidence": evidence},
    )
