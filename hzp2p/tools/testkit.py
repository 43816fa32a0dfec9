"""A small in-memory chain for tests, benchmarks and the simulator: sign, build, apply.

`LocalChain` holds a local genesis, its node secrets and a DictState; it signs
transactions as any founding institution (or any key), builds blocks as a
proposer and applies them with the real engine, keeping the raw blocks so the
verifier can re-check them. Deterministic for a given seed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import nacl.signing

from hzp2p.contracts.engine import (
    BlockResult,
    execute_block,
    genesis_state_writes,
    read_head,
    state_digest,
)
from hzp2p.contracts.state import DictState
from hzp2p.ledger.block import Block
from hzp2p.ledger.genesis import Genesis, NodeSecrets, make_local_genesis
from hzp2p.ledger.tx import Transaction

DAY_MS = 24 * 3600 * 1000


class LocalChain:
    def __init__(
        self,
        n_voters: int = 3,
        n_learners: int = 6,
        seed: int = 1,
        *,
        genesis: tuple[Genesis, dict[int, NodeSecrets]] | None = None,
    ) -> None:
        self.genesis, self.secrets = genesis or make_local_genesis(n_voters, n_learners, seed=seed)
        self.state = DictState(genesis_state_writes(self.genesis))
        self.blocks: list[bytes] = []
        self.results: list[BlockResult] = []
        self.now_ms = self.genesis.timestamp_ms + 1000
        self._nonce = 0

    def fork(self) -> LocalChain:
        """An independent copy (state, kept blocks, clock) to try blocks on."""
        other = copy.copy(self)
        other.state = DictState(dict(self.state.data))
        other.blocks = list(self.blocks)
        other.results = list(self.results)
        return other

    def key(self, inst_id: int) -> nacl.signing.SigningKey:
        return self.secrets[inst_id].signing_key()

    def tx(
        self,
        signer: int | nacl.signing.SigningKey,
        tx_type: str,
        payload: Mapping[str, Any],
        *,
        nonce: int | None = None,
        valid_from_ms: int = 0,
        valid_until_ms: int | None = None,
        chain_id: str | None = None,
    ) -> Transaction:
        key = self.key(signer) if isinstance(signer, int) else signer
        if nonce is None:
            self._nonce += 1
            nonce = self._nonce
        return Transaction.create(
            key,
            chain_id or self.genesis.chain_id,
            tx_type,
            payload,
            nonce=nonce,
            valid_from_ms=valid_from_ms,
            valid_until_ms=valid_until_ms if valid_until_ms is not None else valid_from_ms + DAY_MS,
        )

    def make_block(
        self, txs: list[Transaction], *, proposer: int = 1, timestamp_ms: int | None = None
    ) -> Block:
        head = read_head(self.state)
        ts = self.now_ms if timestamp_ms is None else timestamp_ms
        return Block.create(
            self.secrets[proposer].node_key(),
            height=head.height + 1,
            prev_hash=head.hash,
            state_digest=state_digest(self.state),
            proposer=proposer,
            timestamp_ms=ts,
            txs=txs,
        )

    def apply(self, block: Block) -> BlockResult:
        result = execute_block(self.state, block, self.genesis)
        self.state.apply(result.writes)
        self.blocks.append(block.encode())
        self.results.append(result)
        self.now_ms = max(self.now_ms, block.header.timestamp_ms) + 1000
        return result

    def run(self, txs: list[Transaction], **kw: Any) -> BlockResult:
        """Build, execute and keep one block of `txs`."""
        return self.apply(self.make_block(txs, **kw))

    def run_one(
        self, signer: int | nacl.signing.SigningKey, tx_type: str, payload: Mapping[str, Any]
    ) -> tuple[bool, str]:
        """Submit one transaction in its own block; (applied, reason)."""
        v = self.run([self.tx(signer, tx_type, payload)]).verdicts[0]
        return v.applied, v.reason
