"""`hzp2p admin submit-many --file`: every line checked before anything is sent, bad lines
reported by number (exit 2); receipts per line, exit 1 when any record is not committed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from admin_helpers import ThreadedServer

from hzp2p.admin.client import chunk_items
from hzp2p.cli import main

GOOD = {"type": "epi.report", "payload": {"report_id": "r1", "value": 1}}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_bad_lines_are_listed_by_number_and_nothing_is_sent(
    threaded_server: ThreadedServer, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(short_tmp / "day.jsonl", [
        json.dumps(GOOD),
        "",
        "{not json",
        json.dumps({"type": "epi.report"}),
        json.dumps({"type": "epi.report", "payload": [1]}),
        json.dumps({"type": "epi.report", "payload": {}, "nonce": 3}),
        json.dumps({"type": "epi.report", "payload": {"k": {"$hex": "zz"}}}),
        json.dumps(["epi.report", {}]),
        json.dumps({"type": "epi.report", "payload": {}, "idempotency_key": ""}),
        json.dumps(GOOD),
    ])
    sock = str(threaded_server.socket_path)
    code, out, err = run(capsys, "admin", "--socket", sock, "submit-many", "--file", f)
    assert code == 2 and out == ""
    assert "7 bad line(s), nothing was sent" in err
    for n, text in [(3, "not valid JSON"), (4, "missing payload"), (5, "payload must be"),
                    (6, "unknown fields nonce"), (7, "payload has a bad bytes tag"), (8, "must be a JSON object"),
                    (9, "idempotency_key")]:
        assert f"line {n}: {text}" in err, (n, err)
    assert "line 1:" not in err and "line 10:" not in err
    assert all(m != "submit_many" for m, _ in threaded_server.daemon.calls)


def test_empty_and_missing_files(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(short_tmp / "nobody.sock")
    code, _, err = run(capsys, "admin", "--socket", sock, "submit-many", "--file",
                       write(short_tmp / "e.jsonl", ["", "  "]))
    assert code == 2 and "holds no records" in err
    code, _, err = run(capsys, "admin", "--socket", sock, "submit-many", "--file",
                       str(short_tmp / "missing.jsonl"))
    assert code == 2 and "cannot read --file" in err
    code, _, err = run(capsys, "admin", "--socket", sock, "submit-many", "--batch", "0",
                       "--file", write(short_tmp / "g.jsonl", [json.dumps(GOOD)]))
    assert code == 2 and "--batch" in err


def test_chunks_respect_count_and_bytes() -> None:
    items: list[Mapping[str, Any]] = [{"p": "x" * 100}] * 25
    assert list(chunk_items(items, 10, 1 << 20)) == [(0, 10), (10, 20), (20, 25)]
    ranges = list(chunk_items(items, 1000, 500))
    assert ranges[0] == (0, 4) and ranges[-1][1] == 25
    assert all(b - a <= 4 for a, b in ranges)
    assert list(chunk_items([{"p": "x" * 1000}], 10, 10)) == [(0, 1)]  # too big goes alone
