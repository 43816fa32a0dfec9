"""Vaccine views over committed state: doses by lot and by site, stock, expiring lots.

Pure queries (any StateReader, no writes) behind `admin doses`, `admin lot`, `admin
stock`, `admin expiring` and `admin doses-per-day` — the seed's "allocate vaccines,
avoid waste and expiry". A lot's status (and whether its readings are overdue) is judged at
`now_ms`, the block time of the head the state is read at (a stored lot cannot know it has expired). Stock counts the
doses a custodian can still give: the remaining doses of its active lots; quarantined,
recalled and expired lots are counted apart as unusable.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hzp2p.contracts.api import decode_value
from hzp2p.contracts.domain_queries import (
    StateReader,
    k_doses,
    load,
    lot_events,
    lot_status,
    temperature_history,
    values,
)
from hzp2p.contracts.vaccination import utc_day

DAY_MS = 86_400_000


def all_lots(state: StateReader, now_ms: int) -> list[dict[str, Any]]:
    """Every lot, with its status as of `now_ms`, by lot id."""
    out = []
    for _, raw in state.scan(b"lot/m/"):
        lot = dict(decode_value(raw))
        lot["status"] = lot_status(lot, now_ms)
        out.append(lot)
    return out


def doses_of_subject(state: StateReader, subject: str) -> list[dict[str, Any]]:
    return values(state, k_doses(subject))


def _indexed(state: StateReader, prefix: bytes, limit: int | None) -> list[dict[str, Any]]:
    out = []
    for _, dose_key in state.scan(prefix, limit):
        rec: dict[str, Any] | None = load(state, dose_key)
        assert rec is not None, "a dose index points at a missing dose"
        out.append(rec)
    return out


def doses_of_lot(state: StateReader, lot_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The doses given from a lot (e.g. a recalled lot's recipients), by subject."""
    return _indexed(state, f"vax/l/{lot_id}/".encode(), limit)


def doses_at_site(
    state: StateReader, site: int, from_day: str = "", to_day: str = "99999999",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """A site's doses administered on UTC days from_day..to_day (yyyymmdd, inclusive)."""
    out = []
    for rec in _indexed(state, f"vax/s/{site:010d}/".encode(), None):
        day = utc_day(rec["administered_ms"])
        if from_day <= day <= to_day:
            out.append(rec)
            if limit is not None and len(out) >= limit:
                break
    return out


def doses_per_day(state: StateReader, site: int) -> list[dict[str, Any]]:
    """{day, product, doses} for a site, oldest day first."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for rec in _indexed(state, f"vax/s/{site:010d}/".encode(), None):
        counts[(utc_day(rec["administered_ms"]), rec["product"])] += 1
    return [{"day": d, "product": p, "doses": n} for (d, p), n in sorted(counts.items())]


def stock(
    state: StateReader, now_ms: int, site: int | None = None, product: str | None = None
) -> list[dict[str, Any]]:
    """Per custodian and product: doses available (remaining in active lots), lots, and doses
    unusable (in quarantined, recalled or expired lots), the soonest expiry of an active lot."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for lot in all_lots(state, now_ms):
        if (site is not None and lot["custodian"] != site) or (
            product is not None and lot["product"] != product
        ):
            continue
        key = (lot["custodian"], lot["product"])
        row = rows.setdefault(key, {"custodian": key[0], "product": key[1], "available": 0,
                                    "active_lots": 0, "unusable": 0, "next_expiry_ms": None})
        if lot["status"] == "active":
            row["available"] += lot["remaining"]
            row["active_lots"] += 1
            exp = row["next_expiry_ms"]
            row["next_expiry_ms"] = lot["expiry_ms"] if exp is None else min(exp, lot["expiry_ms"])
        else:
            row["unusable"] += lot["remaining"]
    return [rows[k] for k in sorted(rows)]


def expiring(state: StateReader, now_ms: int, days: int) -> list[dict[str, Any]]:
    """Active lots with doses left that expire within `days` of `now_ms`, soonest first."""
    horizon = now_ms + days * DAY_MS
    lots = [lot for lot in all_lots(state, now_ms)
            if lot["status"] == "active" and lot["remaining"] > 0 and lot["expiry_ms"] <= horizon]
    return sorted(lots, key=lambda lot: (lot["expiry_ms"], lot["lot_id"]))


def lot_summary(state: StateReader, lot_id: str, now_ms: int) -> dict[str, Any] | None:
    """A lot: its record (status as of now_ms), custody chain, quarantines and recalls, and a
    summary of its readings (count, min, max, out of range, last reading time)."""
    lot: dict[str, Any] | None = load(state, f"lot/m/{lot_id}".encode())
    if lot is None:
        return None
    lot["status"] = lot_status(lot, now_ms)
    events = lot_events(state, lot_id)
    readings = temperature_history(state, lot_id)
    temps = [r["temp_centi_c"] for r in readings]
    from hzp2p.contracts.coldchain import overdue  # the cold-chain contract owns intervals

    due = overdue(state, lot, now_ms, [(r["height"], r["t_ms"]) for r in readings])
    return {
        "lot": lot,
        "custody": [e for e in events if e["kind"] in ("register", "transfer")],
        "incidents": [e for e in events if e["kind"] in ("quarantine", "release", "recall")],
        "readings": {
            "count": len(readings),
            "min_centi_c": min(temps) if temps else None,
            "max_centi_c": max(temps) if temps else None,
            "out_of_range": sum(1 for r in readings if not r["in_range"]),
            "last_t_ms": max((r["t_ms"] for r in readings), default=None),
            "interval_ms": None if due is None else due["interval_ms"],
            "due_ms": None if due is None else due["due_ms"],
            "overdue": due is not None and due["overdue"],
        },
        "doses_given": lot["quantity"] - lot["remaining"],
    }
