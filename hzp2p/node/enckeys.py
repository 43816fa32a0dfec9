"""The node's key store of its institution's X25519 encryption keys, and their rotation.

An institution's records are sealed to its encryption key: key id 0 is derived from its
signing key (nothing to store); ids 1, 2, ... are keys it registered with `enckey.set`
(hzp2p.contracts.privacy). Their private halves live here only: one file per key,
`<data_dir>/enckeys/enc-<id>.key` (the 32 bytes as hex, mode 0600 from creation, in a
0700 directory; hzp2p.node.keys writes and checks them). They are never logged (log
lines carry key ids and counts only), never sent to a peer and never in a snapshot (the
directory is not part of the replicated state).

The *current* key is the one the chain has registered for this institution (the key id
in `enckey.set`'s state; 0 if none): records are sealed to it, and the node opens what
it holds with any key it still has, the stamped one first. Key 0 follows the signing
key: when the daemon switches to a rotated signing key (hzp2p.node.rotation), the key
derived from the previous one is retired, not lost (ids -1, -2, ...; a file
`retired-<n>.key` in the same store, so it survives a restart): what was sealed to it
still opens until `enc-key rotate` re-wraps it and forgets it.

`admin enc-key rotate` (`rotate`): a fresh key is written to the store first (a crash
after its `enckey.set` commits does not lose it), then registered on chain; once that
commits, every live record whose copy this node holds and which does not open with the
new key is re-sealed to it (`access.rewrap`, in batches), and only when none is left
are the older keys' files deleted — from then on the sealed keys of records erased
meanwhile, still in the block history, open with nothing. Key 0 cannot be forgotten (it
is the signing key's; rotating that is governance).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing
import structlog
import trio

from hzp2p.client import Client
from hzp2p.contracts import domain_queries as dq
from hzp2p.crypto.records import (
    RecordCryptoError,
    encryption_private_key,
    institution_holder,
    open_sealed_key,
)
from hzp2p.ledger.tx import Transaction
from hzp2p.node.keys import KeyFileError, load_seed_file, write_seed_file
from hzp2p.storage import AsyncStorage, SyncStorage

log = structlog.get_logger("hzp2p.node.enckeys")

STORE_DIR = "enckeys"
DIR_MODE = 0o700
_FILE = re.compile(r"enc-([0-9]{1,10})\.key")
_RETIRED = re.compile(r"retired-([0-9]{1,10})\.key")
REWRAP_BATCH = 64
WAIT_S = 15.0


class EncKeyError(Exception):
    """The key store cannot do what was asked (a key missing, a rotation refused, ...)."""


def key_file_name(key_id: int) -> str:
    """A registered key's file (id > 0), or a retired derived key's (id < 0)."""
    return f"enc-{key_id}.key" if key_id > 0 else f"retired-{-key_id}.key"


class EncKeyStore:
    """See the module docstring. `directory` None: an in-memory store (simulated nodes)."""

    def __init__(self, signing_key: nacl.signing.SigningKey, directory: Path | None = None) -> None:
        self.directory = directory
        self._signing = bytes(signing_key)
        self._derived = encryption_private_key(signing_key)
        self._keys: dict[int, nacl.public.PrivateKey] = {}
        self._retired: dict[int, nacl.public.PrivateKey] = {}  # derived from older signing keys

    def follow_signing_key(self, signing_key: nacl.signing.SigningKey) -> None:
        """Key 0 is now derived from `signing_key` (a rotated signing key); the key derived
        from the previous one is retired (kept, on disk too) under the next negative id."""
        if bytes(signing_key) == self._signing:
            return
        self._retire(self._derived)
        self._signing = bytes(signing_key)
        self._derived = encryption_private_key(signing_key)

    def retire(self, old_signing_key: nacl.signing.SigningKey) -> None:
        """Keep the key derived from an earlier signing key of this institution (the daemon's
        `signing.key.old`: a restart right after a rotation must not lose it)."""
        if bytes(old_signing_key) != self._signing:
            self._retire(encryption_private_key(old_signing_key))

    def _retire(self, key: nacl.public.PrivateKey) -> None:
        if any(bytes(k) == bytes(key) for k in self._retired.values()):
            return
        key_id = min([0, *self._retired]) - 1
        path = self.path(key_id)
        if path is not None:  # written before the switch: a crash cannot lose it
            write_seed_file(path, bytes(key), overwrite=path.exists())
        self._retired[key_id] = key

    @classmethod
    def open(cls, signing_key: nacl.signing.SigningKey, directory: Path) -> EncKeyStore:
        """Load every key file in `directory` (created 0700 if missing); KeyFileError if a
        file is malformed or readable by others."""
        store = cls(signing_key, directory)
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)
        for path in sorted(directory.iterdir()):
            retired = _RETIRED.fullmatch(path.name)
            if retired is not None and int(retired.group(1)) > 0:
                store._retired[-int(retired.group(1))] = nacl.public.PrivateKey(
                    load_seed_file(path, "X25519 private key"))
                continue
            m = _FILE.fullmatch(path.name)
            if m is None:
                continue
            key_id = int(m.group(1))
            if key_id == 0:
                raise KeyFileError(f"{path}: key 0 is derived from the signing key, not stored")
            store._keys[key_id] = nacl.public.PrivateKey(
                load_seed_file(path, "X25519 private key"))
        return store

    def ids(self) -> list[int]:
        """The ids of every key held, 0 (the derived key) and retired derived keys included."""
        return sorted([0, *self._keys, *self._retired])

    def private_keys(self) -> dict[int, nacl.public.PrivateKey]:
        return {**self._retired, 0: self._derived, **self._keys}

    def path(self, key_id: int) -> Path | None:
        if key_id == 0 or self.directory is None:
            return None  # the current derived key has no file
        return self.directory / key_file_name(key_id)

    def add(self, key_id: int, key: nacl.public.PrivateKey) -> None:
        """Keep `key` as `key_id` (written to its 0600 file before this returns)."""
        assert key_id > 0 and key_id not in self._keys, key_id
        path = self.path(key_id)
        if path is not None:
            write_seed_file(path, bytes(key), overwrite=path.exists())
        self._keys[key_id] = key

    def forget(self, key_id: int) -> None:
        """Destroy key `key_id`: its file is deleted, its private half dropped."""
        if key_id == 0:
            raise EncKeyError("key 0 is derived from the signing key and cannot be forgotten")
        self._retired.pop(key_id, None)
        self._keys.pop(key_id, None)
        path = self.path(key_id)
        if path is not None:
            path.unlink(missing_ok=True)

    def configure(self, client: Client, state: dq.StateReader, inst_id: int) -> Client:
        """Give `client` every key held, the chain's current one as current (key 0 derived
        from the client's signing key, the institution's current one)."""
        self.follow_signing_key(client.key)
        reg = dq.enc_key(state, inst_id)
        current = 0 if reg is None else int(reg["key_id"])
        held = self.private_keys()
        if current not in held:
            raise RecordCryptoError(
                f"this institution's current encryption key (id {current}) is not in the "
                "node's key store")
        client.enc_keys = held
        client.enc_key_id = current
        return client


Submit = Callable[[Transaction, float], Awaitable[dict[str, object]]]
SubmitMany = Callable[[Sequence[Transaction | str], float], Awaitable[list[dict[str, object]]]]


class Rotator:
    """`admin enc-key rotate` and `status` (see the module docstring); one at a time."""

    def __init__(self, node_id: int, client: Callable[[], Client], store: EncKeyStore,
                 storage: AsyncStorage, submit: Submit, submit_many: SubmitMany) -> None:
        self.node_id = node_id
        self.client = client  # the institution's signing client now (it follows a rotation)
        self.store = store
        self.storage = storage
        self.submit = submit
        self.submit_many = submit_many
        self._lock = trio.Lock()

    async def status(self) -> dict[str, Any]:
        me = self.node_id

        def look(s: SyncStorage) -> dict[str, Any]:
            reg = dq.enc_key(s, me)
            current = 0 if reg is None else int(reg["key_id"])
            keys = self.store.private_keys()
            stale = len(self._stale(s, keys[current])) if current in keys else None
            return {"current_key_id": current, "held_key_ids": sorted(keys),
                    "public_key": None if reg is None else bytes(reg["public_key"]).hex(),
                    "held_records": len(dq.held_records(s, me)), "stale_records": stale}

        return await self.storage.call(look)

    def _stale(self, s: SyncStorage, current: nacl.public.PrivateKey) -> list[str]:
        """Live records this node holds whose copy does not open with `current`."""
        holder = institution_holder(self.node_id)
        out = []
        for rid in dq.held_records(s, self.node_id):
            rec = dq.record(s, rid)
            assert rec is not None
            try:
                open_sealed_key(rec["holders"][holder]["sealed_key"], current,
                                rec["key_commitment"])
            except RecordCryptoError:
                out.append(rid)
        return out

    async def rotate(self, wait_s: float = WAIT_S) -> dict[str, Any]:
        if self._lock.locked():
            raise EncKeyError("a rotation is already running")
        async with self._lock:
            return await self._rotate(wait_s)

    async def _rotate(self, wait_s: float) -> dict[str, Any]:
        me = self.node_id
        reg = await self.storage.call(lambda s: dq.enc_key(s, me))
        previous = 0 if reg is None else int(reg["key_id"])
        if previous not in self.store.private_keys():
            raise EncKeyError(f"the current key (id {previous}) is not in this node's key "
                              "store: records sealed to it cannot be re-wrapped here")
        new_id, new_key = previous + 1, nacl.public.PrivateKey.generate()
        self.store.add(new_id, new_key)  # on disk before the chain names it
        log.info("enc_key_rotation_started", previous_key_id=previous, key_id=new_id)
        tx = self.client().tx("enckey.set", {"key_id": new_id,
                                           "public_key": bytes(new_key.public_key)},
                            int(time.time() * 1000))
        receipt = dict(await self.submit(tx, wait_s))
        if receipt.get("status") != "committed":
            if receipt.get("status") == "rejected":
                self.store.forget(new_id)  # never registered: nothing is sealed to it
            log.info("enc_key_rotation_not_registered", key_id=new_id,
                     status=receipt.get("status"))
            return {**receipt, "key_id": new_id, "previous_key_id": previous, "rewrapped": 0,
                    "failed": 0, "stale": None, "forgotten": []}
        rewrapped, failed, stale = await self._rewrap_all(new_key, wait_s)
        forgotten: list[int] = []
        if not stale:
            forgotten = [k for k in self.store.ids() if k not in (0, new_id)]
            for k in forgotten:
                self.store.forget(k)
        log.info("enc_key_rotation_done", key_id=new_id, rewrapped=rewrapped, failed=failed,
                 stale=len(stale), forgotten=forgotten)
        return {**receipt, "key_id": new_id, "previous_key_id": previous,
                "public_key": bytes(new_key.public_key).hex(), "rewrapped": rewrapped,
                "failed": failed, "stale": len(stale), "forgotten": forgotten}

    async def _rewrap_all(self, new_key: nacl.public.PrivateKey,
                          wait_s: float) -> tuple[int, int, list[str]]:
        me = self.node_id
        stale = await self.storage.call(lambda s: self._stale(s, new_key))
        rewrapped = failed = 0
        for start in range(0, len(stale), REWRAP_BATCH):
            todo = stale[start:start + REWRAP_BATCH]

            def build(s: SyncStorage, batch: list[str] = todo) -> list[Transaction | str]:
                client = self.store.configure(self.client(), s, me)
                now = int(time.time() * 1000)
                out: list[Transaction | str] = []
                for rid in batch:
                    try:
                        out.append(client.rewrap(s, now, record_id=rid))
                    except RecordCryptoError as exc:
                        out.append(f"rewrap {rid}: {exc}")
                return out

            receipts = await self.submit_many(await self.storage.call(build), wait_s)
            ok = sum(1 for r in receipts if r.get("status") == "committed")
            rewrapped, failed = rewrapped + ok, failed + len(receipts) - ok
            log.info("enc_key_rewrap_progress", rewrapped=rewrapped, failed=failed,
                     of=len(stale))
        # what is still not sealed to the new key (a failed re-wrap; a record sealed to the
        # old key while the rotation ran): the old keys must stay for these
        left = await self.storage.call(lambda s: self._stale(s, new_key))
        return rewrapped, failed, left
