"""Writing the analytics tables: Parquet (pyarrow, an explicit schema per table) or CSV.

Layout of an export directory:

  DIR/manifest.json                     what is there (the only source of truth for readers)
  DIR/<append table>/part-<from>-<to>.parquet    rows of heights from..to (12-digit, inclusive)
  DIR/<snapshot table>/snapshot-<to>.parquet     the whole table as of height `to`

An export covers the heights after the manifest's `exported_height` (or after
`--from-height` for a new directory) up to the node's height: it appends one
part file per append table (none when nothing new) and rewrites the snapshot
tables. Files are written under a temporary name and renamed; the manifest
is replaced last, so an interrupted export leaves the previous export intact
(a stray part is not in the manifest, so readers never see it, and the next
export removes it). Nothing personal is in any schema (hzp2p.analytics.aggregates).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hzp2p.analytics.aggregates import (
    APPEND_TABLES,
    COLUMNS,
    K_DEFAULT,
    Batch,
    Window,
    head_height,
    table_batches,
)
from hzp2p.contracts.state import Readable

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
FORMATS = ("parquet", "csv")

_ID = pa.string()
_INST = pa.int64()

SCHEMAS: dict[str, pa.Schema] = {
    "epi_reports": pa.schema([
        pa.field("report_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("period", pa.string(), nullable=False),
        pa.field("value", pa.int64(), nullable=False),
        pa.field("reporter_id", _INST, nullable=False),
        pa.field("height", pa.int64(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
    ]),
    "custody_events": pa.schema([
        pa.field("lot_id", _ID, nullable=False),
        pa.field("seq", pa.int32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("from_inst_id", _INST),
        pa.field("to_inst_id", _INST),
        pa.field("by_inst_id", _INST),
        pa.field("height", pa.int64(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
    ]),
    "coldchain_readings": pa.schema([
        pa.field("lot_id", _ID, nullable=False),
        pa.field("sensor_id", _ID, nullable=False),
        pa.field("carrier_id", _INST, nullable=False),
        pa.field("t_ms", pa.int64(), nullable=False),
        pa.field("temp_centi_c", pa.int32(), nullable=False),
        pa.field("in_range", pa.bool_(), nullable=False),
        pa.field("height", pa.int64(), nullable=False),
    ]),
    "lots": pa.schema([
        pa.field("lot_id", _ID, nullable=False),
        pa.field("product", pa.string(), nullable=False),
        pa.field("manufacturer_id", _INST, nullable=False),
        pa.field("quantity", pa.int64(), nullable=False),
        pa.field("remaining", pa.int64(), nullable=False),
        pa.field("expiry_ms", pa.int64(), nullable=False),
        pa.field("temp_min_centi_c", pa.int32(), nullable=False),
        pa.field("temp_max_centi_c", pa.int32(), nullable=False),
        pa.field("custodian_id", _INST, nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("registered_height", pa.int64(), nullable=False),
        pa.field("registered_ms", pa.int64(), nullable=False),
        pa.field("as_of_height", pa.int64(), nullable=False),
    ]),
    "doses_by_site_day": pa.schema([
        pa.field("day", pa.date32(), nullable=False),
        pa.field("site_id", _INST, nullable=False),
        pa.field("product", pa.string(), nullable=False),
        pa.field("dose", pa.int32(), nullable=False),
        pa.field("doses", pa.int64(), nullable=False),
    ]),
    "code_changes_by_day": pa.schema([
        pa.field("day", pa.date32(), nullable=False),
        pa.field("colour", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("changes", pa.int64(), nullable=False),
    ]),
}
assert {n: tuple(s.names) for n, s in SCHEMAS.items()} == COLUMNS


class ExportError(Exception):
    """The export cannot be done as asked (wrong directory, format or height): changes nothing."""


@dataclass(slots=True)
class Manifest:
    format: str
    exported_height: int = 0
    k: int = K_DEFAULT
    chain_id: str | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    exports: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "format": self.format,
            "exported_height": self.exported_height,
            "k": self.k,
            "chain_id": self.chain_id,
            "tables": self.tables,
            "exports": self.exports,
        }


def load_manifest(out_dir: Path) -> Manifest | None:
    """The directory's manifest, None for a directory that holds no export."""
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != MANIFEST_VERSION or raw.get("format") not in FORMATS:
            raise ExportError(f"{path}: not a version-{MANIFEST_VERSION} export manifest")
        return Manifest(
            format=raw["format"],
            exported_height=int(raw["exported_height"]),
            k=int(raw["k"]),
            chain_id=raw.get("chain_id"),
            tables=dict(raw["tables"]),
            exports=list(raw["exports"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: unreadable manifest ({exc})") from None


def _record_batches(schema: pa.Schema, batches: Iterable[Batch]) -> Iterator[pa.RecordBatch]:
    types = [f.type for f in schema]
    for cols in batches:
        arrays = [pa.array(col, type=t) for col, t in zip(cols, types, strict=True)]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_table(path: Path, fmt: str, schema: pa.Schema, batches: Iterable[Batch]) -> int:
    """Write the batches to `path` (atomically: a temporary name, then rename); returns the
    row count. An empty table is a file with the schema and no rows."""
    tmp = path.with_name("." + path.name + ".tmp")  # hidden: Spark, Hive and Trino skip it
    n = 0
    writer = pq.ParquetWriter if fmt == "parquet" else pacsv.CSVWriter
    with writer(tmp, schema) as w:
        for batch in _record_batches(schema, batches):
            w.write_batch(batch)
            n += batch.num_rows
    os.replace(tmp, path)
    return n


@dataclass(frozen=True, slots=True)
class ExportResult:
    out_dir: str
    format: str
    after_height: int
    upto_height: int
    rows: dict[str, int]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "out": self.out_dir, "format": self.format, "from_height": self.after_height,
            "to_height": self.upto_height, "rows": self.rows, "seconds": round(self.seconds, 3),
        }


def export(
    reader: Readable,
    out_dir: Path,
    *,
    fmt: str = "parquet",
    from_height: int | None = None,
    k: int = K_DEFAULT,
    chain_id: str | None = None,
) -> ExportResult:
    """Export the tables of `reader`'s state into `out_dir` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    if k < 1:
        raise ExportError(f"k must be at least 1, got {k}")
    if from_height is not None and from_height < 0:
        raise ExportError("--from-height must be >= 0")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is not a directory")
    old = load_manifest(out_dir) if out_dir.exists() else None
    if old is not None:
        if old.format != fmt:
            raise ExportError(f"{out_dir} holds a {old.format} export; use --format {old.format}")
        if from_height is not None and from_height != old.exported_height:
            raise ExportError(
                f"{out_dir} holds heights up to {old.exported_height}: --from-height must be "
                f"{old.exported_height} (or left out) so no height is missed or exported twice")
        if chain_id is not None and old.chain_id not in (None, chain_id):
            raise ExportError(f"{out_dir} holds an export of chain {old.chain_id!r}, not {chain_id!r}")
    elif out_dir.exists() and any(
        p.name not in COLUMNS and p.name != ".export.lock" for p in out_dir.iterdir()
    ):  # (an interrupted first export leaves only its own table directories)
        raise ExportError(f"{out_dir} is not empty and holds no export ({MANIFEST} missing)")
    after = old.exported_height if old is not None else (from_height or 0)
    upto = head_height(reader)
    if upto < after:
        raise ExportError(f"the node is at height {upto}, below the export's height {after}")

    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir):
        if load_manifest(out_dir) != old:
            raise ExportError(f"{out_dir} changed while this export started; run it again")
        return _export(reader, out_dir, old, fmt, chain_id, Window(after, upto), k)


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """One export at a time into a directory (a lock file beside the manifest)."""
    with open(out_dir / ".export.lock", "ab") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"another export is writing {out_dir}") from None
        yield


def _export(
    reader: Readable, out_dir: Path, old: Manifest | None, fmt: str, chain_id: str | None,
    window: Window, k: int,
) -> ExportResult:
    after, upto = window.after_height, window.upto_height
    t0 = time.perf_counter()
    manifest = old or Manifest(format=fmt, chain_id=chain_id)
    counts: dict[str, int] = {}
    for name, rows in table_batches(reader, window, k):
        tdir = out_dir / name
        tdir.mkdir(parents=True, exist_ok=True)
        entry = manifest.tables.setdefault(
            name, {"kind": "append" if name in APPEND_TABLES else "snapshot", "files": [], "rows": 0})
        if name in APPEND_TABLES:
            if after == upto and entry["files"]:
                counts[name] = 0
                continue
            rel = f"{name}/part-{after + 1:012d}-{upto:012d}.{fmt}"
            n = write_table(out_dir / rel, fmt, SCHEMAS[name], rows)
            if n == 0 and entry["files"]:
                (out_dir / rel).unlink()  # an empty part adds nothing once the table has one
            else:
                entry["files"].append(rel)
            entry["rows"] += n
        else:
            rel = f"{name}/snapshot-{upto:012d}.{fmt}"  # the old one goes after the manifest
            n = write_table(out_dir / rel, fmt, SCHEMAS[name], rows)
            entry["files"], entry["rows"] = [rel], n
        counts[name] = n
    manifest.exported_height, manifest.k = upto, k
    manifest.exports.append({
        "from_height": after, "to_height": upto, "k": k, "rows": counts,
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    })
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
    os.replace(tmp, out_dir / MANIFEST)
    _remove_strays(out_dir, manifest)
    return ExportResult(str(out_dir), fmt, after, upto, counts, time.perf_counter() - t0)


def _remove_strays(out_dir: Path, manifest: Manifest) -> None:
    """Delete table files the manifest does not name: the snapshots it replaced, and parts
    left by an interrupted export."""
    for name in COLUMNS:
        listed = set(manifest.tables.get(name, {}).get("files", []))
        tdir = out_dir / name
        if not tdir.is_dir():
            continue
        for f in tdir.iterdir():
            if f.is_file() and f"{name}/{f.name}" not in listed:
                f.unlink()
