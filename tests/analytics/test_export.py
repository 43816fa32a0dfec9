"""Export and query over a chain of real transactions: k-suppression, nothing personal in any
file, DuckDB totals equal to the contracts' own queries, incremental exports, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from analytics_helpers import Built, build_world, secrets_in_state, to_sqlite

from hzp2p.analytics.aggregates import Window, epi_summary, table_rows
from hzp2p.analytics.export import ExportError, export, load_manifest
from hzp2p.analytics.query import QueryError, QuerySyntaxError, run_query
from hzp2p.analytics.sources import SqliteSnapshot
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts import epi
from hzp2p.contracts.engine import read_head


@pytest.fixture(scope="module")
def built() -> Built:
    return build_world()


@pytest.fixture(scope="module")
def db(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("node") / "node.db"
    to_sqlite(built.w.state.data, path)
    return path


def q1(data: Path, sql: str) -> Any:
    return run_query(data, sql).rows[0][0]


def test_k_suppression_drops_small_groups_only(built: Built) -> None:
    state = built.w.state
    top = read_head(state).height
    tables = {n: list(rows) for n, rows in table_rows(state, Window(0, top), k=5)}
    doses = tables["doses_by_site_day"]
    # site A, day 0, dose 1: 7 (shown); site B day 0: 3 and site A day 1 dose 2: 2 (left out)
    assert [(site, product, dose, n) for _, site, product, dose, n in doses] == [(3, "covax", 1, 7)]
    codes = tables["code_changes_by_day"]
    assert [(colour, source, n) for _, colour, source, n in codes] == [("red", "lab", 6)]
    # k = 1 shows every group, and then the counts add up to the contracts' own records
    everything = {n: list(rows) for n, rows in table_rows(state, Window(0, top), k=1)}
    all_doses = sum(len(dq.doses(state, c.pseudonym)) for c in built.citizens)
    assert sum(r[-1] for r in everything["doses_by_site_day"]) == all_doses == 12
    assert sorted(r[-1] for r in everything["doses_by_site_day"]) == [2, 3, 7]
    changes = sum(
        sum(1 for e in dq.health_code_history(state, c.pseudonym) if e["changed"])
        for c in built.citizens)
    assert sum(r[-1] for r in everything["code_changes_by_day"]) == changes == 8
    with pytest.raises(ValueError):
        next(table_rows(state, Window(0, top), k=0))


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_no_pseudonym_or_ciphertext_in_any_exported_file(
    built: Built, db: Path, tmp_path: Path, fmt: str
) -> None:
    pseudonyms, blobs = secrets_in_state(built.w.state.data)
    assert {c.pseudonym for c in built.citizens} <= pseudonyms  # the test sees what it looks for
    ciphertexts = [r["ciphertext"] for r in dq.values(built.w.state, b"rec/r/")]
    assert len(ciphertexts) == 18 and set(ciphertexts) <= blobs
    out = tmp_path / "x"
    src = SqliteSnapshot(db)
    try:
        export(src, out, fmt=fmt, k=1)  # k = 1: every row there is, suppressed or not
    finally:
        src.close()
    files = _files(out)
    assert len(files) == 8  # six tables, the manifest, the lock file
    needles = [p.encode() for p in pseudonyms] + list(blobs) + [b.hex().encode() for b in blobs]
    needles += [b"Marker", b"Citizen"]  # the plaintext inside the ciphertexts
    for f in files:
        raw = f.read_bytes()
        found = [n for n in needles if n in raw]
        assert not found, f"{f.name} holds {found[:3]}"
        if f.suffix in (".parquet", ".csv"):  # and the decoded cells, whatever the encoding
            table = pq.read_table(f) if f.suffix == ".parquet" else pacsv.read_csv(f)
            text = json.dumps(table.to_pylist(), default=str)
            assert not [p for p in pseudonyms if p in text]
            assert not [b for b in blobs if b.hex() in text]


def test_duckdb_totals_equal_the_contracts_queries(built: Built, db: Path, tmp_path: Path) -> None:
    state = built.w.state
    src = SqliteSnapshot(db)
    try:
        res = export(src, tmp_path / "x", k=1)
    finally:
        src.close()
    out = tmp_path / "x"
    top = read_head(state).height
    assert res.upto_height == top and res.after_height == 0
    # epidemic reports: the sum, and per (metric, region, period) the gateway's summary
    ids = [json.loads(json.dumps(r[0])) for r in run_query(out, "SELECT report_id FROM epi_reports").rows]
    assert sum(epi.get_report(state, i)["value"] for i in ids) == built.epi_total  # type: ignore[index]
    assert q1(out, "SELECT sum(value) FROM epi_reports") == built.epi_total
    rows = run_query(out, "SELECT metric, region, period, sum(value), count(*) FROM epi_reports "
                          "GROUP BY ALL ORDER BY ALL").rows
    assert [tuple(r) for r in rows] == [
        (s["metric"], s["region"], s["period"], s["value"], s["reports"]) for s in epi_summary(state)]
    # lots: remaining doses, status and custodian as the contracts hold them
    for lot_id in ("L1", "L2"):
        lot = dq.lot(state, lot_id)
        assert lot is not None
        got = run_query(out, f"SELECT remaining, status, custodian_id FROM lots WHERE lot_id = '{lot_id}'")
        assert got.rows == [(lot["remaining"], lot["status"], lot["custodian"])]
        custody = dq.lot_custody(state, lot_id)
        assert q1(out, f"SELECT count(*) FROM custody_events WHERE lot_id = '{lot_id}' "
                       "AND kind IN ('register', 'transfer')") == len(custody)
        readings = dq.temperature_history(state, lot_id)
        assert q1(out, f"SELECT count(*) FROM coldchain_readings WHERE lot_id = '{lot_id}'") == len(readings)
    assert q1(out, "SELECT count(*) FROM custody_events WHERE kind = 'quarantine'") == 1
    assert q1(out, "SELECT count(*) FROM coldchain_readings WHERE NOT in_range") == 1
    # doses: the table's total equals the doses recorded per subject, and the lots' use
    doses = sum(len(dq.doses(state, c.pseudonym)) for c in built.citizens)
    assert q1(out, "SELECT sum(doses) FROM doses_by_site_day") == doses
    assert q1(out, "SELECT sum(quantity - remaining) FROM lots") == doses


def test_incremental_export_appends_parts_and_snapshots_follow(built: Built, tmp_path: Path) -> None:
    """Export up to a middle height, then the rest: the tables equal one full export."""
    from hzp2p.contracts.state import DictState

    full = built.w.state
    top = read_head(full).height

    class AtHeight(DictState):  # the same state, claiming an earlier head: rows above it excluded
        def __init__(self, h: int) -> None:
            super().__init__(dict(full.data))
            from hzp2p.contracts.api import decode_value, encode_value
            from hzp2p.contracts.engine import K_HEAD

            head = decode_value(self.data[K_HEAD])
            self.data[K_HEAD] = encode_value([h, *head[1:]])

    mid = top - 12
    inc, whole = tmp_path / "inc", tmp_path / "whole"
    first = export(AtHeight(mid), inc, k=1)
    assert (first.after_height, first.upto_height) == (0, mid)
    second = export(full, inc, k=1)
    assert (second.after_height, second.upto_height) == (mid, top)
    assert second.rows["epi_reports"] == 10  # the reports are the last ten blocks
    again = export(full, inc, k=1)  # nothing new: no part added
    assert again.rows["epi_reports"] == 0
    export(full, whole, k=1)
    m = load_manifest(inc)
    assert m is not None and m.exported_height == top and len(m.exports) == 3
    assert len(m.tables["epi_reports"]["files"]) == 2
    assert len(m.tables["lots"]["files"]) == 1
    assert len(list((inc / "lots").iterdir())) == 1  # the replaced snapshot was removed
    for table in ("epi_reports", "custody_events", "coldchain_readings", "lots",
                  "doses_by_site_day", "code_changes_by_day"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        assert run_query(inc, sql).rows == run_query(whole, sql).rows, table
    # the directory's height decides where the next export starts; anything else is refused
    with pytest.raises(ExportError, match="--from-height must be"):
        export(full, inc, from_height=3)
    with pytest.raises(ExportError, match="use --format parquet"):
        export(full, inc, fmt="csv")
    late = export(full, tmp_path / "late", from_height=top - 3, k=1)
    assert late.rows["epi_reports"] == 3


def test_query_errors(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "x"
    export(built.w.state, out)
    with pytest.raises(QuerySyntaxError):
        run_query(out, "SELEKT 1")
    with pytest.raises(QueryError, match="no_such_table"):
        run_query(out, "SELECT * FROM no_such_table")
    with pytest.raises(ExportError, match="holds no export"):
        run_query(tmp_path / "nothing", "SELECT 1")


def test_epi_summary_filters(built: Built) -> None:
    s = built.w.state
    everything = epi_summary(s)
    assert sum(r["value"] for r in everything) == built.epi_total
    assert sum(r["reports"] for r in everything) == 10
    one = epi_summary(s, metric="confirmed_cases", region="district-1")
    assert one and all(r["metric"] == "confirmed_cases" and r["region"] == "district-1" for r in one)
    assert [r["period"] for r in epi_summary(s, from_period="2026-W06")] == ["2026-W06"] * len(
        epi_summary(s, to_period="2026-W06", from_period="2026-W06"))
    assert epi_summary(s, to_period="2026-W04") == []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hzp2p.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_export_and_query_offline(built: Built, db: Path, tmp_path: Path) -> None:
    """`hzp2p export` on a node whose daemon is stopped reads the database file."""
    from hzp2p.tools.scaffold import write_consortium

    write_consortium(tmp_path / "c", 1)
    cfg = tmp_path / "c" / "node1" / "config.toml"
    (tmp_path / "c" / "node1" / "data").mkdir(exist_ok=True)
    (tmp_path / "c" / "node1" / "data" / "node.db").write_bytes(db.read_bytes())
    out = tmp_path / "x"
    r = _cli("export", "--config", str(cfg), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["source"] == "sqlite" and summary["rows"]["epi_reports"] == 10
    assert summary["rows"]["doses_by_site_day"] == 1  # k = 5 by default
    r = _cli("query", "SELECT sum(value) AS total FROM epi_reports", "--data", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"columns": ["total"], "rows": [[built.epi_total]]}
    r = _cli("query", "SELECT region, sum(value) FROM epi_reports GROUP BY 1 ORDER BY 1", "--data", str(out))
    assert r.returncode == 0 and "district-0" in r.stdout and "(3 rows)" in r.stdout
    bad = _cli("query", "SELEKT nonsense", "--data", str(out))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    missing = _cli("query", "SELECT * FROM nope", "--data", str(out))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    nodir = _cli("query", "SELECT 1", "--data", str(tmp_path / "none"))
    assert nodir.returncode == 1 and "hzp2p export" in nodir.stderr
    wrong = _cli("export", "--config", str(cfg), "--out", str(out), "--format", "csv")
    assert wrong.returncode == 2 and "parquet" in wrong.stderr
    nocfg = _cli("export", "--config", str(tmp_path / "none.toml"), "--out", str(out))
    assert nocfg.returncode == 2 and "Traceback" not in nocfg.stderr


def test_csv_export_reads_back_with_the_same_types(built: Built, tmp_path: Path) -> None:
    export(built.w.state, tmp_path / "p", k=1)
    export(built.w.state, tmp_path / "c", fmt="csv", k=1)
    for table in ("epi_reports", "custody_events", "coldchain_readings", "lots",
                  "doses_by_site_day", "code_changes_by_day"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        assert run_query(tmp_path / "c", sql).rows == run_query(tmp_path / "p", sql).rows, table


def test_cli_without_the_analytics_extra_says_how_to_install_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['pyarrow'] = None; sys.modules['duckdb'] = None\n"
            "from hzp2p.cli import main; sys.exit(main(sys.argv[1:]))")
    for args in (["query", "SELECT 1", "--data", str(tmp_path)],
                 ["export", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "x")]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           timeout=60, check=False)
        assert r.returncode == 1, r.stderr
        assert "pip install 'hzp2p[analytics]'" in r.stderr and r.stderr.count("\n") == 1
