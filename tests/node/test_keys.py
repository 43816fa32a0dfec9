"""Key files: created 0600, never overwritten by accident, loaded with clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hzp2p.node.keys import (
    KeyFileError,
    generate_key_file,
    generate_signing_key,
    load_signing_key,
    verify_key_hex,
    write_key_file,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generate_write_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        key = generate_key_file(path)
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    assert bytes(load_signing_key(path)) == bytes(key)
    assert len(verify_key_hex(key)) == 64
    text = path.read_text()
    assert text.endswith("\n") and len(text.strip()) == 64


def test_existing_file_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = generate_key_file(path)
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(path, generate_signing_key())
    assert bytes(load_signing_key(path)) == bytes(first)
    second = generate_signing_key()
    write_key_file(path, second, overwrite=True)
    assert mode(path) == 0o600
    assert bytes(load_signing_key(path)) == bytes(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_too_open_permissions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    generate_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match=r"permissions 0644 are too open.*chmod 600"):
        load_signing_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="too open"):
        load_signing_key(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"ab" * 31 + b"\n", "must be 32 bytes"),
        (b"zz" * 32, "not a hex-encoded"),
        (b"\xff" * 32, "not a hex-encoded"),
        (b"", "must be 32 bytes"),
    ],
)
def test_malformed_key_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(KeyFileError, match=match) as info:
        load_signing_key(path)
    assert str(path) in str(info.value)


def test_missing_and_non_regular(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="key file not found"):
        load_signing_key(tmp_path / "missing.key")
    d = tmp_path / "dir.key"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match=r"not a regular file|cannot open"):
        load_signing_key(d)
