"""`hzp2p admin` views for people: doses, a lot, temperatures, grants, stock, expiring lots.

One operation each (declared here, served by the handler of the same name in
hzp2p.node.handlers): institutions' names instead of ids, ISO dates instead of epoch
milliseconds, °C instead of hundredths, status words; `--json` gives the stable
machine form (docs/operations.md). Lists take `--limit N`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from hzp2p.admin.cli_common import Command, Usage, celsius, fmt, iso_ms, table
from hzp2p.admin.protocol import LIN, LOT, MAX_INT, SUBJECT, Param

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_LIMIT = Param("limit", "int", required=False, min_value=1, max_value=100_000)
_SITE = Param("site", "int", min_value=1, max_value=MAX_INT)
_DAY = r"[0-9]{8}"


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= v <= MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _pseudonym(text: str) -> str:
    if not _PSEUDONYM.fullmatch(text.lower()):
        raise argparse.ArgumentTypeError(f"a subject pseudonym is 32 hex digits, got {text!r}")
    return text.lower()


def _lot_id(text: str) -> str:
    if not _ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a lot id is 1..64 of [A-Za-z0-9._:-], got {text!r}")
    return text


def _day(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).strftime("%Y%m%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=_positive, metavar="N", help="at most N rows")


def _with_limit(params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.limit is not None:
        params["limit"] = args.limit
    return params


def _day_text(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}" if len(day) == 8 else day


# ---------------------------------------------------------------- doses


def _args_doses(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--subject", type=_pseudonym, help="a subject's doses")
    who.add_argument("--lot", type=_lot_id, help="the doses given from a lot (e.g. a recall's)")
    who.add_argument("--site", type=_positive, help="the doses a site gave")
    p.add_argument("--from", dest="from_day", type=_day, metavar="DATE", help="with --site")
    p.add_argument("--to", dest="to_day", type=_day, metavar="DATE", help="with --site")
    _limit(p)


def _params_doses(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for k in ("subject", "lot", "site"):
        if getattr(args, k) is not None:
            params[k] = getattr(args, k)
    if (args.from_day or args.to_day) and args.site is None:
        raise Usage("--from/--to go with --site")
    for k in ("from_day", "to_day"):
        if getattr(args, k):
            params[k] = getattr(args, k)
    return _with_limit(params, args)


def _render_doses(result: Any) -> str:
    rows = result.get("doses") if isinstance(result, Mapping) else None
    if not rows:
        return "no doses"
    return table(
        ["administered", "subject", "product", "dose", "lot", "site"],
        [[iso_ms(r.get("administered_ms")), fmt(r.get("subject")), fmt(r.get("product")),
          fmt(r.get("dose")), fmt(r.get("lot_id")), f"{fmt(r.get('site_name'))} ({fmt(r.get('site'))})"]
         for r in rows],
        title=f"{len(rows)} dose(s)",
    )


# ---------------------------------------------------------------- a lot


def _render_lot(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    lot, rd = result.get("lot") or {}, result.get("readings") or {}
    lines = [
        f"lot {fmt(lot.get('lot_id'))}: {fmt(lot.get('product'))}, {fmt(lot.get('status')).upper()}",
        f"  custodian {fmt(result.get('custodian_name'))} ({fmt(lot.get('custodian'))}); "
        f"{fmt(lot.get('remaining'))} of {fmt(lot.get('quantity'))} doses left "
        f"({fmt(result.get('doses_given'))} given)",
        f"  expires {iso_ms(lot.get('expiry_ms'))}; allowed "
        f"{celsius(lot.get('temp_min_centi_c'))} .. {celsius(lot.get('temp_max_centi_c'))}",
        f"  readings: {fmt(rd.get('count'))} ({celsius(rd.get('min_centi_c'))} .. "
        f"{celsius(rd.get('max_centi_c'))}, {fmt(rd.get('out_of_range'))} out of range, "
        f"last {iso_ms(rd.get('last_t_ms'))})",
        "  custody: " + " -> ".join(fmt(e.get("to")) for e in result.get("custody") or []),
    ]
    for e in result.get("incidents") or []:
        lines.append(f"  {fmt(e.get('kind'))} at {iso_ms(e.get('timestamp_ms'))}: "
                     f"{fmt(e.get('reason') or (e.get('evidence') or {}).get('temp_centi_c'))}")
    return "\n".join(lines)


def _render_temperatures(result: Any) -> str:
    rows = result.get("readings") if isinstance(result, Mapping) else None
    if not rows:
        return "no readings"
    return table(["time", "temperature", "in range", "sensor"],
                 [[iso_ms(r.get("t_ms")), celsius(r.get("temp_centi_c")),
                   "yes" if r.get("in_range") else "NO", fmt(r.get("sensor_id"))] for r in rows],
                 title=f"lot {fmt(result.get('lot'))}")


def _render_grants(result: Any) -> str:
    rows = result.get("grants") if isinstance(result, Mapping) else None
    if not rows:
        return "no grants"
    return table(["grant", "grantee", "record types", "purpose", "until", "revoked"],
                 [[fmt(g.get("grant_id")), f"{fmt(g.get('grantee_name'))} ({fmt(g.get('grantee'))})",
                   fmt(g.get("record_types")), fmt(g.get("purpose")), iso_ms(g.get("expiry_ms")),
                   iso_ms(g.get("revoked_ms")) if g.get("revoked_ms") else "no"] for g in rows])


def _render_stock(result: Any) -> str:
    rows = result.get("stock") if isinstance(result, Mapping) else None
    if not rows:
        return "no stock"
    return table(["custodian", "product", "available", "active lots", "unusable", "next expiry"],
                 [[f"{fmt(r.get('custodian_name'))} ({fmt(r.get('custodian'))})", fmt(r.get("product")),
                   fmt(r.get("available")), fmt(r.get("active_lots")), fmt(r.get("unusable")),
                   iso_ms(r.get("next_expiry_ms"))] for r in rows],
                 title=f"stock as of {iso_ms(result.get('as_of_ms'))}")


def _render_expiring(result: Any) -> str:
    rows = result.get("lots") if isinstance(result, Mapping) else None
    if not rows:
        return f"no lot expires within {fmt((result or {}).get('days'))} days"
    return table(["lot", "product", "expires", "doses left", "custodian"],
                 [[fmt(r.get("lot_id")), fmt(r.get("product")), iso_ms(r.get("expiry_ms")),
                   fmt(r.get("remaining")), f"{fmt(r.get('custodian_name'))} ({fmt(r.get('custodian'))})"]
                  for r in rows])


def _render_per_day(result: Any) -> str:
    rows = result.get("days") if isinstance(result, Mapping) else None
    if not rows:
        return "no doses"
    return table(["day", "product", "doses"],
                 [[_day_text(str(r.get("day"))), fmt(r.get("product")), fmt(r.get("doses"))]
                  for r in rows], title=f"site {fmt(result.get('site'))}")


def _args_lot(p: argparse.ArgumentParser) -> None:
    p.add_argument("lot", type=_lot_id, metavar="LOT")


def _args_lot_limit(p: argparse.ArgumentParser) -> None:
    _args_lot(p)
    _limit(p)


def _args_subject(p: argparse.ArgumentParser) -> None:
    p.add_argument("subject", type=_pseudonym, metavar="SUBJECT")


def _args_stock(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", type=_positive, help="one custodian's stock")
    p.add_argument("--product", type=_lot_id, help="one product")


def _params_stock(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("site", "product") if getattr(args, k) is not None}


def _args_expiring(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=_positive, required=True, help="within this many days")


def _args_site(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", type=_positive, required=True)


VIEW_COMMANDS: tuple[Command, ...] = (
    Command("doses", "doses", "doses of a subject, from a lot (a recall's recipients), or at a site",
            _args_doses, _params_doses, _render_doses, reads=True,
            wire=(Param("subject", "str", required=False, pattern=SUBJECT.pattern, shown=SUBJECT.shown),
                  Param("lot", "str", required=False, pattern=LOT.pattern, shown=LOT.shown),
                  Param("site", "int", required=False, min_value=1, max_value=MAX_INT),
                  Param("from_day", "str", required=False, pattern=_DAY, shown="yyyymmdd"),
                  Param("to_day", "str", required=False, pattern=_DAY, shown="yyyymmdd"),
                  _LIMIT, LIN),
            result="doses: [{subject, product, dose, lot_id, site, site_name, administered_ms, "
                   "record_id, height}], count"),
    Command("lot", "lot", "a lot: status (incl. expired), custody chain, incidents, readings",
            _args_lot, lambda a: {"lot": a.lot}, _render_lot, reads=True, wire=(LOT, LIN),
            result="lot (status as of the head), custodian_name, custody, incidents, readings "
                   "{count, min_centi_c, max_centi_c, out_of_range, last_t_ms}, doses_given"),
    Command("temperatures", "temperatures", "a lot's temperature readings, by time",
            _args_lot_limit, lambda a: _with_limit({"lot": a.lot}, a), _render_temperatures,
            reads=True, wire=(LOT, _LIMIT, LIN),
            result="lot, readings: [{t_ms, temp_centi_c, in_range, sensor_id, carrier, height}]"),
    Command("grants", "grants", "a subject's consent grants (revoked ones marked)", _args_subject,
            lambda a: {"subject": a.subject}, _render_grants, reads=True, wire=(SUBJECT, LIN),
            result="subject, grants: [{grant_id, grantee, grantee_name, record_types, purpose, "
                   "expiry_ms, revoked_ms}]"),
    Command("stock", "stock", "doses available per custodian and product (active lots)",
            _args_stock, _params_stock, _render_stock, reads=True,
            wire=(Param("site", "int", required=False, min_value=1, max_value=MAX_INT),
                  Param("product", "str", required=False, pattern=LOT.pattern, shown="a product id"),
                  LIN),
            result="as_of_ms, stock: [{custodian, custodian_name, product, available, "
                   "active_lots, unusable, next_expiry_ms}]"),
    Command("expiring", "expiring", "active lots with doses left that expire within N days",
            _args_expiring, lambda a: {"days": a.days}, _render_expiring, reads=True,
            wire=(Param("days", "int", min_value=1, max_value=100_000), LIN),
            result="as_of_ms, days, lots: [lot records, soonest expiry first]"),
    Command("doses-per-day", "doses_per_day", "a site's doses per day and product",
            _args_site, lambda a: {"site": a.site}, _render_per_day, reads=True,
            wire=(_SITE, LIN), result="site, days: [{day (yyyymmdd), product, doses}]"),
)
