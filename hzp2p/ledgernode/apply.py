"""Applying a committed block: the decisions, without the storage.

It owns what the Trio applier (hzp2p.node.applier, on the database thread) and the
simulator's node (over an in-memory state) both do with a committed block: run the
engine, or reuse the leader's speculative execution when the committed state is
exactly the one it assumed; the placeholder result of a refused block; and the
chain head the rest of the node reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hzp2p.contracts.engine import BlockResult, execute_block, read_head, state_digest
from hzp2p.contracts.state import Readable
from hzp2p.contracts.storage_bridge import tx_records
from hzp2p.ledger.block import Block
from hzp2p.ledger.genesis import Genesis
from hzp2p.storage import BlockExecutor, ExecResult, StateReader


@dataclass(slots=True)
class ChainHead:
    height: int
    block_hash: bytes
    timestamp_ms: int
    state_digest: bytes


def head_of(reader: Readable) -> ChainHead:
    h = read_head(reader)
    return ChainHead(h.height, h.hash, h.timestamp_ms, state_digest(reader))


def can_reuse(reader: Readable, block: Block) -> bool:
    """The state is exactly the one `block` was built (and speculatively executed) on: the
    same head and the same state digest (which commits to every key and value), so the
    deterministic engine would compute the identical result."""
    head = read_head(reader)
    return (
        head.hash == block.header.prev_hash
        and head.height + 1 == block.height
        and state_digest(reader) == block.header.state_digest
    )


def execute_committed(
    reader: Readable, block: Block, genesis: Genesis, known: BlockResult | None,
    execute: Callable[[Readable, Block, Genesis], BlockResult] = execute_block,
) -> BlockResult:
    """The result of a committed block on `reader`'s state: the leader's speculative
    result when it applies (can_reuse), else a real execution. Raises BlockRejected."""
    if known is not None and can_reuse(reader, block):
        return known
    return execute(reader, block, genesis)


def reusing(
    block: Block, known: BlockResult, fallback: BlockExecutor, out: list[BlockResult]
) -> BlockExecutor:
    """A storage executor that returns `known` when can_reuse holds, else runs `fallback`."""

    def run(reader: StateReader) -> ExecResult:
        if can_reuse(reader, block):
            out.append(known)
            return tx_records(known), known.writes
        return fallback(reader)

    return run


def refused_result(block: Block) -> BlockResult:
    """A placeholder result for a refused block (no verdicts: its txs may be retried)."""
    return BlockResult(block.height, block.hash, (), {}, b"", ())


Executor = Callable[[StateReader], ExecResult]
