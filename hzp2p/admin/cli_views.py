"""`hzp2p admin` views for people: doses, a lot, temperatures, grants, stock, expiring lots.

One operation each (declared here, served by the handler of the same name in
hzp2p.node.handlers): institutions' names instead of ids, ISO dates instead of epoch
milliseconds, °C instead of hundredths, status words; `--json` gives the stable
machine form (docs/operations.md). Lists page with `--limit N --after CURSOR`
(hzp2p.admin.paging).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hzp2p.admin.cli_common import Command, Usage, celsius, fmt, iso_ms, table
from hzp2p.admin.cli_common import lot_id_arg as _lot_id
from hzp2p.admin.cli_common import positive_int as _positive
from hzp2p.admin.cli_common import pseudonym_arg as _pseudonym
from hzp2p.admin.client import call_sync
from hzp2p.admin.protocol import LIN, LOT, MAX_INT, SUBJECT, Param
from hzp2p.contracts.events import TYPES as EVENT_TYPES

_SITE = Param("site", "int", min_value=1, max_value=MAX_INT)
_DAY = r"[0-9]{8}"


def _day(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).strftime("%Y%m%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


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
    return params


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
        f"last {iso_ms(rd.get('last_t_ms'))})"
        + (f"; every {fmt(rd.get('interval_ms'))} ms, due {iso_ms(rd.get('due_ms'))}"
           if rd.get("interval_ms") else "")
        + (" — READINGS OVERDUE" if rd.get("overdue") else ""),
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


_LABEL = r"[A-Za-z0-9._:\- ]{1,64}"


def _args_reports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric")
    p.add_argument("--region")
    p.add_argument("--from", dest="from_period", metavar="PERIOD", help="e.g. 2026-W40")
    p.add_argument("--to", dest="to_period", metavar="PERIOD")
    p.add_argument("--sum", action="store_true", help="totals by metric, region and period")


def _params_reports(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for k in ("metric", "region", "from_period", "to_period"):
        v = getattr(args, k)
        if v is not None:
            if not re.fullmatch(_LABEL, v):
                raise Usage(f"--{k.split('_')[0]} must be 1..64 of [A-Za-z0-9._:- ]")
            params[k] = v
    if args.sum:
        params["sum"] = True
    return params


def _render_reports(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    if "sums" in result:
        rows = result["sums"] or []
        if not rows:
            return "no reports"
        return table(["metric", "region", "period", "total", "reports"],
                     [[fmt(r.get("metric")), fmt(r.get("region")), fmt(r.get("period")),
                       fmt(r.get("value")), fmt(r.get("reports"))] for r in rows])
    rows = result.get("reports") or []
    if not rows:
        return "no reports"
    return table(["report", "metric", "region", "period", "value", "reported"],
                 [[fmt(r.get("report_id")), fmt(r.get("metric")), fmt(r.get("region")),
                   fmt(r.get("period")), fmt(r.get("value")), iso_ms(r.get("timestamp_ms"))]
                  for r in rows], title=f"{fmt(result.get('count'))} report(s)")


def _render_datasets(result: Any) -> str:
    rows = result.get("datasets") if isinstance(result, Mapping) else None
    if not rows:
        return "no data sets"
    return table(["data set", "version", "access", "published", "content hash"],
                 [[fmt(r.get("dataset_id")), fmt(r.get("version")), fmt(r.get("access")),
                   iso_ms(r.get("timestamp_ms")), fmt(r.get("content_hash"))[:16] + "…"]
                  for r in rows])


def _args_code(p: argparse.ArgumentParser) -> None:
    _args_subject(p)
    p.add_argument("--history", action="store_true", help="every change, with why and its tx")


def _render_code(result: Any) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    code = result.get("code") or {}
    lines = [f"{fmt(result.get('subject'))}: {fmt(code.get('colour')).upper()} since "
             f"{iso_ms(code.get('since_ms'))} — {fmt(code.get('reason')) or '-'} "
             f"(source {fmt(code.get('source'))})"]
    hist = result.get("history")
    if hist:
        lines.append(table(["#", "when", "event", "colour", "changed", "why"],
                           [[fmt(e.get("seq")), iso_ms(e.get("timestamp_ms")), fmt(e.get("event")),
                             fmt(e.get("colour")), fmt(e.get("changed")),
                             fmt(e.get("reason") or e.get("test_id") or e.get("result"))]
                            for e in hist]))
    for a in result.get("appeals") or []:
        lines.append(f"appeal {fmt(a.get('appeal_id'))}: {fmt(a.get('status'))} — "
                     f"{fmt(a.get('reason'))}")
    return "\n".join(lines)


def _render_rows(key: str, empty: str) -> Any:
    def render(result: Any) -> str:
        rows = result.get(key) if isinstance(result, Mapping) else None
        if not rows:
            return empty
        cols = sorted({k for r in rows for k in r if not isinstance(r[k], dict | list)})
        return table(cols, [[iso_ms(r.get(c)) if c.endswith("_ms") else fmt(r.get(c))
                             for c in cols] for r in rows])

    return render


def _args_appeals(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subject", type=_pseudonym, help="a subject's appeals (default: overdue)")


WATCH_POLL_S = 5.0
"""How long one `watch` request waits for a new block (a long poll)."""


def _args_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--types", metavar="T1,T2", help=f"only these: {', '.join(EVENT_TYPES)}")
    p.add_argument("--from-height", type=_positive, default=1, metavar="H",
                   help="start at this height (resume where a previous watch stopped)")
    p.add_argument("--until-height", type=_positive, metavar="H",
                   help="stop after this height (default: run until interrupted)")


def _params_watch(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"from_height": args.from_height}
    if args.types:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        unknown = sorted(set(types) - set(EVENT_TYPES))
        if unknown or not types:
            raise Usage(f"--types: unknown {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
        params["types"] = types
    if args.until_height is not None:
        if args.until_height < args.from_height:
            raise Usage("--until-height is below --from-height")
        params["until_height"] = args.until_height
    return params


def _call_watch(socket_path: Path, params: dict[str, Any], timeout_s: float) -> Any:
    """Ask for the next blocks' events again and again (a long poll), printing each event as
    one JSON line, until --until-height or an interrupt; resumable with --from-height."""
    until = params.pop("until_height", None)
    height = params["from_height"]
    printed = 0
    while until is None or height <= until:
        ask = {**params, "from_height": height, "wait_s": WATCH_POLL_S}
        if until is not None:
            ask["limit"] = min(100, until - height + 1)
        reply = call_sync(socket_path, "watch", ask, timeout_s=timeout_s + WATCH_POLL_S)
        for e in reply["events"]:
            print(json.dumps(e), flush=True)
            printed += 1
        height = int(reply["next_height"])
    return {"events": printed, "next_height": height}


VIEW_COMMANDS: tuple[Command, ...] = (
    Command("health-code", "health_code", "a subject's health code: colour, why, since when",
            _args_code, lambda a: {"subject": a.subject, **({"history": True} if a.history else {})},
            _render_code, reads=True,
            wire=(SUBJECT, Param("history", "bool", required=False), LIN),
            result="subject, code {colour, source, reason, since_ms, cause_tx, rules_version}, "
                   "with history: history [{seq, event, colour, changed, reason, height, "
                   "tx_hash}], appeals"),
    Command("exposures", "exposures", "published exposures (venues and time windows of concern)",
            lambda _p: None, lambda _a: {}, _render_rows("exposures", "no exposures"),
            reads=True, wire=(LIN,),
            result="exposures: [{exposure_id, venue_id, from_ms, to_ms, level, ...}]"),
    Command("appeals", "appeals", "health-code appeals open longer than the rules allow",
            _args_appeals, lambda a: {"subject": a.subject} if a.subject else {},
            _render_rows("appeals", "no appeals"), reads=True,
            wire=(Param("subject", "str", required=False, pattern=SUBJECT.pattern,
                        shown=SUBJECT.shown), LIN),
            result="appeals: [{appeal_id, subject, status, reason, opened_ms, ...}]"),
    Command("watch", "watch", "a stream of JSON lines: blocks, refusals, quarantines, recalls, "
            "code changes, overdue readings and appeals, failed hand-overs; resumable with "
            "--from-height", _args_watch, _params_watch,
            lambda _r: "", call=_call_watch, streams=True,
            wire=(Param("from_height", "int", min_value=1, max_value=MAX_INT),
                  Param("types", "str_list", required=False),
                  Param("limit", "int", required=False, min_value=1, max_value=1000),
                  Param("wait_s", "float", required=False, min_value=0)),
            result="events: [{type (" + "|".join(EVENT_TYPES) + "), height, ...}], "
                   "next_height (ask from there next)"),
    Command("reports", "reports", "epidemic reports, filtered; --sum for totals",
            _args_reports, _params_reports, _render_reports, reads=True,
            wire=(*(Param(k, "str", required=False, pattern=_LABEL, shown="a label")
                    for k in ("metric", "region", "from_period", "to_period")),
                  Param("sum", "bool", required=False), LIN),
            result="reports: [{report_id, metric, region, period, value, reporter, "
                   "timestamp_ms, height}], count; with sum: sums: [{metric, region, period, "
                   "value, reports}]"),
    Command("datasets", "datasets", "published data sets (latest versions)", lambda _p: None,
            lambda _a: {}, _render_datasets, reads=True, wire=(LIN,),
            result="datasets: [{dataset_id, version, access, metadata, content_hash, "
                   "publisher, timestamp_ms}]"),
    Command("doses", "doses", "doses of a subject, from a lot (a recall's recipients), or at a site",
            _args_doses, _params_doses, _render_doses, reads=True,
            wire=(Param("subject", "str", required=False, pattern=SUBJECT.pattern, shown=SUBJECT.shown),
                  Param("lot", "str", required=False, pattern=LOT.pattern, shown=LOT.shown),
                  Param("site", "int", required=False, min_value=1, max_value=MAX_INT),
                  Param("from_day", "str", required=False, pattern=_DAY, shown="yyyymmdd"),
                  Param("to_day", "str", required=False, pattern=_DAY, shown="yyyymmdd"),
                  LIN),
            result="doses: [{subject, product, dose, lot_id, site, site_name, administered_ms, "
                   "record_id, height}], count"),
    Command("lot", "lot", "a lot: status (incl. expired), custody chain, incidents, readings",
            _args_lot, lambda a: {"lot": a.lot}, _render_lot, reads=True, wire=(LOT, LIN),
            result="lot (status as of the head), custodian_name, custody, incidents, readings "
                   "{count, min_centi_c, max_centi_c, out_of_range, last_t_ms, interval_ms, "
                   "due_ms, overdue}, doses_given"),
    Command("temperatures", "temperatures", "a lot's temperature readings, by time",
            _args_lot, lambda a: {"lot": a.lot}, _render_temperatures,
            reads=True, wire=(LOT, LIN),
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
