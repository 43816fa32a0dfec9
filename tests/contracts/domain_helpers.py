"""Test helpers for the domain contracts: members, citizens and a state, run by the real engine.

`World.apply` puts one signed transaction in a block of its own and executes it
with `hzp2p.contracts.engine.execute_block` (envelope, signature, sender,
handler overlay, state digest), proposed by a hidden founding authority. A
refused transaction raises TxRejected with the engine's verdict and its block
is dropped, so the state is exactly as before. Members are seeded straight into
state, as a genesis would found them (the digest is re-sealed after each).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import nacl.signing
import pytest

from hzp2p.client import Client
from hzp2p.contracts import coldchain, healthcode, privacy, supply, vaccination
from hzp2p.contracts.api import Institution, TxRejected
from hzp2p.contracts.digest import DIGEST_KEY, vector_of_items
from hzp2p.contracts.engine import (
    execute_block,
    genesis_state_writes,
    read_head,
    recompute_digest,
    state_digest,
)
from hzp2p.contracts.members import institution_writes
from hzp2p.contracts.state import DictState
from hzp2p.ledger.block import Block
from hzp2p.ledger.genesis import FoundingInstitution, Genesis
from hzp2p.ledger.tx import Transaction

_REGISTERED = (coldchain, healthcode, privacy, supply, vaccination)  # import registers handlers

T0 = 1_800_000_000_000
DAY = 86_400_000
CHAIN = "hzp2p-test"
ROOT_ID = 1_000_000  # the hidden founding authority that proposes World's blocks


def key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.blake2b(name.encode(), digest_size=32).digest())


class World:
    """Members, citizens and a state; applies transactions one per block."""

    def __init__(self, rules: Mapping[str, int] | None = None) -> None:
        self.now = T0
        self.rules = dict(rules or {"healthcode": 1, "privacy": 1})
        self._node_key = key("world/root/node")
        root = FoundingInstitution(
            ROOT_ID,
            "world-root",
            ("authority",),
            bytes(key("world/root").verify_key),
            bytes(self._node_key.verify_key),
            "127.0.0.1:9999",
            True,
        )
        self.genesis = Genesis(CHAIN, 0, (root,), self.rules)
        self.state = DictState(genesis_state_writes(self.genesis))

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
        self.state.apply(institution_writes(inst))
        self.state.apply({DIGEST_KEY: vector_of_items(sorted(self.state.data.items()))})
        return Client(k, CHAIN, inst_id, nonce_start=0)

    def citizen(self, name: str) -> Client:
        return Client(key(name), CHAIN, None, nonce_start=0)

    def apply(self, tx: Transaction) -> None:
        """Execute `tx` in a block of its own; raises TxRejected(reason) if refused."""
        head = read_head(self.state)
        block = Block.create(
            self._node_key,
            height=head.height + 1,
            prev_hash=head.hash,
            state_digest=state_digest(self.state),
            proposer=ROOT_ID,
            timestamp_ms=self.now,
            txs=[tx],
        )
        res = execute_block(self.state, block, self.genesis)
        verdict = res.verdicts[0]
        if not verdict.applied:
            raise TxRejected(verdict.reason)
        self.state.apply(res.writes)
        assert state_digest(self.state) == recompute_digest(self.state)

    def refused(self, tx: Transaction, match: str) -> str:
        """Apply `tx`, expecting a rejection whose reason matches `match`; state unchanged."""
        before = dict(self.state.data)
        with pytest.raises(TxRejected, match=match) as info:
            self.apply(tx)
        assert self.state.data == before
        assert info.value.reason.startswith(tx.tx_type + ":") or "not a member" in info.value.reason
        return info.value.reason
