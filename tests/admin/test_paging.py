"""Paging of list answers (hzp2p.admin.paging, hzp2p.node.paging): order, cursors, errors."""

from __future__ import annotations

import pytest

from hzp2p.admin.paging import PAGED, Paged, decode_cursor, encode_cursor
from hzp2p.admin.protocol import AdminError
from hzp2p.node.paging import page


def walk(spec: Paged, result: dict[str, object], limit: int) -> list[object]:
    out: list[object] = []
    after = None
    while True:
        got = page(spec, result, limit, after)
        field = next(f for f in spec.fields if f in got)
        out += got[field]
        if got["next"] is None:
            return out
        after = got["next"]


def test_keyed_pages_follow_the_key_order_and_cover_everything() -> None:
    rows = [{"inst_id": i, "name": f"n{i}"} for i in (5, 1, 3, 2, 4)]
    spec = PAGED["members"]
    assert walk(spec, {"members": rows}, 2) == sorted(rows, key=lambda r: r["inst_id"])
    whole = page(spec, {"members": rows, "other": 1}, None, None)
    assert whole["next"] is None and whole["other"] == 1 and len(whole["members"]) == 5
    first = page(spec, {"members": rows}, 5, None)
    assert first["next"] is None  # exactly the rest: no empty page after it


def test_append_only_logs_page_by_position() -> None:
    rows = [{"kind": k} for k in "cab"]
    assert walk(PAGED["access_log"], {"entries": rows}, 1) == rows


def test_rows_missing_a_key_field_still_order_and_page() -> None:
    rows = [{"metric": "m", "region": "r", "period": p, "report_id": None} for p in "ba"]
    assert [r["period"] for r in walk(PAGED["reports"], {"sums": rows}, 1)] == ["a", "b"]


def test_bad_cursors() -> None:
    with pytest.raises(ValueError):
        decode_cursor("zz")
    with pytest.raises(ValueError):
        decode_cursor(b"{}".hex())
    assert decode_cursor(encode_cursor([1, "a", None])) == [1, "a", None]
    with pytest.raises(AdminError, match="another list"):
        page(PAGED["members"], {"members": [{"inst_id": 1}]}, 1, encode_cursor(["a", 1]))
