"""The node's encryption key store (hzp2p.node.enckeys): files, modes, reload, forgetting."""

from __future__ import annotations

import stat
from pathlib import Path

import nacl.public
import pytest
from nacl.signing import SigningKey

from hzp2p.client import Client
from hzp2p.contracts.state import DictState
from hzp2p.crypto.records import RecordCryptoError, encryption_private_key
from hzp2p.node.enckeys import EncKeyError, EncKeyStore
from hzp2p.node.keys import KeyFileError


def test_keys_are_0600_files_in_a_0700_directory_and_reload(tmp_path: Path) -> None:
    signing = SigningKey.generate()
    d = tmp_path / "enckeys"
    store = EncKeyStore.open(signing, d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and store.ids() == [0]
    k1, k2 = nacl.public.PrivateKey.generate(), nacl.public.PrivateKey.generate()
    store.add(1, k1)
    store.add(2, k2)
    for kid in (1, 2):
        assert stat.S_IMODE((d / f"enc-{kid}.key").stat().st_mode) == 0o600
    again = EncKeyStore.open(signing, d)
    assert again.ids() == [0, 1, 2]
    assert bytes(again.private_keys()[2]) == bytes(k2)
    assert bytes(again.private_keys()[0]) == bytes(encryption_private_key(signing))
    again.forget(1)
    assert not (d / "enc-1.key").exists() and EncKeyStore.open(signing, d).ids() == [0, 2]
    with pytest.raises(EncKeyError, match="key 0"):
        again.forget(0)


def test_an_exposed_or_bad_key_file_is_refused(tmp_path: Path) -> None:
    signing = SigningKey.generate()
    d = tmp_path / "enckeys"
    EncKeyStore.open(signing, d).add(1, nacl.public.PrivateKey.generate())
    (d / "enc-1.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="permissions 0644 are too open"):
        EncKeyStore.open(signing, d)
    (d / "enc-1.key").chmod(0o600)
    (d / "enc-1.key").write_text("secret-zzzz\n")
    with pytest.raises(KeyFileError, match="not a hex-encoded X25519 private key") as info:
        EncKeyStore.open(signing, d)
    assert "secret-zzzz" not in str(info.value)  # an error never quotes a key file


def test_configure_uses_the_chains_current_key_and_says_when_it_is_missing() -> None:
    signing = SigningKey.generate()
    store = EncKeyStore(signing)  # in memory
    client = Client(signing, "c", 1)
    state = DictState({})
    assert store.configure(client, state, 1).enc_key_id == 0
    from hzp2p.contracts.api import encode_value
    from hzp2p.contracts.domain_queries import k_enc_key

    state.apply({k_enc_key(1): encode_value({"key_id": 3, "public_key": bytes(32)})})
    with pytest.raises(RecordCryptoError, match=r"current encryption key \(id 3\) is not in"):
        store.configure(client, state, 1)
    store.add(3, nacl.public.PrivateKey.generate())
    assert store.configure(client, state, 1).enc_key_id == 3


def test_key_0_follows_a_rotated_signing_key_and_keeps_the_old_one_in_memory() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    store = EncKeyStore(old)
    store.configure(Client(new, "c", 1), DictState({}), 1)
    keys = store.private_keys()
    assert store.ids() == [-1, 0]
    assert bytes(keys[0]) == bytes(encryption_private_key(new))
    assert bytes(keys[-1]) == bytes(encryption_private_key(old))
    store.forget(-1)
    assert store.ids() == [0]


def test_the_key_derived_from_a_rotated_signing_key_is_retired_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    # Records sealed to key 0 before a signing-key rotation must still open after it, and
    # after the daemon restarts on its new signing key (issue 19's rotation with issue 15's
    # key store).
    old, new = SigningKey.generate(), SigningKey.generate()
    d = tmp_path / "enckeys"
    store = EncKeyStore.open(old, d)
    store.follow_signing_key(new)
    assert store.ids() == [-1, 0]
    assert stat.S_IMODE((d / "retired-1.key").stat().st_mode) == 0o600
    again = EncKeyStore.open(new, d)
    assert bytes(again.private_keys()[-1]) == bytes(encryption_private_key(old))
    assert bytes(again.private_keys()[0]) == bytes(encryption_private_key(new))
    again.follow_signing_key(new)  # the same key: nothing retired twice
    assert again.ids() == [-1, 0]
    # a restart in the window after the key files moved but before the switch was seen:
    # the daemon retires the `.old` key's derived key itself, once
    fresh = EncKeyStore.open(new, tmp_path / "other")
    fresh.retire(old)
    fresh.retire(old)
    fresh.retire(new)  # the current key is not retired
    assert fresh.ids() == [-1, 0]
    assert bytes(EncKeyStore.open(new, tmp_path / "other").private_keys()[-1]) == bytes(
        encryption_private_key(old))
    fresh.forget(-1)
    assert EncKeyStore.open(new, tmp_path / "other").ids() == [0]
