"""`hzp2p admin verify`'s human output says where verification started: the genesis, or the
snapshot a node caught up through (its state digest checked)."""

from __future__ import annotations

from hzp2p.admin.cli import _render_verify


def test_from_the_genesis() -> None:
    r = {"ok": True, "height": 9, "blocks_checked": 9, "first_bad_height": None, "reason": None,
         "from_height": 1, "snapshot_height": None}
    assert _render_verify(r) == "chain OK: 9 blocks verified up to height 9"


def test_from_a_snapshot() -> None:
    r = {"ok": True, "height": 12, "blocks_checked": 4, "first_bad_height": None,
         "reason": None, "from_height": 9, "snapshot_height": 8}
    out = _render_verify(r)
    assert out.startswith("chain OK: verified blocks 9..12 from the snapshot at height 8 "
                          "(state digest checked)"), out
    r.update(height=8, blocks_checked=0)
    assert "snapshot at height 8 verified" in _render_verify(r)
    r.update(ok=False, height=12, blocks_checked=1, first_bad_height=10, reason="bad merkle")
    assert _render_verify(r) == ("chain FAULT at height 10: bad merkle "
                                 "(verifying from the snapshot at height 8)")


def test_an_older_daemon_without_the_new_keys() -> None:
    r = {"ok": True, "height": 3, "blocks_checked": 3, "first_bad_height": None, "reason": None}
    assert _render_verify(r) == "chain OK: 3 blocks verified up to height 3"
