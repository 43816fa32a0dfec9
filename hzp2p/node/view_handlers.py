"""The admin handlers' shared base and the read-only views for people.

`HandlerBase` holds what every handler uses: the node, the ReadIndex barrier for
`linearizable` reads, bounded waits, and storage queries whose bad input becomes a
`bad_request`. `ViewHandlers` answers the views (doses, lots, stock, reports, health
codes, the watch stream); hzp2p.node.handlers.Handlers adds the writes, membership and
chain methods. One method per declared operation (hzp2p.admin.operations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from hzp2p.admin.protocol import AdminError
from hzp2p.analytics.aggregates import epi_summary
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts import events as ev
from hzp2p.contracts import queries
from hzp2p.contracts import vaccine_views as vv
from hzp2p.contracts.api import decode_value
from hzp2p.ledger.block import decode_block
from hzp2p.node.driver import not_leader_hint
from hzp2p.raft.errors import NotLeader, ProposalDropped
from hzp2p.storage import StorageError, SyncStorage

if TYPE_CHECKING:
    from hzp2p.node.daemon import Node

READ_INDEX_TIMEOUT_S = 5.0
MAX_WAIT_S = 600.0


class HandlerBase:
    """What every admin handler shares (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def _barrier(self, params: Mapping[str, Any]) -> None:
        if not params.get("linearizable"):
            return
        try:
            await self.node.reads.barrier(READ_INDEX_TIMEOUT_S)
        except NotLeader as exc:
            raise AdminError(
                "not_leader", str(exc), hint=not_leader_hint(exc), leader_id=exc.leader_id or None
            ) from None
        except ProposalDropped as exc:
            raise AdminError("unavailable", str(exc), hint="retry shortly") from None
        except trio.TooSlowError:
            raise AdminError(
                "timeout", "linearizable read did not complete", hint="is a quorum reachable?"
            ) from None

    @staticmethod
    def _wait(params: Mapping[str, Any], default: float = 10.0) -> float:
        w = float(params.get("wait_s", default))
        return min(w, MAX_WAIT_S) if math.isfinite(w) else default

    async def _query(self, fn: Any) -> Any:
        try:
            return await self.node.storage.call(fn)
        except StorageError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise AdminError("bad_request", f"query refused: {exc}") from None


class ViewHandlers(HandlerBase):
    """The read-only views for people (see the module docstring)."""

    # ---------------------------------------------------------------- vaccine views
    def _now_ms(self) -> int:
        """The head's block time: what "expired" and "overdue" are judged against."""
        return self.node.applier.head.timestamp_ms

    async def _names(self) -> dict[int, str]:
        rows = await self.node.storage.call(lambda s: queries.institution_list(s))
        return {int(r["inst_id"]): str(r["name"]) for r in rows}

    async def doses(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        limit = params.get("limit")
        if "subject" in params:
            subject = params["subject"]
            rows = await self._query(lambda s: vv.doses_of_subject(s, subject))
        elif "lot" in params:
            lot = params["lot"]
            rows = await self._query(lambda s: vv.doses_of_lot(s, lot, limit))
        elif "site" in params:
            site, lo, hi = params["site"], params.get("from_day", ""), params.get("to_day", "99999999")
            rows = await self._query(lambda s: vv.doses_at_site(s, site, lo, hi, limit))
        else:
            raise AdminError("bad_request", "doses: give one of subject, lot, site")
        rows = rows if limit is None else rows[:limit]
        names = await self._names()
        for r in rows:
            r["site_name"] = names.get(r["site"], "?")
        return {"doses": dq.jsonable(rows), "count": len(rows)}

    async def lot(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        lot_id, now = params["lot"], self._now_ms()
        found = await self._query(lambda s: vv.lot_summary(s, lot_id, now))
        if found is None:
            raise AdminError("not_found", f"no lot {lot_id!r}", hint="admin stock lists lots")
        names = await self._names()
        found["custodian_name"] = names.get(found["lot"]["custodian"], "?")
        return dq.jsonable(found)

    async def temperatures(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        lot_id, limit = params["lot"], params.get("limit")
        rows = await self._query(lambda s: dq.temperature_history(s, lot_id, limit))
        return {"lot": lot_id, "readings": dq.jsonable(rows)}

    async def grants(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        subject = params["subject"]
        rows = await self._query(lambda s: dq.grants(s, subject))
        names = await self._names()
        for g in rows:
            g["grantee_name"] = names.get(g["grantee"], "?")
        return {"subject": subject, "grants": dq.jsonable(rows)}

    async def stock(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        site, product, now = params.get("site"), params.get("product"), self._now_ms()
        rows = await self._query(lambda s: vv.stock(s, now, site, product))
        names = await self._names()
        for r in rows:
            r["custodian_name"] = names.get(r["custodian"], "?")
        return {"as_of_ms": now, "stock": rows}

    async def expiring(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        days, now = params["days"], self._now_ms()
        rows = await self._query(lambda s: vv.expiring(s, now, days))
        names = await self._names()
        for r in rows:
            r["custodian_name"] = names.get(r["custodian"], "?")
        return {"as_of_ms": now, "days": days, "lots": dq.jsonable(rows)}

    async def doses_per_day(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        site = params["site"]
        rows = await self._query(lambda s: vv.doses_per_day(s, site))
        return {"site": site, "days": rows}

    async def reports(self, params: Mapping[str, Any]) -> Any:
        """Epidemic reports, filtered; with sum: totals by metric, region and period."""
        await self._barrier(params)
        metric, region = params.get("metric"), params.get("region")
        lo, hi = params.get("from_period"), params.get("to_period")
        if params.get("sum"):
            rows = await self._query(lambda s: epi_summary(s, metric, region, lo, hi))
            return {"sums": rows}

        def pick(s: SyncStorage) -> list[dict[str, Any]]:
            out = []
            for _, raw in s.scan(b"epi/r/"):
                r = dict(decode_value(raw))
                if (metric is None or r["metric"] == metric) and (
                    region is None or r["region"] == region) and (
                    lo is None or r["period"] >= lo) and (hi is None or r["period"] <= hi):
                    out.append(r)
            return out

        rows = await self._query(pick)
        limit = params.get("limit")
        return {"reports": dq.jsonable(rows if limit is None else rows[:limit]),
                "count": len(rows)}

    async def datasets(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        rows = await self._query(
            lambda s: [dict(decode_value(v)) for _, v in s.scan(b"data/d/")])
        return {"datasets": dq.jsonable(rows)}

    async def health_code(self, params: Mapping[str, Any]) -> Any:
        """The code in force (colour, why, since when), and with history every change."""
        await self._barrier(params)
        subject = params["subject"]
        out: dict[str, Any] = {"subject": subject,
                               "code": await self._query(lambda s: queries.health_code(s, subject))}
        if params.get("history"):
            out["history"] = await self._query(lambda s: queries.health_code_history(s, subject))
            out["appeals"] = await self._query(lambda s: queries.appeals(s, subject))
        return out

    async def exposures(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        return {"exposures": await self._query(queries.exposures)}

    async def appeals(self, params: Mapping[str, Any]) -> Any:
        """Appeals open longer than the rules allow (or a subject's, with subject)."""
        await self._barrier(params)
        if "subject" in params:
            subject = params["subject"]
            return {"appeals": await self._query(lambda s: queries.appeals(s, subject))}
        return {"appeals": await self._query(queries.overdue_appeals), "overdue_only": True}

    async def watch(self, params: Mapping[str, Any]) -> Any:
        """Events of the committed blocks from `from_height` on (at most `limit` blocks); if
        none is committed yet, wait up to wait_s for one (a long poll: `admin watch` loops)."""
        n = self.node
        start, limit = params["from_height"], params.get("limit", 100)
        types = set(params.get("types") or ev.TYPES)
        with trio.move_on_after(min(self._wait(params, 0.0), MAX_WAIT_S)):
            await n.applier.wait_height(start)
        end = min(n.applier.head.height, start + limit - 1)

        local = n.stack.handover.failures_between(start, end)
        genesis_ms = n.genesis.timestamp_ms

        def collect(s: SyncStorage) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            cache: ev.TimeCache = {}
            prev_ms: int | None = None
            for height in range(start, end + 1):
                rec = s.block_by_height(height)
                if rec is None:  # below a snapshot this node installed: not stored here
                    prev_ms = None
                    continue
                txs = s.block_txs(height)
                verdicts = [("committed" if t.status == "applied" else "rejected", t.reason)
                            for t in txs]
                events = ev.block_events(s, rec.raw, verdicts)
                ts = int(events[0]["timestamp_ms"])
                if prev_ms is None:
                    prev_ms = _block_time(s, height - 1, genesis_ms)
                events += ev.time_events(s, height, ts, prev_ms, cache)
                events += [f for f in local if f["height"] == height]
                out += [e for e in events if e["type"] in types]
                prev_ms = ts
            return out

        events = await n.storage.call(collect) if end >= start else []
        return {"events": events, "next_height": max(start, end + 1)}


def _block_time(s: SyncStorage, height: int, genesis_ms: int) -> int:
    """The block time at `height` (the genesis's at 0; -1 if this node does not hold it)."""
    if height == 0:
        return genesis_ms
    rec = s.block_by_height(height)
    return -1 if rec is None else decode_block(rec.raw).header.timestamp_ms
