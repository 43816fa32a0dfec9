"""The daemon's key ring across a rotation (hzp2p.node.rotation): prepared `.next` keys, the
switch and the file moves, an interrupted move finished at start-up, keys it lacks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.signing
import pytest

from hzp2p.contracts.members import MembershipChange
from hzp2p.node.keys import KeyFileError, load_signing_key, write_key_file
from hzp2p.node.rotation import KeyRing, next_path, old_path, prepare


def pub(k: nacl.signing.SigningKey) -> bytes:
    return bytes(k.verify_key)


def ring_in(d: Path) -> KeyRing:
    if not (d / "signing.key").exists():
        write_key_file(d / "signing.key", nacl.signing.SigningKey.generate())
        write_key_file(d / "node.key", nacl.signing.SigningKey.generate())
    return KeyRing.load(d / "signing.key", d / "node.key")


def rotate(inst_id: int, s: bytes, n: bytes) -> MembershipChange:
    return MembershipChange(0, "rotate", inst_id, "h:1", n, 5, 1, s, b"", b"", 0)


def test_prepare_then_switch_moves_the_files(tmp_path: Path) -> None:
    ring = ring_in(tmp_path)
    old_s, old_n = ring.signing, ring.node
    s, n = prepare(ring)
    assert prepare(ring) == (s, n)  # idempotent: the .next files are kept
    mode = stat.S_IMODE(os.stat(next_path(tmp_path / "signing.key")).st_mode)
    assert mode == 0o600
    assert not ring.on_changes(7, [rotate(8, s, n)])  # another institution's rotation
    assert ring.on_changes(7, [rotate(7, s, n)])
    assert (pub(ring.signing), pub(ring.node)) == (s, n)
    assert pub(load_signing_key(tmp_path / "signing.key")) == s
    assert pub(load_signing_key(tmp_path / "node.key")) == n
    assert pub(load_signing_key(old_path(tmp_path / "signing.key"))) == pub(old_s)
    assert pub(load_signing_key(old_path(tmp_path / "node.key"))) == pub(old_n)
    assert not next_path(tmp_path / "signing.key").exists()
    assert not ring.on_changes(7, [rotate(7, s, n)])  # already switched
    # a restart loads the new keys and still holds the old ones (re-attesting old heights)
    again = ring_in(tmp_path)
    assert pub(again.signing) == s and again.get(pub(old_s)) is not None


def test_an_interrupted_move_is_finished_at_start_up(tmp_path: Path) -> None:
    ring = ring_in(tmp_path)
    s, n = prepare(ring)
    # the rotation committed while the daemon was down: the files are as prepared
    restarted = ring_in(tmp_path)
    assert restarted.sync_with_state(s, n)
    assert pub(load_signing_key(tmp_path / "signing.key")) == s
    assert not restarted.sync_with_state(s, n)


def test_keys_it_does_not_hold(tmp_path: Path) -> None:
    ring = ring_in(tmp_path)
    other = pub(nacl.signing.SigningKey.generate())
    with pytest.raises(KeyFileError, match="do not hold"):
        ring.sync_with_state(other, pub(ring.node))
    assert not ring.on_changes(3, [rotate(3, other, other)])
    assert pub(load_signing_key(tmp_path / "signing.key")) == pub(ring.signing)
