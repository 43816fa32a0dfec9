"""Issue 22, client side: a node that knows no leader answers `no_quorum` with the signed
transaction, and `hzp2p admin submit --fallback` hands that same transaction to the
fallback nodes (submit_raw) within --wait; without fallbacks the error is shown at once."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from admin_helpers import TX_HASH, ThreadedServer

from hzp2p.admin.operations import METHOD_PARAMS
from hzp2p.admin.protocol import AdminError, parse_response
from hzp2p.cli import main

SIGNED = "ab" * 40
MESSAGE = "no quorum reachable from node 3 (no leader known for 1.0 s); last leader 5 at term 7"


async def no_quorum(params: Mapping[str, Any]) -> Any:
    raise AdminError("no_quorum", MESSAGE, hint="retry through another node", retry_tx=SIGNED)


def minority(srv: ThreadedServer) -> ThreadedServer:
    for method in ("submit", "submit_raw"):
        srv.server._handlers[method] = (no_quorum, METHOD_PARAMS[method])
    return srv


@pytest.fixture
def servers() -> Iterator[tuple[ThreadedServer, ThreadedServer, ThreadedServer]]:
    with tempfile.TemporaryDirectory(prefix="hzff") as d:
        root = Path(d)
        with minority(ThreadedServer(root / "a.sock")) as a, minority(
            ThreadedServer(root / "b.sock")
        ) as b, ThreadedServer(root / "c.sock") as c:
            yield a, b, c


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_no_quorum_error_carries_the_signed_transaction() -> None:
    err = AdminError("no_quorum", MESSAGE, retry_tx=SIGNED)
    parsed = parse_response({"id": 1, "ok": False, "error": err.to_wire()}).error
    assert parsed is not None and parsed.code == "no_quorum" and parsed.retry_tx == SIGNED


def test_without_fallbacks_the_condition_is_reported_at_once(
    servers: tuple[ThreadedServer, ThreadedServer, ThreadedServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, _, _ = servers
    code, out, err = run(capsys, "admin", "--socket", str(a.socket_path), "--json", "submit",
                         "epi.report", "--payload", "{}", "--wait", "5")
    assert code == 1
    assert MESSAGE in err and "no_quorum" in err
    assert json.loads(out)["error"]["retry_tx"] == SIGNED


def test_fallbacks_get_the_same_signed_transaction(
    servers: tuple[ThreadedServer, ThreadedServer, ThreadedServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, c = servers
    code, out, err = run(capsys, "admin", "--socket", str(a.socket_path), "--json", "submit",
                         "epi.report", "--payload", "{}", "--wait", "5",
                         "--fallback", str(b.socket_path), "--fallback", str(c.socket_path))
    assert (code, err) == (0, "")
    assert json.loads(out) == {"tx_hash": TX_HASH, "status": "committed", "height": 4,
                               "index": 0, "reason": None}
    method, params = c.daemon.calls[-1]
    assert method == "submit_raw" and params["tx"] == SIGNED and 0 < params["wait_s"] <= 5


def test_all_minority_gives_up_when_the_wait_runs_out(
    servers: tuple[ThreadedServer, ThreadedServer, ThreadedServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, _ = servers
    code, _, err = run(capsys, "admin", "--socket", str(a.socket_path), "submit-raw", SIGNED,
                       "--wait", "0.5", "--fallback", str(b.socket_path))
    assert code == 1 and MESSAGE in err


async def stuck_batch(params: Mapping[str, Any]) -> Any:
    """A minority node's submit_many: what it signed, still pending, handed back at once."""
    receipts = [{"tx_hash": f"{i:064x}", "status": "pending", "height": None, "index": None,
                 "reason": MESSAGE, "no_quorum": True, "retry_tx": SIGNED}
                for i, _ in enumerate(params["items"])]
    return {"receipts": receipts, "committed": 0, "rejected": 0, "pending": len(receipts)}


def test_submit_many_hands_what_a_minority_node_signed_to_the_fallbacks(
    servers: tuple[ThreadedServer, ThreadedServer, ThreadedServer],
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    a, _, c = servers
    a.server._handlers["submit_many"] = (stuck_batch, METHOD_PARAMS["submit_many"])
    f = tmp_path / "two.jsonl"
    f.write_text('{"type": "epi.report", "payload": {}}\n' * 2)
    # without a fallback: the node's words, at once, per record
    code, out, err = run(capsys, "admin", "--socket", str(a.socket_path), "--json",
                         "submit-many", "--file", str(f), "--wait", "5")
    assert code == 1
    got = json.loads(out)
    assert got["pending"] == 2 and all(r["reason"] == MESSAGE for r in got["receipts"])
    # with one: the same signed transactions are committed through it
    code, out, err = run(capsys, "admin", "--socket", str(a.socket_path), "--json",
                         "submit-many", "--file", str(f), "--wait", "5",
                         "--fallback", str(c.socket_path))
    assert (code, err) == (0, ""), err
    got = json.loads(out)
    assert got["committed"] == 2 and [r["line"] for r in got["receipts"]] == [1, 2]
    raw = [p for m, p in c.daemon.calls if m == "submit_raw"]
    assert [p["tx"] for p in raw] == [SIGNED, SIGNED] and all(p["wait_s"] <= 5 for p in raw)
