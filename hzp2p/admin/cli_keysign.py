"""`--key FILE` on `admin submit`, `readings submit`, `vaccinate` and `share`: sign here, with a
key file, as an institution that runs no daemon of its own (or as a citizen).

The transaction is built and signed in this process — the key never reaches the daemon —
and the node only relays it, as any transaction signed elsewhere (`submit_raw`, same
receipt). What signing needs comes from the --config node: the chain id from its genesis,
the signer's institution id (which names its copy of a record key) from its member list,
and for a share the record's sealed key and the grantee's public key from its committed
state (`state_scan`). Records are sealed with the encryption key derived from the signing
key (key id 0); an institution that registered another one writes through its own daemon.
A missing, unreadable or too open key file is a usage error (exit 2), before anything is sent.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nacl.signing

from hzp2p.admin.cli_common import Usage
from hzp2p.admin.client import call_sync
from hzp2p.admin.protocol import AdminError
from hzp2p.client import Client
from hzp2p.config import ConfigError, load_config
from hzp2p.crypto.keyfiles import KeyFileError, load_signing_key
from hzp2p.crypto.records import RecordCryptoError
from hzp2p.ledger.genesis import GenesisError, load_genesis
from hzp2p.ledger.tx import Transaction

SIGN = "_sign"
"""The params key holding the signing closure (never sent: the call hook replaces it)."""

Build = Callable[["Signer"], tuple[Transaction, dict[str, Any]]]
"""(signer) -> (the signed transaction, fields to add to the receipt, e.g. record_id)."""


def add_key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key", type=Path, metavar="FILE",
        help="sign here with this key file (an institution without its own daemon, or a "
             "citizen); the node only relays the signed transaction (needs --config)")


class RemoteState:
    """A read-only StateReader over a node's admin socket (state_scan)."""

    def __init__(self, socket_path: Path, timeout_s: float) -> None:
        self.socket_path, self.timeout_s = socket_path, timeout_s

    def _scan(self, prefix: bytes, limit: int | None) -> list[tuple[bytes, bytes]]:
        params: dict[str, Any] = {"prefix": prefix.hex() if prefix else "-"}
        if limit is not None:
            params["limit"] = limit
        items = call_sync(self.socket_path, "state_scan", params, timeout_s=self.timeout_s)["items"]
        return [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in items]

    def get(self, key: bytes) -> bytes | None:
        rows = self._scan(key, 1)
        return rows[0][1] if rows and rows[0][0] == key else None

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._scan(prefix, limit))


class Signer:
    """The key file's key and the chain it signs for; institution id and state on demand."""

    def __init__(self, key: nacl.signing.SigningKey, chain_id: str, socket_path: Path,
                 timeout_s: float) -> None:
        self.key, self.chain_id = key, chain_id
        self.socket_path, self.timeout_s = socket_path, timeout_s

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def client(self, *, member: bool = False) -> Client:
        """A client for the key; `member`: as the institution that key signs for."""
        return Client(self.key, self.chain_id, self.inst_id() if member else None)

    def inst_id(self) -> int:
        pk = bytes(self.key.verify_key).hex()
        rows = call_sync(self.socket_path, "members", {"linearizable": True},
                         timeout_s=self.timeout_s)["members"]
        for m in rows:
            if m.get("signing_key") == pk:
                return int(m["inst_id"])
        raise AdminError("not_found", f"no member signs with the key {pk[:16]}... (--key)",
                         hint="an authority admits the institution first (add-learner, vote)")

    def state(self) -> RemoteState:
        return RemoteState(self.socket_path, self.timeout_s)


def with_key(args: argparse.Namespace, params: dict[str, Any], build: Build) -> dict[str, Any]:
    """`params` as the node would take them, or — with --key — a closure that signs here."""
    if getattr(args, "key", None) is None:
        return params
    if args.config is None:
        raise Usage("--key needs --config (the chain id comes from the node's genesis)")
    try:
        key = load_signing_key(args.key)
    except KeyFileError as exc:
        raise Usage(f"--key {exc}") from None
    try:
        cfg = load_config(args.config)
        chain_id = load_genesis(cfg.genesis).chain_id
    except (ConfigError, GenesisError, OSError) as exc:
        raise Usage(f"--key: cannot read the node's genesis: {exc}") from None
    return {SIGN: (key, chain_id, build), "wait_s": params.get("wait_s"),
            "_fallbacks": params.get("_fallbacks", [])}


def signed(params: dict[str, Any], socket_path: Path, timeout_s: float
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The submit_raw params for a --key request, and the fields to add to its receipt."""
    key, chain_id, build = params[SIGN]
    tx, extra = build(Signer(key, chain_id, socket_path, timeout_s))
    return {"tx": tx.encode().hex(), "wait_s": params["wait_s"]}, extra


def relay_or_call(method: str) -> Callable[[Path, dict[str, Any], float], Any]:
    """The call hook of a command with --key: sign here and relay, or ask the node."""

    def call(socket_path: Path, params: dict[str, Any], timeout_s: float) -> Any:
        if SIGN not in params:
            return call_sync(socket_path, method, params, timeout_s=timeout_s)
        raw, extra = signed(params, socket_path, timeout_s)
        return {**call_sync(socket_path, "submit_raw", raw, timeout_s=timeout_s), **extra}

    return call


# ---------------------------------------------------------------- what each command signs


def build_tx(tx_type: str, payload: dict[str, Any]) -> Build:
    def build(s: Signer) -> tuple[Transaction, dict[str, Any]]:
        return s.client().tx(tx_type, payload, s.now_ms()), {}

    return build


def build_vaccination(p: dict[str, Any]) -> Build:
    def build(s: Signer) -> tuple[Transaction, dict[str, Any]]:
        now = s.now_ms()
        rid = str(p.get("record_id") or f"vax-{secrets.token_hex(8)}")
        tx = s.client(member=True).vaccination_record(
            now, record_id=rid, subject_verify_key=bytes.fromhex(p["subject_key"]),
            lot_id=p["lot"], dose=p["dose"], administered_ms=p.get("administered_ms", now),
            fields=p["fields"])
        return tx, {"record_id": rid}

    return build


def build_share(p: dict[str, Any]) -> Build:
    def build(s: Signer) -> tuple[Transaction, dict[str, Any]]:
        try:
            tx = s.client(member=True).share(
                s.state(), s.now_ms(), record_id=p["record_id"], grantee=p["to"],
                grant_id=p["grant_id"], purpose=p["purpose"])
        except (RecordCryptoError, ValueError) as exc:
            raise AdminError("rejected", f"share: {exc}") from None
        return tx, {}

    return build
