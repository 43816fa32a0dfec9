"""Block building on the leader: when to cut a block, and cutting it (pure; time is passed in).

A block is cut when the mempool holds `max_txs` transactions or `max_bytes`
bytes, or when the oldest waiting moment is `max_wait_ms` old (the caller says
when the first transaction arrived since the last cut). Transactions whose
validity window does not cover the block timestamp are left out: expired ones
dropped, not-yet-valid ones put back. A cut block always fits the limits every
node enforces when decoding (MAX_BLOCK_BYTES, MAX_BLOCK_TXS): the byte budget
leaves room for the header, the signature and each transaction's framing.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.signing

from hzp2p.ledger.block import MAX_BLOCK_BYTES, MAX_BLOCK_TXS, Block
from hzp2p.ledger.mempool import Mempool
from hzp2p.ledger.tx import MAX_TX_BYTES, Transaction

BLOCK_OVERHEAD = 256  # wire array, header bytes, signature
TX_FRAMING = 5  # a transaction's msgpack bin header inside the block's list (bin32 at most)
MIN_BLOCK_BYTES = BLOCK_OVERHEAD + TX_FRAMING + MAX_TX_BYTES
"""The smallest `max_bytes` under which a maximum-size transaction still fits a block alone;
below it such a transaction would wait at the head of its sender's queue forever."""


@dataclass(frozen=True, slots=True)
class BlockBuilder:
    max_txs: int = 500
    max_bytes: int = 1024 * 1024
    max_wait_ms: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.max_txs <= MAX_BLOCK_TXS:
            raise ValueError(f"max_txs must be 1..{MAX_BLOCK_TXS}")
        if not 1 <= self.max_bytes <= MAX_BLOCK_BYTES:
            raise ValueError(f"max_bytes must be 1..{MAX_BLOCK_BYTES}")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")

    def should_cut(self, mempool: Mempool, now_ms: int, waiting_since_ms: int | None) -> bool:
        if len(mempool) == 0:
            return False
        if len(mempool) >= self.max_txs or mempool.total_bytes >= self.max_bytes:
            return True
        return waiting_since_ms is not None and now_ms - waiting_since_ms >= self.max_wait_ms

    def build(
        self,
        mempool: Mempool,
        node_key: nacl.signing.SigningKey,
        proposer: int,
        *,
        height: int,
        prev_hash: bytes,
        prev_timestamp_ms: int,
        state_digest: bytes,
        now_ms: int,
        certs: list[bytes] | tuple[bytes, ...] = (),
    ) -> Block | None:
        """Cut a block on top of (height - 1, prev_hash); None if nothing is includable.
        `certs` (encoded quorum certificates) ride along and take their share of the bytes."""
        ts = max(now_ms, prev_timestamp_ms)
        certs_bytes = sum(len(c) + TX_FRAMING for c in certs) + (40 if certs else 0)
        batch = mempool.pop_batch(
            self.max_txs, max(1, self.max_bytes - BLOCK_OVERHEAD - certs_bytes),
            per_tx_bytes=TX_FRAMING,
        )
        txs: list[Transaction] = []
        later: list[Transaction] = []
        for tx in batch:
            if tx.valid_until_ms < ts:
                continue  # expired: dropped
            if tx.valid_from_ms > ts:
                later.append(tx)
            else:
                txs.append(tx)
        mempool.requeue(later)
        if not txs:
            return None
        return Block.create(
            node_key,
            height=height,
            prev_hash=prev_hash,
            state_digest=state_digest,
            proposer=proposer,
            timestamp_ms=ts,
            txs=txs,
            certs=certs,
        )
