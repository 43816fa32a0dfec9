"""Argument handling of `admin refused` and `admin rotate-keys`, and the auditors' redaction
(the commands themselves run against real daemons in tests/integration)."""

from __future__ import annotations

import argparse

import pytest

from hzp2p.admin.cli_audit import limit_arg, time_arg
from hzp2p.admin.cli_common import Usage
from hzp2p.admin.cli_rotate import rotate_keys_command
from hzp2p.node.audit_views import parse_cursor, redact


def rotate_params(*argv: str) -> dict[str, object]:
    cmd = rotate_keys_command()
    p = argparse.ArgumentParser()
    cmd.add_args(p)
    p.add_argument("--wait", type=float, default=10.0)
    return cmd.params(p.parse_args(list(argv)))


def test_times_limits_and_cursors() -> None:
    assert time_arg("1700000000000") == 1_700_000_000_000
    assert time_arg("2026-12-08") == time_arg("2026-12-08T00:00:00Z") == 1_796_688_000_000
    assert time_arg("2026-12-08T01:00:00+01:00") == 1_796_688_000_000
    with pytest.raises(argparse.ArgumentTypeError):
        time_arg("yesterday")
    with pytest.raises(argparse.ArgumentTypeError):
        limit_arg("0")
    assert parse_cursor(f"12-{'ab' * 32}") == (12, bytes.fromhex("ab" * 32))
    for bad in ("x", "12-abc", "-1-" + "ab" * 32):
        with pytest.raises(ValueError):
            parse_cursor(bad)


def test_rotate_keys_arguments() -> None:
    k = "ab" * 32
    assert rotate_params("--prepare") == {"wait_s": 10.0, "prepare": True}
    assert rotate_params("--prepare", "--propose")["propose"] is True
    assert rotate_params("3", "--signing-key", k, "--node-key", k.upper()) == {
        "wait_s": 10.0, "inst_id": 3, "signing_key": k, "node_key": k}
    for argv in ((), ("--propose",), ("3",), ("3", "--signing-key", k),
                 ("3", "--signing-key", "xy", "--node-key", k)):
        with pytest.raises(Usage):
            rotate_params(*argv)


def test_redaction_shows_sizes_not_bytes() -> None:
    out = redact({"ciphertext": b"\x01" * 212, "key_commitment": b"\x02" * 32,
                  "sealed_keys": {"subject": b"\x03" * 80}, "n": 3, "l": [b"\x04" * 5]})
    assert out == {"ciphertext": "<212 bytes>", "key_commitment": "02" * 32,
                   "sealed_keys": {"subject": "<80 bytes>"}, "n": 3, "l": ["<5 bytes>"]}
