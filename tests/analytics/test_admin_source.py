"""Reading state through a daemon's admin socket: paging past the daemon's row cap returns every
key once, in order; and a real daemon exports while it runs (its database is locked to others)."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hzp2p.analytics import sources
from hzp2p.analytics.export import export
from hzp2p.analytics.query import run_query
from hzp2p.analytics.sources import AdminState, SourceError, SqliteSnapshot, daemon_running
from hzp2p.contracts.state import DictState
from hzp2p.tools.localcluster import LocalCluster


class FakeDaemon(AdminState):
    """AdminState whose `state_scan` is answered from a dict, capped like the daemon's."""

    def __init__(self, data: dict[bytes, bytes], cap: int) -> None:
        self.state = DictState(data)
        self.cap = cap
        self.calls = 0

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        assert method == "state_scan"
        self.calls += 1
        prefix = b"" if params["prefix"] == "-" else bytes.fromhex(params["prefix"])
        rows = list(self.state.scan(prefix, min(params["limit"], self.cap)))
        return {"items": [[k.hex(), v.hex()] for k, v in rows]}


@pytest.mark.parametrize("page", [1, 2, 3, 7])
def test_paging_returns_every_key_once_in_order(page: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "PAGE_ROWS", page)
    rng = random.Random(page)
    alphabet = "ab/-0~ Z"
    keys = {("p/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))).encode()
            for _ in range(60)}
    keys |= {b"p/", b"p/a", b"p/aa", b"p/a/", b"p/~~~~", b"q/x", b"o/z"}  # edges of the prefix
    data = {k: b"v" + k for k in keys}
    fake = FakeDaemon(data, cap=page)
    for prefix in (b"p/", b"p/a", b"p/a/", b"", b"zz"):
        want = sorted((k, v) for k, v in data.items() if k.startswith(prefix))
        assert list(fake.scan(prefix)) == want, prefix
        assert list(fake.scan(prefix, 5)) == want[:5]
    assert fake.get(b"p/a") == b"vp/a" and fake.get(b"p/absent-key") is None


def test_paging_refuses_keys_it_cannot_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "PAGE_ROWS", 2)
    fake = FakeDaemon({b"p/\x01": b"", b"p/a": b"", b"p/b": b""}, cap=2)
    with pytest.raises(SourceError, match="cannot page"):
        list(fake.scan(b"p/"))


def _report(i: int) -> dict[str, Any]:
    return {"report_id": f"live-{i:03d}", "region": f"district-{i % 4}", "metric": "confirmed_cases",
            "value": i, "period": f"2026-W{1 + i % 3:02d}"}


@pytest.mark.slow
def test_export_from_a_running_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon holds its database exclusively; `hzp2p export` reads through its admin socket
    while it commits, and an export after it stops (from the file) holds the same tables."""
    with LocalCluster(tmp_path / "c", 1) as c:
        c.start(1)
        c.wait_leader(20)
        cfg = c.config(1)
        for i in range(40):
            r = c.submit(1, "epi.report", _report(i))
            assert r["status"] == "committed"
        from hzp2p.config import load_config

        conf = load_config(cfg)
        db = conf.db_path
        assert daemon_running(db)
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # why the socket is needed
            sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2).execute(
                "SELECT count(*) FROM state").fetchone()
        with pytest.raises(SourceError, match="cannot read"):
            SqliteSnapshot(db)

        out = tmp_path / "live"
        run = subprocess.run(
            [sys.executable, "-m", "hzp2p.cli", "export", "--config", str(cfg), "--out", str(out),
             "--json"], capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        first = json.loads(run.stdout)
        assert first["source"] == "admin" and first["rows"]["epi_reports"] == 40
        # more blocks, and an export that pages (7 rows a call) while the writes go on
        monkeypatch.setattr(sources, "PAGE_ROWS", 7)
        for i in range(40, 60):
            assert c.submit(1, "epi.report", _report(i))["status"] == "committed"
        src = AdminState(conf.admin.socket)
        try:
            second = export(src, out)
        finally:
            src.close()
        assert second.after_height == first["to_height"] and second.rows["epi_reports"] == 20
        assert src.calls > 60 // 7
        total = run_query(out, "SELECT count(*), sum(value) FROM epi_reports").rows
        assert total == [(60, sum(range(60)))]
        height = second.upto_height
        assert c.stop(1) == 0

    assert not daemon_running(db)
    offline = tmp_path / "offline"
    src2 = SqliteSnapshot(db)
    try:
        third = export(src2, offline)
    finally:
        src2.close()
    assert third.upto_height == height
    for table in ("epi_reports", "lots", "doses_by_site_day", "code_changes_by_day"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        assert run_query(out, sql).rows == run_query(offline, sql).rows


@pytest.mark.slow
def test_export_after_the_daemon_was_killed(tmp_path: Path) -> None:
    """SIGKILL leaves committed blocks in the WAL (no index file): the offline export reads
    them, and the daemon restarts on the database afterwards."""
    with LocalCluster(tmp_path / "c", 1) as c:
        c.start(1)
        c.wait_leader(20)
        for i in range(15):
            assert c.submit(1, "epi.report", _report(i))["status"] == "committed"
        c.kill(1)
        from hzp2p.config import load_config

        db = load_config(c.config(1)).db_path
        assert not daemon_running(db)
        src = SqliteSnapshot(db)
        try:
            res = export(src, tmp_path / "x")
        finally:
            src.close()
        assert res.rows["epi_reports"] == 15
        assert run_query(tmp_path / "x", "SELECT sum(value) FROM epi_reports").rows == [(sum(range(15)),)]
        c.start(1)
        c.wait_leader(20)
        assert c.submit(1, "epi.report", _report(15))["status"] == "committed"
