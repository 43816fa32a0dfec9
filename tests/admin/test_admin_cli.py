"""`hzp2p admin ...` against a fake daemon: exit statuses, JSON shapes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from admin_helpers import BLOCK, TX_HASH, ThreadedServer

from hzp2p.cli import main

KEY_HEX = "11" * 32


def write_config(directory: Path, socket_path: Path) -> Path:
    cfg = directory / "config.toml"
    cfg.write_text(
        f"""
node_id = 1
genesis = "genesis.toml"
data_dir = "data"
listen = "127.0.0.1:7001"
signing_key = "signing.key"
node_key = "node.key"

[admin]
socket = "{socket_path}"
"""
    )
    return cfg


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cfg(threaded_server: ThreadedServer) -> str:
    return str(write_config(threaded_server.socket_path.parent, threaded_server.socket_path))


def test_status_json_keys(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "status")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert set(data) >= {"node_id", "role", "term", "leader_id", "commit_index", "applied_index", "height", "peers"}
    # --json and --config are also accepted after the subcommand.
    code, out2, _ = run(capsys, "admin", "status", "--config", cfg, "--json")
    assert code == 0 and json.loads(out2) == data
    code, human, _ = run(capsys, "admin", "--config", cfg, "status")
    assert code == 0 and "role: leader" in human and "peers: 2, 3" in human


def test_block_tx_and_reads(cfg: str, threaded_server: ThreadedServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "admin", "--config", cfg, "--json", "block", "3", "--linearizable")
    assert code == 0 and json.loads(out) == BLOCK
    assert ("block", {"height": 3, "linearizable": True}) in threaded_server.daemon.calls
    code, out, err = run(capsys, "admin", "--config", cfg, "block", "4")
    assert code == 1 and "not_found: no such block: height 4" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "admin", "--config", cfg, "--json", "tx", TX_HASH)
    assert code == 0
    assert set(json.loads(out)) == {"tx_hash", "status", "height", "index", "type", "reason"}
    code, out, _ = run(capsys, "admin", "--config", cfg, "block", "3")
    assert code == 0 and "txs: 1" in out and TX_HASH in out
    for argv in (["peers"], ["members"], ["metrics"], ["subject-records", "a1" * 16], ["lot-history", "L1"]):
        code, out, err = run(capsys, "admin", "--config", cfg, *argv)
        assert code == 0, (argv, err)
        assert out.strip()
    code, out, _ = run(capsys, "admin", "--config", cfg, "metrics")
    assert out.startswith("# HELP hzp2p_raft_term")


def test_submit_receipts_and_exit_codes(cfg: str, threaded_server: ThreadedServer, capsys: pytest.CaptureFixture[str]) -> None:
    payload = json.dumps({"report_id": "r1", "region": "east", "metric": "cases", "value": 3, "period": "2026-W47"})
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "submit", "epi.report", "--payload", payload, "--wait", "2")
    assert (code, err) == (0, "")
    receipt = json.loads(out)
    assert set(receipt) == {"tx_hash", "status", "height", "index", "reason"}
    assert receipt["status"] == "committed"
    assert threaded_server.daemon.calls[-1] == (
        "submit", {"type": "epi.report", "payload": json.loads(payload), "wait_s": 2.0}
    )
    code, _, _ = run(capsys, "admin", "--config", cfg, "submit", "epi.report", "--payload", "{}", "--idempotency-key", "k1")
    assert code == 0 and threaded_server.daemon.calls[-1][1]["idempotency_key"] == "k1"
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "submit", "bad.type", "--payload", "{}")
    assert code == 1 and json.loads(out)["status"] == "rejected" and "unknown transaction type" in err
    code, _, err = run(capsys, "admin", "--config", cfg, "submit", "slow.type", "--payload", "{}")
    assert code == 1 and "not committed within --wait 10 s" in err
    code, _, err = run(capsys, "admin", "--config", cfg, "submit", "slow.type", "--payload", "{}", "--wait", "0")
    assert (code, err) == (0, "")
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "submit", "follower.type", "--payload", "{}")
    assert code == 1 and "leader is node 2" in err
    assert json.loads(out)["error"]["code"] == "not_leader"


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "epi.report", "--payload", "{not json"],
        ["submit", "epi.report", "--payload", "[1, 2]"],
        ["submit", "epi.report"],
        ["submit", "epi.report", "--payload", "{}", "--wait", "-1"],
        ["block", "minus-one"],
        ["block", "-1"],
        ["tx", "not-hex"],
        ["promote", "0"],
        ["--timeout", "0", "status"],
        ["add-learner", "--name", "X"],
        ["add-learner", "--name", "X", "--roles", "wizard", "--signing-key", KEY_HEX, "--node-key", KEY_HEX, "--address", "h:1"],
        ["add-learner", "--name", "X", "--roles", "lab", "--signing-key", "abc", "--node-key", KEY_HEX, "--address", "h:1"],
        ["add-learner", "--name", "X", "--roles", "lab", "--signing-key", KEY_HEX, "--node-key", KEY_HEX, "--address", "nohost"],
        [],
        ["frobnicate"],
        ["submit-raw", "xyz"],
        ["submit-raw", "abc"],
        ["submit-raw", "00" * (64 * 1024 + 1)],
        ["submit-raw", "abcd", "--wait", "-1"],
        ["submit-raw"],
        ["state-scan", "zz"],
        ["state-scan", "abc"],
        ["state-scan", "01", "--limit", "0"],
        ["state-scan", "01", "--limit", "x"],
        ["state-scan"],
        ["submit", "sensor.register", "--payload", '{"verify_key": {"$hex": "abc"}}'],
        ["submit", "sensor.register", "--payload", '{"verify_key": {"$b64": "!!"}}'],
        ["submit", "sensor.register", "--payload", '{"verify_key": {"$b64": 5}}'],
        ["submit", "sensor.register", "--payload", '{"verify_key": {"$base64": "AA=="}}'],
        ["submit", "sensor.register", "--payload", '{"$hex": "00"}'],
    ],
)
def test_wrong_usage_exits_2(cfg: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "admin", "--config", cfg, *argv)
    assert code == 2, err
    assert "error" in err


def test_membership_and_verify(cfg: str, threaded_server: ThreadedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    learner = tmp_path / "learner.toml"
    learner.write_text(
        f'name = "Cold Chain Co"\nroles = ["carrier"]\nsigning_key = "{KEY_HEX}"\n'
        f'node_key = "{"22" * 32}"\naddress = "10.0.0.9:7009"\n'
    )
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "add-learner", "--file", str(learner), "--name", "Cold Chain Ltd")
    assert (code, err) == (0, "")
    assert json.loads(out)["node_id"] == 7
    method, params = threaded_server.daemon.calls[-1]
    assert method == "add_learner"
    assert params == {
        "name": "Cold Chain Ltd", "roles": ["carrier"], "signing_key": KEY_HEX, "node_key": "22" * 32,
        "address": "10.0.0.9:7009", "wait_s": 10.0,
    }
    assert run(capsys, "admin", "--config", cfg, "promote", "7")[0] == 0
    code, _, err = run(capsys, "admin", "--config", cfg, "remove", "1")
    assert code == 1 and "rejected: removing node 1 would leave no quorum" in err
    code, out, _ = run(capsys, "admin", "--config", cfg, "--json", "transfer-leader", "2")
    assert code == 0 and json.loads(out) == {"target": 2}
    code, out, _ = run(capsys, "admin", "--config", cfg, "verify")
    assert code == 0 and "chain OK" in out
    code, out, err = run(capsys, "admin", "--config", cfg, "verify", "--integrity")
    assert code == 1 and "FAULT at height 2" in out and "merkle root mismatch" in err


def test_internal_error_is_one_line(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "admin", "--config", cfg, "access-log", "a1" * 16)
    assert code == 1 and "internal" in err and "boom" in err and err.count("\n") == 1


def test_daemon_not_running(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = short_tmp / "admin.sock"
    cfg = write_config(short_tmp, sock)
    code, out, err = run(capsys, "admin", "--config", str(cfg), "status")
    assert code == 1 and out == ""
    assert f"cannot reach the daemon at {sock}: is `hzp2p run` running?" in err
    assert err.count("\n") == 1


def test_bad_config_exits_2(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = short_tmp / "config.toml"
    cfg.write_text("node_id = 0\n")
    code, _, err = run(capsys, "admin", "--config", str(cfg), "status")
    assert code == 2 and f"{cfg}: node_id: must be >= 1" in err
    code, _, err = run(capsys, "admin", "--config", str(short_tmp / "missing.toml"), "status")
    assert code == 2 and "config file not found" in err
    code, _, err = run(capsys, "admin", "status")
    assert code == 2 and "--config" in err


def test_socket_option_bypasses_config(threaded_server: ThreadedServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "admin", "--socket", str(threaded_server.socket_path), "--json", "peers")
    data: Any = json.loads(out)
    assert code == 0 and [p["node_id"] for p in data["peers"]] == [2, 3]


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "admin", "--help")
    assert code == 0
    for name in ("status", "peers", "members", "block", "tx", "verify", "metrics", "submit",
                 "transfer-leader", "add-learner", "promote", "remove", "subject-records",
                 "lot-history", "access-log", "submit-raw", "state-scan"):
        assert name in out


def test_submit_raw(
    cfg: str,
    threaded_server: ThreadedServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "submit-raw", "ABCD01", "--wait", "3")
    assert (code, err) == (0, "")
    assert set(json.loads(out)) == {"tx_hash", "status", "height", "index", "reason"}
    assert threaded_server.daemon.calls[-1] == ("submit_raw", {"tx": "abcd01", "wait_s": 3.0})
    code, out, _ = run(capsys, "admin", "--config", cfg, "submit-raw", "abcd01")
    assert code == 0 and out.startswith(f"committed {TX_HASH} at height 4")
    assert threaded_server.daemon.calls[-1] == ("submit_raw", {"tx": "abcd01", "wait_s": 10.0})
    # "-" reads the hex from stdin (a maximum-size transaction is too long for one argv entry).
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("ab cd\n02\n"))
    code, _, err = run(capsys, "admin", "--config", cfg, "submit-raw", "-")
    assert (code, err) == (0, "")
    assert threaded_server.daemon.calls[-1] == ("submit_raw", {"tx": "abcd02", "wait_s": 10.0})
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "submit-raw", "beef")
    assert code == 1 and json.loads(out)["status"] == "rejected" and "duplicate report_id" in err
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "submit-raw", "dead")
    assert code == 1 and json.loads(out)["error"]["code"] == "bad_request"
    assert "signature does not verify" in err and err.count("\n") == 1


def test_state_scan(cfg: str, threaded_server: ThreadedServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "admin", "--config", cfg, "--json", "state-scan", "01")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"items": [["0101", "aa"], ["0102", "bb"]]}
    assert threaded_server.daemon.calls[-1] == ("state_scan", {"prefix": "01"})
    code, out, _ = run(capsys, "admin", "--config", cfg, "state-scan", "-", "--limit", "2")
    assert code == 0 and out.splitlines() == ["0101  aa", "0102  bb"]
    assert threaded_server.daemon.calls[-1] == ("state_scan", {"prefix": "-", "limit": 2})
    code, out, _ = run(capsys, "admin", "--config", cfg, "state-scan", "FF")
    assert code == 0 and "no state" in out
    assert threaded_server.daemon.calls[-1] == ("state_scan", {"prefix": "ff"})


def test_submit_payload_bytes_convention(
    cfg: str, threaded_server: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """{"$hex": ...} and {"$b64": ...} reach the daemon as bytes (msgpack bin), at any depth."""
    import base64

    vk = bytes(range(32))
    payload = {
        "sensor_id": "S9",
        "verify_key": {"$hex": vk.hex()},
        "nested": [{"sig": {"$b64": base64.b64encode(b"\x00\xff").decode()}}, {"$hex": ""}],
        "text": "$hex",
        "two_keys": {"$hex": "00", "other": 1},
    }
    code, out, err = run(
        capsys, "admin", "--config", cfg, "--json", "submit", "sensor.register",
        "--payload", json.dumps(payload), "--wait", "1",
    )
    assert (code, err) == (0, ""), err
    assert json.loads(out)["status"] == "committed"
    method, params = threaded_server.daemon.calls[-1]
    assert method == "submit"
    assert params["payload"] == {
        "sensor_id": "S9",
        "verify_key": vk,
        "nested": [{"sig": b"\x00\xff"}, b""],
        "text": "$hex",
        "two_keys": {"$hex": "00", "other": 1},  # not a tag: only one-key objects are
    }
    code, _, err = run(
        capsys, "admin", "--config", cfg, "submit", "sensor.register",
        "--payload", '{"verify_key": {"$hex": "zz"}}',
    )
    assert code == 2 and "bad bytes tag at payload.verify_key.$hex: not valid hex" in err


def test_submit_help_documents_the_bytes_convention(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "admin", "submit", "--help")
    assert code == 0 and '{"$hex": "..."}' in out and '{"$b64": "..."}' in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["access-log", "not-a-pseudonym"], "a subject pseudonym is 32 hex digits"),
        (["subject-records", "A" * 31], "a subject pseudonym is 32 hex digits"),
        (["lot-history", "lot id with spaces"], "a lot id is 1..64"),
        (["block", "18446744073709551615"], "expected an integer in 0.."),
        (["block", "-1"], "expected an integer in 0.."),
        (["tx", "abcd"], "a transaction hash is 64 hex digits"),
        (["tx", "zz" * 32], "a transaction hash is 64 hex digits"),
        (["submit", "epi.report", "--payload", "[" * 100_000 + "]" * 100_000], "nested deeper"),
        (["submit", "epi.report", "--payload", '{"a":' * 40 + "1" + "}" * 40], "nested deeper"),
    ],
)
def test_malformed_arguments_exit_2_with_one_line_and_send_nothing(
    cfg: str, capsys: pytest.CaptureFixture[str], threaded_server: ThreadedServer,
    argv: list[str], says: str,
) -> None:
    before = len(threaded_server.daemon.calls)
    code, out, err = run(capsys, "admin", "--config", cfg, *argv)
    assert code == 2, err
    assert says in err and "Traceback" not in err + out
    assert len(threaded_server.daemon.calls) == before  # nothing reached the daemon


def test_a_refusal_lists_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    from hzp2p.admin.cli_submit import render_receipt

    text = render_receipt({"tx_hash": "ab", "status": "rejected", "height": None, "index": None,
                           "reason": "epi.report: value must be an integer; period missing",
                           "problems": {"value": "must be an integer", "payload": "missing field(s): period"}})
    assert text.splitlines() == [
        "rejected ab: epi.report: value must be an integer; period missing",
        "  value: must be an integer",
        "  payload: missing field(s): period",
    ]


def test_an_oversized_submit_many_line_is_a_usage_error(
    cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], threaded_server: ThreadedServer
) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"type": "epi.report", "payload": {"period": "x" * 3_000_000}})
                   + "\n")
    before = len(threaded_server.daemon.calls)
    code, out, err = run(capsys, "admin", "--config", cfg, "submit-many", "--file", str(big))
    assert code == 2 and "line 1: longer than" in err and "Traceback" not in out + err
    assert len(threaded_server.daemon.calls) == before


def test_the_command_never_prints_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hzp2p.cli

    def broken(_args: object) -> int:
        raise OSError(5, "Input/output error")

    parser = hzp2p.cli.build_parser()
    monkeypatch.setattr(hzp2p.cli, "build_parser", lambda: parser)
    args = parser.parse_args(["admin", "status"])
    monkeypatch.setattr(parser, "parse_args", lambda _argv: args)
    args.func = broken
    code, _out, err = run(capsys, "admin", "status")
    assert code == 1 and err.count("\n") == 1 and "internal error (OSError)" in err
