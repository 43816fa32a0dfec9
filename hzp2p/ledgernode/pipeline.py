"""The leader's block-pipeline policy: when to build, on which head, what is in flight.

It owns the decisions of the block producer (the Trio loop is hzp2p.node.producer;
the simulator's node drives the same object): a leader builds only once every
entry of its log is applied, or on top of its own in-flight blocks of this term
(at most `max_inflight`), each executed ahead so the next header can carry its state
digest; a block is cut at once when the leader is idle, else when the builder says
the batch is due. A refused block, a moved log or a lost leadership drops the
pipeline; an applied block leaves the mempool (a transaction is never proposed
again once applied) and the in-flight set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from hzp2p.contracts.engine import BlockResult
from hzp2p.ledger.block import Block
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.mempool import Mempool
from hzp2p.ledgernode.apply import ChainHead

MAX_INFLIGHT_BLOCKS = 3


class RaftView(Protocol):
    """What the pipeline reads of the Raft node (the driver's narrow view of its core)."""

    def is_leader(self) -> bool: ...

    def last_index(self) -> int: ...

    def current_term(self) -> int: ...


@dataclass(slots=True)
class InFlight:
    index: int
    term: int
    block: Block
    result: BlockResult


@dataclass(slots=True)
class BlockPipeline:
    """A leader's in-flight blocks and transactions; see the module docstring."""

    precomputed: dict[bytes, BlockResult] = field(default_factory=dict)
    """Block hash -> the speculative result of our own block, for the applier to reuse."""
    max_inflight: int = MAX_INFLIGHT_BLOCKS
    inflight: set[bytes] = field(default_factory=set)
    """Hashes of transactions in proposed blocks not yet applied here."""
    blocks: list[InFlight] = field(default_factory=list)

    def idle(self, raft: RaftView, applied_index: int) -> bool:
        """Leader with every entry of its log applied (nothing in flight)."""
        return raft.is_leader() and applied_index >= raft.last_index()

    def may_build(self, raft: RaftView, applied_index: int) -> bool:
        """Idle (the pipeline restarts from the applied head), or the log's tail is exactly
        our blocks of this term and there is room for one more."""
        if self.idle(raft, applied_index):
            self.drop()
            return True
        p = self.blocks
        return (
            bool(p)
            and len(p) < self.max_inflight
            and p[-1].index == raft.last_index()
            and p[-1].term == raft.current_term()
            and p[0].index > applied_index
        )

    def wait_target(self, raft: RaftView) -> int:
        """The log index whose application may let the leader build again."""
        return self.blocks[0].index if self.blocks else raft.last_index()

    def should_cut(
        self, builder: BlockBuilder, mempool: Mempool, idle: bool, now_ms: int,
        waiting_since_ms: int | None, certs_urgent: bool,
    ) -> bool:
        """Adaptive batching: idle -> at once; else when the builder says the batch is due
        (or an urgent certificate waits on an empty mempool)."""
        if idle:
            return True
        if builder.should_cut(mempool, now_ms, waiting_since_ms):
            return True
        return len(mempool) == 0 and certs_urgent

    def head(self, applied: ChainHead) -> ChainHead:
        """What the next block builds on: the last in-flight block, or the applied head."""
        if not self.blocks:
            return applied
        last = self.blocks[-1]
        hdr = last.block.header
        return ChainHead(hdr.height, last.block.hash, hdr.timestamp_ms,
                         last.result.state_digest_after)

    def results_before(self) -> tuple[BlockResult, ...]:
        """The in-flight results a speculative execution layers on the committed state."""
        return tuple(f.result for f in self.blocks)

    def proposed(self, block: Block) -> None:
        self.inflight.update(tx.hash for tx in block.txs)

    def executed_ahead(
        self, index: int, term: int, block: Block, result: BlockResult,
        applied_index: int, current_term: int,
    ) -> bool:
        """Keep the speculative result of our block at `index` if the log still is as it
        was (not applied meanwhile, same term, built on our last in-flight block)."""
        if index <= applied_index or current_term != term:
            return False
        if self.blocks and self.blocks[-1].block.hash != block.header.prev_hash:
            return False
        self.precomputed[block.hash] = result
        self.blocks.append(InFlight(index, term, block, result))
        return True

    def block_applied(self, block: Block, head_hash: bytes, applied_index: int,
                      mempool: Mempool) -> None:
        """`block` was applied (head_hash is the head after it: not the block if refused)."""
        hashes = [tx.hash for tx in block.txs]
        for h in hashes:
            self.inflight.discard(h)
        refused = head_hash != block.hash
        if not refused and hashes:
            mempool.remove(hashes)  # decided for good: never proposed again
        p = self.blocks
        if p and refused and p[0].block.hash == block.hash:
            self.drop()  # our block was refused: the ones built on it will be too
        while p and p[0].index <= applied_index:
            p.pop(0)

    def drop(self) -> None:
        for f in self.blocks:
            self.precomputed.pop(f.block.hash, None)
        self.blocks.clear()

    def leadership_lost(self, mempool: Mempool) -> int:
        """Forget everything a leader holds; returns how many queued txs were dropped."""
        dropped = mempool.clear()
        self.inflight.clear()
        self.drop()
        return dropped
