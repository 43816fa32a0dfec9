"""SQL over an export with DuckDB (embedded, in memory): one view per table.

Each table of the manifest becomes a view over exactly the files the manifest
lists (a stray file from an interrupted export is never read), Parquet read as
written, CSV read with the column types of the table's schema. The query runs
in a fresh in-memory database; nothing is written to the export.
"""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from hzp2p.analytics.export import SCHEMAS, ExportError, load_manifest

_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
}


class QueryError(Exception):
    """The query failed (unknown table or column, a type error...)."""


class QuerySyntaxError(QueryError):
    """The text is not SQL DuckDB can parse (wrong usage)."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": [[_plain(v) for v in r] for r in self.rows]}


def _plain(v: Any) -> Any:
    if isinstance(v, datetime.date | datetime.datetime):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def _sql_text(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per table of the export in `data_dir`."""
    manifest = load_manifest(data_dir) if data_dir.is_dir() else None
    if manifest is None:
        raise ExportError(f"{data_dir} holds no export (run `hzp2p export --out {data_dir}` first)")
    con = duckdb.connect(":memory:")
    for name, entry in sorted(manifest.tables.items()):
        if name not in SCHEMAS or not entry["files"]:
            continue
        files = "[" + ", ".join(_sql_text(str(data_dir / f)) for f in entry["files"]) + "]"
        if manifest.format == "parquet":
            source = f"read_parquet({files})"
        else:
            cols = ", ".join(
                f"{_sql_text(f.name)}: {_sql_text(_DUCK_TYPES[f.type])}" for f in SCHEMAS[name])
            source = f"read_csv({files}, header = true, auto_detect = false, columns = {{{cols}}})"
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM {source}')
    return con


def run_query(data_dir: Path, sql: str) -> QueryResult:
    """Run `sql` over the export in `data_dir`; the last statement's rows come back."""
    con = connect(data_dir)
    try:
        cur = con.execute(sql)
        desc: Any = cur.description  # None after a statement without rows (typed as never)
        if desc is None:
            return QueryResult([], [])
        columns = [d[0] for d in desc]
        return QueryResult(columns, cur.fetchall())
    except duckdb.ParserException as exc:
        raise QuerySyntaxError(_one_line(exc)) from None
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from None
    finally:
        con.close()


def _one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def render(result: QueryResult) -> str:
    """The rows as an aligned text table (NULL for a missing value)."""
    if not result.columns:
        return "(no result)"
    cells = [[("NULL" if v is None else str(_plain(v))) for v in r] for r in result.rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(result.columns)]
    numeric = [
        all(isinstance(r[i], int | float | decimal.Decimal) for r in result.rows if r[i] is not None)
        for i in range(len(result.columns))
    ]
    line = "  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(r, widths, numeric, strict=True)).rstrip()
        for r in cells
    ]
    out.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(out)
