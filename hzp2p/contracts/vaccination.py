"""Vaccination records: a site administers a dose from a lot in its custody.

`vaccination.record` (vaccination sites only): subject pseudonym, lot, dose
number, administration time, and the personal fields as an encrypted record
envelope (stored by hzp2p.contracts.privacy, record type "vaccination").
Refused for an unknown, expired (against the block timestamp), recalled or
quarantined lot, a lot not in this site's custody, a lot with no doses left,
a dose already recorded, or a dose out of order: dose n of a product needs
dose n-1 of the same product, administered no later. Decrements the lot's
remaining doses and indexes the dose at vax/d/<subject>/<product>/<dose>, by lot
(vax/l/..., a recall's recipients) and by site and UTC day (vax/s/...).
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts import privacy
from hzp2p.contracts.api import TxContext
from hzp2p.contracts.domain_queries import (
    fail,
    k_dose,
    k_lot_dose,
    k_site_dose,
    load,
    lot_status,
    rule_version,
    store,
)
from hzp2p.contracts.registry import contract, rules
from hzp2p.contracts.schema import Id, Int, Schema, Subject
from hzp2p.contracts.supply import get_lot, put_lot


def utc_day(t_ms: int) -> str:
    """yyyymmdd (UTC) of a time in ms: integer arithmetic, no clock, no locale."""
    days = t_ms // 86_400_000
    # civil-from-days (H. Hinnant), for 1970-01-01 + days
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return f"{y:04d}{m:02d}{d:02d}"


# Versioned by ctx.rules["vaccination"] (version 1 if genesis names none).
VACCINATION_RULES: dict[int, dict[str, int]] = {1: {"max_dose": 20}}
rules("vaccination", VACCINATION_RULES)
MAX_DOSE = max(r["max_dose"] for r in VACCINATION_RULES.values())
SCHEMA = Schema(
    {
        "subject": Subject(),
        "lot_id": Id(),
        "dose": Int(1, MAX_DOSE),
        "administered_ms": Int(0, 2**62),
        "record": privacy.ENVELOPE_SCHEMA.nested(),
    }
)


@contract("vaccination.record", schema=SCHEMA)
def vaccination_record(ctx: TxContext) -> None:
    """Payload: subject, lot_id, dose, administered_ms, record (encrypted envelope)."""
    site = ctx.require_member("vaccination_site")
    p = ctx.payload
    subject, dose, when = p["subject"], p["dose"], p["administered_ms"]
    lot = get_lot(ctx, p["lot_id"])
    _, rules = rule_version(ctx, "vaccination", VACCINATION_RULES)
    if dose > rules["max_dose"]:
        fail(ctx, f"dose out of range [1, {rules['max_dose']}]")
    if when > ctx.timestamp_ms:
        fail(ctx, "administered_ms must not be after the block time")
    status = lot_status(lot)
    if status != "active":
        fail(ctx, f"lot {lot['lot_id']!r} is {status}")
    if lot["expiry_ms"] <= ctx.timestamp_ms or lot["expiry_ms"] <= when:
        fail(ctx, f"lot {lot['lot_id']!r} expired")
    if lot["custodian"] != site.inst_id:
        fail(ctx, f"lot {lot['lot_id']!r} is not in the custody of site {site.inst_id}")
    if lot["remaining"] <= 0:
        fail(ctx, f"lot {lot['lot_id']!r} has no doses remaining")
    product = lot["product"]
    if ctx.state.get(k_dose(subject, product, dose)) is not None:
        fail(ctx, f"dose {dose} of {product} already recorded for this subject")
    if dose > 1:
        prev: dict[str, Any] | None = load(ctx.state, k_dose(subject, product, dose - 1))
        if prev is None:
            fail(ctx, f"dose {dose} of {product} needs dose {dose - 1} recorded first")
        if prev["administered_ms"] > when:
            fail(ctx, f"dose {dose} administered before dose {dose - 1}")
    record_id = privacy.store_record(ctx, site, subject, "vaccination")
    dose_key = k_dose(subject, product, dose)
    day = utc_day(when)
    ctx.state.put(k_lot_dose(lot["lot_id"], subject, dose), dose_key)  # index: by lot
    ctx.state.put(k_site_dose(site.inst_id, day, subject, product, dose), dose_key)  # by site
    store(
        ctx.state,
        dose_key,
        {
            "subject": subject,
            "product": product,
            "dose": dose,
            "lot_id": lot["lot_id"],
            "site": site.inst_id,
            "administered_ms": when,
            "record_id": record_id,
            "height": ctx.height,
        },
    )
    lot["remaining"] -= 1
    put_lot(ctx, lot)
