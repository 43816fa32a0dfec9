"""Test helpers for the domain contracts: a dict-backed state and a tiny in-process "engine".

`World.apply` runs one signed transaction's handler directly, the way the real
engine does after its envelope checks: the sender is resolved from the signer,
a rejected transaction's writes are discarded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping

import nacl.signing
import pytest

from hzp2p.client import Client
from hzp2p.contracts import coldchain, healthcode, privacy, supply, vaccination
from hzp2p.contracts.api import Institution, TxContext, TxRejected
from hzp2p.contracts.members import institution_by_key, institution_writes
from hzp2p.contracts.registry import HANDLERS, citizen_signed
from hzp2p.ledger.tx import Transaction

_REGISTERED = (coldchain, healthcode, privacy, supply, vaccination)  # import registers handlers

T0 = 1_800_000_000_000
DAY = 86_400_000
CHAIN = "hzp2p-test"


def key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.blake2b(name.encode(), digest_size=32).digest())


class DictState:
    """A StateView over a plain dict; scans sort keys (what storage does)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        assert isinstance(key, bytes) and isinstance(value, bytes)
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        items = sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))
        return iter(items if limit is None else items[:limit])


class World:
    """Members, citizens and a state; applies transactions one per block."""

    def __init__(self, rules: Mapping[str, int] | None = None) -> None:
        self.state = DictState()
        self.height = 0
        self.now = T0
        self.rules = dict(rules or {"healthcode": 1, "privacy": 1})

    def member(self, name: str, inst_id: int, *roles: str, active: bool = True) -> Client:
        k = key(name)
        inst = Institution(
            inst_id,
            name,
            frozenset(roles),
            bytes(k.verify_key),
            bytes(key(name + "/node").verify_key),
            f"127.0.0.1:{9000 + inst_id}",
            False,
            active,
        )
        for kk, v in institution_writes(inst).items():
            self.state.put(kk, v)
        return Client(k, CHAIN, inst_id, nonce_start=0)

    def citizen(self, name: str) -> Client:
        return Client(key(name), CHAIN, None, nonce_start=0)

    def apply(self, tx: Transaction) -> None:
        tx.verify()
        self.height += 1
        sender = institution_by_key(self.state, tx.signer)
        if sender is None and not citizen_signed(tx.tx_type):
            raise TxRejected(f"{tx.tx_type}: signer is not a member")
        ctx = TxContext(
            tx.tx_type,
            tx.hash,
            tx.payload,
            tx.signer,
            sender,
            self.height,
            self.now,
            self.rules,
            self.state,
        )
        before = dict(self.state.data)
        try:
            HANDLERS[tx.tx_type](ctx)
        except TxRejected:
            self.state.data = before
            raise

    def refused(self, tx: Transaction, match: str) -> str:
        """Apply `tx`, expecting a rejection whose reason matches `match`; state unchanged."""
        before = dict(self.state.data)
        with pytest.raises(TxRejected, match=match) as info:
            self.apply(tx)
        assert self.state.data == before
        assert info.value.reason.startswith(tx.tx_type + ":") or "not a member" in info.value.reason
        return info.value.reason
