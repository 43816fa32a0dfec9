"""PRIVATE, TEMPORARY: the aggregation behind GET /v1/epi/summary.

LEAD: another branch adds hzp2p/analytics/epi_summary; at merge, replace
`summarise` here by that module's function (same inputs: the committed state
and the filters) and delete this file. Kept deliberately small: sums of
`epi.report` values grouped by (region, metric, period), filtered by exact
metric and region and an inclusive period range compared as strings (periods
such as "2026-W07" or "2026-02-14" sort in time order).
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts.api import decode_value
from hzp2p.contracts.state import Readable

MAX_REPORTS_SCANNED = 200_000


def summarise(
    state: Readable,
    metric: str | None,
    region: str | None,
    period_from: str | None,
    period_to: str | None,
) -> list[dict[str, Any]]:
    """Buckets {region, metric, period, total, reports}, sorted by region, metric, period."""
    buckets: dict[tuple[str, str, str], list[int]] = {}
    for _, raw in state.scan(b"epi/r/", MAX_REPORTS_SCANNED):
        r = decode_value(raw)
        if metric is not None and r["metric"] != metric:
            continue
        if region is not None and r["region"] != region:
            continue
        p = r["period"]
        if (period_from is not None and p < period_from) or (period_to is not None and p > period_to):
            continue
        b = buckets.setdefault((r["region"], r["metric"], p), [0, 0])
        b[0] += int(r["value"])
        b[1] += 1
    return [
        {"region": k[0], "metric": k[1], "period": k[2], "total": v[0], "reports": v[1]}
        for k, v in sorted(buckets.items())
    ]
