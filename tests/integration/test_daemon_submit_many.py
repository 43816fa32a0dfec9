"""`submit_many` on real daemons: one receipt per item in order, bad items alone rejected,
malformed requests refused whole, resubmission idempotent, followers forward to the leader."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from hzp2p.admin.protocol import MAX_SUBMIT_MANY, AdminError
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow


def report(i: int, prefix: str = "m") -> dict[str, Any]:
    return {"report_id": f"{prefix}{i}", "region": "north", "metric": "cases", "value": i,
            "period": "2026-W47"}


def items(n: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"type": "epi.report", "payload": report(i, prefix)} for i in range(n)]


def many(c: LocalCluster, k: int, its: list[dict[str, Any]], wait_s: float = 20) -> Any:
    return c.call(k, "submit_many", {"items": its, "wait_s": wait_s}, timeout_s=wait_s + 10)


def committed_once(c: LocalCluster, k: int, height: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    for h in range(1, height + 1):
        for tx in c.call(k, "block", {"height": h})["txs"]:
            if tx["status"] == "committed":
                seen[tx["tx_hash"]] = seen.get(tx["tx_hash"], 0) + 1
    return seen


@pytest.fixture
def single(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "c", 1) as c:
        c.start(1)
        c.wait_leader(20)
        yield c


def test_one_receipt_per_item_in_order_and_bad_items_alone(single: LocalCluster) -> None:
    c = single
    batch = items(40)
    batch[3] = {"type": "no.such.type", "payload": report(3)}  # refused at pre-check
    batch[7] = {"type": "epi.report", "payload": {**report(7), "value": 1.5}}  # unsignable
    batch[9] = {"type": "epi.report", "payload": {"report_id": "m9"}}  # refused: its shape
    batch[11] = dict(batch[10])  # the same request twice: the same transaction, once
    # the same report id as item 12: refused by the contract when the block executes
    batch[13] = {"type": "epi.report", "payload": {**report(12), "value": 99}}
    res = many(c, 1, batch)
    receipts = res["receipts"]
    assert len(receipts) == 40
    bad = {3, 7, 9, 13}
    for i, r in enumerate(receipts):
        assert r["status"] == ("rejected" if i in bad else "committed"), (i, r)
    assert receipts[3]["tx_hash"] and "no.such.type" in receipts[3]["reason"]
    assert receipts[7]["tx_hash"] is None and "float" in receipts[7]["reason"]
    # refused at admission (the contract's stateless check): never in a block, every problem
    assert receipts[9]["height"] is None and "missing field(s)" in receipts[9]["problems"]["payload"]
    assert receipts[13]["height"] is not None and "already accepted" in receipts[13]["reason"]
    assert receipts[10] == receipts[11]
    assert (res["committed"], res["rejected"], res["pending"]) == (36, 4, 0)
    # Each committed receipt names where the transaction is, as `tx` does.
    for r in receipts[:3] + receipts[-3:]:
        got = c.call(1, "tx", {"tx_hash": r["tx_hash"]})
        assert (got["status"], got["height"], got["index"]) == ("committed", r["height"], r["index"])

    # Resubmitting the same batch: the same receipts, nothing committed twice.
    height = c.status(1)["height"]  # type: ignore[index]
    again = many(c, 1, batch)
    assert again["receipts"] == receipts
    assert c.status(1)["height"] == height  # type: ignore[index]
    seen = committed_once(c, 1, height)
    assert all(n == 1 for n in seen.values()) and len(seen) == 35  # 36 receipts: 10 and 11 are one tx


def test_malformed_requests_change_nothing(single: LocalCluster) -> None:
    c = single
    h0 = c.status(1)["height"]  # type: ignore[index]
    cases: list[tuple[list[Any], str]] = [
        (items(MAX_SUBMIT_MANY + 1), f"at most {MAX_SUBMIT_MANY}"),
        ([], "non-empty list"),
        ([*items(3), {"payload": report(3)}], "item 3: missing field 'type'"),
        ([*items(3), {"type": "epi.report", "payload": [1]}], "item 3: field 'payload'"),
        ([*items(2), "epi.report"], "item 2: must be a map"),
        ([*items(2), {"type": "epi.report", "payload": {}, "nonce": 1}], "unknown field"),
        ([*items(2), {"type": "epi.report", "payload": {}, "idempotency_key": 7}],
         "'idempotency_key'"),
    ]
    for its, text in cases:
        with pytest.raises(AdminError) as exc:
            many(c, 1, its, wait_s=1)
        assert exc.value.code == "bad_request" and text in exc.value.message, exc.value.message
    with pytest.raises(AdminError) as exc:
        c.call(1, "submit_many", {"items": items(2), "wait_s": "soon"})
    assert exc.value.code == "bad_request"
    # A request larger than the daemon's frame bound is refused before it is read.
    big = [{"type": "epi.report", "payload": {**report(i), "pad": "x" * 2000}}
           for i in range(MAX_SUBMIT_MANY)]
    body = msgpack.packb({"id": 1, "method": "submit_many", "params": {"items": big}},
                         use_bin_type=True)
    from tests.integration.test_daemon_single import raw_exchange

    assert len(body) > 1 << 20  # the default max_request_bytes
    answer = raw_exchange(c.sockets[1], struct.pack(">I", len(body)) + body[:4096])
    assert answer["ok"] is False and "exceeds" in answer["error"]["message"]
    assert c.status(1)["height"] == h0  # type: ignore[index]
    assert c.status(1)["mempool"] == 0  # type: ignore[index]


def test_three_daemons_followers_forward_batches(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 3) as c:
        c.start_all()
        leader = c.wait_leader(20)
        follower = next(k for k in c.ids if k != leader)
        on_leader = many(c, leader, items(300, "L"))
        on_follower = many(c, follower, items(300, "F"))
        for res in (on_leader, on_follower):
            assert res["committed"] == 300, res
        height = c.wait_converged(20, min_height=max(
            r["height"] for r in on_leader["receipts"] + on_follower["receipts"]))
        assert c.chain(1, height) == c.chain(2, height) == c.chain(3, height)
        seen = committed_once(c, follower, height)
        hashes = [r["tx_hash"] for r in on_leader["receipts"] + on_follower["receipts"]]
        assert len(set(hashes)) == 600 and all(seen[h] == 1 for h in hashes)
        # Without a leader the items stay pending (not lost, not refused) within wait_s.
        others = [k for k in c.ids if k != follower]
        for k in others:
            c.kill(k)
        c.wait_for("the follower to see no leader",
                   lambda: (c.status(follower) or {}).get("leader_id") is None, 20)
        res = many(c, follower, items(5, "N"), wait_s=1)
        assert [r["status"] for r in res["receipts"]] == ["pending"] * 5


def test_cli_imports_a_file_and_reports_by_line(single: LocalCluster, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from hzp2p.cli import main

    records = [json.dumps(it) for it in items(30, "cli")]
    records[4] = json.dumps({"type": "no.such.type", "payload": report(4, "cli")})
    records.insert(10, "")  # blank lines are skipped; line numbers stay the file's
    f = tmp_path / "day.jsonl"
    f.write_text("\n".join(records) + "\n", encoding="utf-8")
    argv = ["admin", "--socket", single.sockets[1], "submit-many", "--file", str(f),
            "--batch", "7", "--wait", "20"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert out.startswith("29 committed, 1 rejected, 0 pending")
    assert "line 5: rejected" in out and "no.such.type" in out
    assert "1 record(s) rejected" in err
    height = single.status(1)["height"]  # type: ignore[index]
    code = main([*argv, "--json"])
    out, _ = capsys.readouterr()
    res = json.loads(out)
    assert code == 1 and res["committed"] == 29
    assert [r["line"] for r in res["receipts"]] == [n for n in range(1, 32) if n != 11]
    # The second import of the same file is the same transactions: nothing new committed.
    assert single.status(1)["height"] == height  # type: ignore[index]
    assert max(r["height"] or 0 for r in res["receipts"]) <= height
