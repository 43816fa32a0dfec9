"""The rows of the analytics tables, and `epi_summary`, from committed contract state.

Pure functions of a StateReader (a committed state, a DictState, a daemon's
state over its admin socket): no I/O of their own, no pyarrow, so the gateway
can answer `/v1/epi/summary` with the same code the export uses. State is read
only through the contracts' own key functions and queries
(hzp2p.contracts.domain_queries, hzp2p.contracts.epi).

Tables (COLUMNS gives each one's columns, in order; docs/analytics.md the meaning):

  epi_reports          append    one row per accepted `epi.report` (already aggregates)
  custody_events       append    one row per lot event (register, transfer, recall,
                                 quarantine, release); free-text reasons are left out
  coldchain_readings   append    one row per sensor reading
  lots                 snapshot  every lot as of the export height
  doses_by_site_day    snapshot  doses counted by (day, site, product, dose number), k-suppressed
  code_changes_by_day  snapshot  health-code changes counted by (day, colour, source), k-suppressed

What needs k-suppression: counts derived from individuals. A dose and a
health-code change each concern one citizen, so a small group (3 second doses
at one clinic on one day) narrows down who they were; any group counting fewer
than `k` of them is left out of the table (not shown as zero or null: a row
would tell that the group exists). Reports, lots, custody events and readings
are about institutions and goods, never about a person, and are exported whole.
Nothing personal leaves: no pseudonym, record id, ciphertext, sealed key or
free text is in any row.

Heights: every row derives from values stamped with the height that wrote
them, so a table is exactly "as of height H" (`Window.upto_height`) even when
the state is read while new blocks are applied (the admin-socket source);
append tables hold only rows with `after_height < height <= upto_height`,
snapshot tables everything up to `upto_height` (a lot's status, custodian and
remaining doses are replayed from its events and doses up to that height).
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

import msgpack

from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts import epi
from hzp2p.contracts.engine import read_head
from hzp2p.contracts.state import Readable

K_DEFAULT = 5
"""Smallest group of individuals a count may describe (`hzp2p export --k`)."""

Row = tuple[Any, ...]
Batch = tuple[list[Any], ...]
"""Rows of a table column by column, in COLUMNS order (all columns the same length)."""
BATCH_ROWS = 65_536
"""Rows per batch: bounded memory on a million-row table (and a Parquet row group)."""

COLUMNS: dict[str, tuple[str, ...]] = {
    "epi_reports": (
        "report_id", "region", "metric", "period", "value", "reporter_id", "height",
        "timestamp_ms",
    ),
    "custody_events": (
        "lot_id", "seq", "kind", "from_inst_id", "to_inst_id", "by_inst_id", "height",
        "timestamp_ms",
    ),
    "coldchain_readings": (
        "lot_id", "sensor_id", "carrier_id", "t_ms", "temp_centi_c", "in_range", "height",
    ),
    "lots": (
        "lot_id", "product", "manufacturer_id", "quantity", "remaining", "expiry_ms",
        "temp_min_centi_c", "temp_max_centi_c", "custodian_id", "status", "registered_height",
        "registered_ms", "as_of_height",
    ),
    "doses_by_site_day": ("day", "site_id", "product", "dose", "doses"),
    "code_changes_by_day": ("day", "colour", "source", "changes"),
}
APPEND_TABLES = ("epi_reports", "custody_events", "coldchain_readings")
SNAPSHOT_TABLES = ("lots", "doses_by_site_day", "code_changes_by_day")
K_SUPPRESSED = frozenset({"doses_by_site_day", "code_changes_by_day"})
assert set(COLUMNS) == set(APPEND_TABLES) | set(SNAPSHOT_TABLES)

_EPOCH = datetime.date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Window:
    """Heights an export covers: above `after_height`, up to `upto_height` (inclusive)."""

    after_height: int
    upto_height: int

    def __post_init__(self) -> None:
        assert 0 <= self.after_height <= self.upto_height, self


def day_of(ms: int) -> datetime.date:
    """The UTC calendar day of a time in milliseconds since the epoch."""
    return _EPOCH + datetime.timedelta(days=ms // dq.DAY_MS)


def family_prefix(key_of: Callable[[str], bytes]) -> bytes:
    """The prefix every key built by `key_of(id)` starts with, from the contracts' own key
    function (k_lot("") is "lot/m/"; k_doses("") is "vax/d//", whose family is "vax/d/")."""
    key = key_of("")
    return key[:-1] if key.endswith(b"//") else key


def head_height(reader: Readable) -> int:
    """The height of the last block applied to this state (0: genesis only)."""
    return read_head(reader).height


# ---------------------------------------------------------------- epidemic reports


def epi_report_batches(reader: Readable, window: Window) -> Iterator[Batch]:
    """epi_reports in report-id order, column by column (the hot table: a million rows are
    decoded a chunk at a time and never turned into a tuple each)."""
    lo, hi = window.after_height, window.upto_height
    for chunk in _decoded_chunks(reader, family_prefix(epi.k_report)):
        heights = [r["height"] for r in chunk]
        if not all(lo < h <= hi for h in (min(heights), max(heights))):
            chunk = [r for r, h in zip(chunk, heights, strict=True) if lo < h <= hi]
            heights = [r["height"] for r in chunk]
        if chunk:
            yield (
                [r["report_id"] for r in chunk], [r["region"] for r in chunk],
                [r["metric"] for r in chunk], [r["period"] for r in chunk],
                [r["value"] for r in chunk], [r["reporter"] for r in chunk], heights,
                [r["timestamp_ms"] for r in chunk],
            )


def _decoded_chunks(reader: Readable, prefix: bytes) -> Iterator[list[Any]]:
    """The decoded values under `prefix`, in key order, BATCH_ROWS at a time: a chunk of
    values is joined and unpacked by one msgpack Unpacker (a quarter less CPU than a call
    per value)."""
    rows = reader.scan(prefix)
    while raws := [raw for _, raw in islice(rows, BATCH_ROWS)]:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)
        unpacker.feed(b"".join(raws))
        values = list(unpacker)
        assert len(values) == len(raws), "a state value is not exactly one msgpack object"
        yield values


def batched(rows: Iterable[Row], n: int = 0) -> Iterator[Batch]:
    """Rows as column batches of at most n rows (BATCH_ROWS by default)."""
    it = iter(rows)
    while chunk := list(islice(it, n or BATCH_ROWS)):
        yield tuple(list(col) for col in zip(*chunk, strict=True))


def epi_summary(
    reader: Readable,
    metric: str | None = None,
    region: str | None = None,
    from_period: str | None = None,
    to_period: str | None = None,
) -> list[dict[str, Any]]:
    """Accepted `epi.report` values summed by (metric, region, period).

    Each filter is optional; `from_period` and `to_period` bound the period inclusively
    and compare as text (periods such as "2026-W05" or "2026-03-01" sort correctly).
    Returns [{"metric", "region", "period", "value" (the sum), "reports" (how many)}],
    sorted by metric, region, period. Reports are aggregates already: no k applies.
    """
    sums: dict[tuple[str, str, str], list[int]] = {}
    reports = (r for chunk in _decoded_chunks(reader, family_prefix(epi.k_report)) for r in chunk)
    for r in reports:
        m, g, p = r["metric"], r["region"], r["period"]
        if metric is not None and m != metric:
            continue
        if region is not None and g != region:
            continue
        if from_period is not None and p < from_period:
            continue
        if to_period is not None and p > to_period:
            continue
        acc = sums.setdefault((m, g, p), [0, 0])
        acc[0] += r["value"]
        acc[1] += 1
    return [
        {"metric": m, "region": g, "period": p, "value": v, "reports": n}
        for (m, g, p), (v, n) in sorted(sums.items())
    ]


# ---------------------------------------------------------------- doses and health codes


@dataclass(slots=True)
class DoseCounts:
    """Doses up to a height: by (day, site, product, dose number) and by lot."""

    by_group: Counter[tuple[datetime.date, int, str, int]]
    by_lot: Counter[str]


def dose_counts(reader: Readable, upto_height: int) -> DoseCounts:
    groups: Counter[tuple[datetime.date, int, str, int]] = Counter()
    lots: Counter[str] = Counter()
    for d in dq.values(reader, family_prefix(dq.k_doses)):
        if d["height"] <= upto_height:
            groups[(day_of(d["administered_ms"]), d["site"], d["product"], d["dose"])] += 1
            lots[d["lot_id"]] += 1
    return DoseCounts(groups, lots)


def suppress(counts: Mapping[tuple[Any, ...], int], k: int) -> list[Row]:
    """Group rows (group..., count) with count >= k, in group order; smaller groups left out."""
    assert k >= 1, k
    return [(*g, n) for g, n in sorted(counts.items()) if n >= k]


_CODE_SOURCES = {
    "lab.result": "lab",
    "healthcode.set": "authority",
    "exposure.declare": "exposure",
    "quarantine.end": "rule",
    "recovery.record": "recovery",
    "healthcode.resolve": "appeal",
}
"""History event -> the source of the change it made (hzp2p.contracts.codelife)."""


def code_change_counts(reader: Readable, upto_height: int) -> Counter[tuple[datetime.date, str, str]]:
    """Health-code changes (events that changed the colour) by (day, new colour, source)."""
    out: Counter[tuple[datetime.date, str, str]] = Counter()
    for e in dq.values(reader, family_prefix(dq.k_code_hist)):
        if e["changed"] and e["height"] <= upto_height:
            source = _CODE_SOURCES.get(e["event"], "authority")
            out[(day_of(e["timestamp_ms"]), e["colour"], source)] += 1
    return out


# ---------------------------------------------------------------- lots, custody, readings


def lot_ids(reader: Readable, upto_height: int) -> list[str]:
    """Ids of the lots registered up to a height, in id order."""
    return [
        lot["lot_id"]
        for lot in dq.values(reader, family_prefix(dq.k_lot))
        if lot["height"] <= upto_height
    ]


def _event_row(lot_id: str, seq: int, e: Mapping[str, Any]) -> Row:
    kind = e["kind"]
    return (
        lot_id,
        seq,
        kind,
        e.get("from"),
        e.get("to"),
        e.get("by"),  # recall, release; None for register, transfer, quarantine
        e["height"],
        e["timestamp_ms"],
    )


def lot_row(reader: Readable, lot_id: str, upto_height: int, doses_used: int) -> Row:
    """A lot as it stood at `upto_height`: replayed from its events and the doses drawn."""
    lot = dq.lot(reader, lot_id)
    assert lot is not None, lot_id
    custodian = lot["manufacturer"]
    recalled = quarantined = False
    for e in dq.lot_events(reader, lot_id):
        if e["height"] > upto_height:
            break
        kind = e["kind"]
        if kind in ("register", "transfer"):
            custodian = e["to"]
        elif kind == "recall":
            recalled = True
        elif kind == "quarantine":
            quarantined = True
        elif kind == "release":
            quarantined = False
    status = "recalled" if recalled else "quarantined" if quarantined else "active"
    return (
        lot_id, lot["product"], lot["manufacturer"], lot["quantity"],
        lot["quantity"] - doses_used, lot["expiry_ms"], lot["temp_min_centi_c"],
        lot["temp_max_centi_c"], custodian, status, lot["height"], lot["registered_ms"],
        upto_height,
    )


def custody_event_rows(reader: Readable, lots: list[str], window: Window) -> Iterator[Row]:
    lo, hi = window.after_height, window.upto_height
    for lot_id in lots:
        for seq, e in enumerate(dq.lot_events(reader, lot_id)):
            if lo < e["height"] <= hi:
                yield _event_row(lot_id, seq, e)


def reading_rows(reader: Readable, lots: list[str], window: Window) -> Iterator[Row]:
    lo, hi = window.after_height, window.upto_height
    for lot_id in lots:
        for r in dq.temperature_history(reader, lot_id):
            if lo < r["height"] <= hi:
                yield (
                    lot_id, r["sensor_id"], r["carrier"], r["t_ms"], r["temp_centi_c"],
                    r["in_range"], r["height"],
                )


# ---------------------------------------------------------------- all tables


def table_batches(
    reader: Readable, window: Window, k: int = K_DEFAULT
) -> Iterator[tuple[str, Iterator[Batch]]]:
    """(table, column batches) for every table, rows in a stable order; consume each table's
    batches before asking for the next table."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    hi = window.upto_height
    yield "epi_reports", epi_report_batches(reader, window)
    doses = dose_counts(reader, hi)
    yield "doses_by_site_day", batched(suppress(doses.by_group, k))
    yield "code_changes_by_day", batched(suppress(code_change_counts(reader, hi), k))
    lots = lot_ids(reader, hi)
    yield "lots", batched(lot_row(reader, lot_id, hi, doses.by_lot[lot_id]) for lot_id in lots)
    yield "custody_events", batched(custody_event_rows(reader, lots, window))
    yield "coldchain_readings", batched(reading_rows(reader, lots, window))


def table_rows(reader: Readable, window: Window, k: int = K_DEFAULT) -> Iterator[tuple[str, list[Row]]]:
    """table_batches as lists of row tuples (for tests and small states)."""
    for name, batches in table_batches(reader, window, k):
        yield name, [row for batch in batches for row in zip(*batch, strict=True)]
