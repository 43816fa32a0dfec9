"""Glue between the engine and storage's block interface (hzp2p.storage.interfaces).

The daemon applies a committed block entry with
``storage.apply_block_with(block_record(block, raft_index), executor(block, genesis, out),
raft_index)``: storage runs the executor against its state inside the same
transaction that stores the block, its verdicts (TxRecord rows) and the writes.
The full BlockResult (membership changes, digest) is left in ``out``. If the
block is stale or invalid the executor raises BlockRejected, storage rolls
back, and the daemon only advances its applied index past that entry (every
node does the same, since they all hold the same state).

`admin verify` re-checks the stored chain and the verdicts stored with it:
``verify_chain(genesis, raws, stored_verdicts=lambda h: verdicts_of(storage.block_txs(h)))``.

The genesis is stored as block 0 (`genesis_record`, writes from
`genesis_state_writes`), so block 1's prev_hash links to the storage tip.
"""

from __future__ import annotations

from collections.abc import Sequence

from hzp2p.contracts.engine import BlockResult, TxVerdict, execute_block, genesis_state_writes
from hzp2p.ledger.block import Block
from hzp2p.ledger.genesis import Genesis
from hzp2p.storage.interfaces import (
    TX_APPLIED,
    TX_REJECTED,
    BlockExecutor,
    BlockRecord,
    ExecResult,
    StateReader,
    TxRecord,
)


def block_record(block: Block, raft_index: int, raw: bytes | None = None) -> BlockRecord:
    return BlockRecord(
        height=block.height,
        block_hash=block.hash,
        prev_hash=block.header.prev_hash,
        raft_index=raft_index,
        raw=block.encode() if raw is None else raw,
    )


def genesis_record(genesis: Genesis) -> BlockRecord:
    """Height 0: the genesis itself (its canonical encoding), hash = genesis hash."""
    return BlockRecord(0, genesis.hash, bytes(32), 0, genesis.encode())


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes | None]:
    return dict(genesis_state_writes(genesis))


def tx_records(result: BlockResult) -> list[TxRecord]:
    return [
        TxRecord(
            tx_hash=v.tx_hash,
            height=result.height,
            position=i,
            tx_type=v.tx_type,
            status=TX_APPLIED if v.applied else TX_REJECTED,
            reason=v.reason,
        )
        for i, v in enumerate(result.verdicts)
    ]


def verdicts_of(records: Sequence[TxRecord]) -> list[TxVerdict]:
    """A block's stored TxRecord rows (``storage.block_txs(height)``) as the verdicts
    `verify_chain(..., stored_verdicts=...)` compares with its re-execution."""
    return [
        TxVerdict(r.tx_hash, r.tx_type, r.status == TX_APPLIED, r.reason)
        for r in sorted(records, key=lambda r: r.position)
    ]


def executor(block: Block, genesis: Genesis, out: list[BlockResult]) -> BlockExecutor:
    """A BlockExecutor for storage; appends the BlockResult to `out`. May raise BlockRejected."""

    def run(reader: StateReader) -> ExecResult:
        result = execute_block(reader, block, genesis)
        out.append(result)
        return tx_records(result), result.writes

    return run
