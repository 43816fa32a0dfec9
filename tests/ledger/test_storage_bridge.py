"""The engine through storage's apply_block_with (in-memory storage): blocks, verdicts, state."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from hzp2p.contracts.engine import BlockRejected, recompute_digest, state_digest
from hzp2p.contracts.storage_bridge import (
    block_record,
    executor,
    genesis_record,
    genesis_writes,
    verdicts_of,
)
from hzp2p.contracts.verify import verify_chain
from hzp2p.ledger.block import decode_block
from hzp2p.raft.types import Entry, EntryKind, HardState
from hzp2p.storage.memory import MemoryStorage
from hzp2p.tools.testkit import LocalChain


def report(i: int) -> dict[str, Any]:
    return {"report_id": f"r{i}", "region": "n", "metric": "m", "value": i, "period": "p"}


def test_blocks_through_memory_storage() -> None:
    c = LocalChain(seed=61)
    store = MemoryStorage(c.genesis.chain_id.encode(), c.genesis.hash)
    store.apply_block(genesis_record(c.genesis), [], genesis_writes(c.genesis), 0)
    # the chain is built on a LocalChain; storage replays it
    for i in range(3):
        c.run([c.tx(3, "epi.report", report(i)), c.tx(3, "epi.report", report(0))])
    entries = [Entry(1, i, EntryKind.NORMAL, raw) for i, raw in enumerate(c.blocks, start=1)]
    store.save_ready(entries, HardState(term=1, vote=1, commit=3))
    out: list[Any] = []

    for idx, raw in enumerate(c.blocks, start=1):
        blk = decode_block(raw)
        store.apply_block_with(block_record(blk, idx, raw), executor(blk, c.genesis, out), idx)
    assert [r.state_digest_after for r in out] == [r.state_digest_after for r in c.results]
    assert state_digest(store) == recompute_digest(store) == state_digest(c.state)
    rows = store.block_txs(2)
    assert [(t.status, t.position) for t in rows] == [("applied", 0), ("rejected", 1)]
    assert store.tx(c.results[1].verdicts[0].tx_hash) is not None
    # a stale block (already applied) is rejected and storage rolls back
    blk = decode_block(c.blocks[0])
    with pytest.raises(BlockRejected):
        store.apply_block_with(block_record(blk, 3), executor(blk, c.genesis, []), 3)
    stored = [store.block_by_height(h).raw for h in (1, 2, 3)]  # type: ignore[union-attr]
    assert verify_chain(c.genesis, stored, expected_final_digest=state_digest(store)).ok
    # the verdicts stored with the blocks are checked against re-execution too
    stored_rows = {h: store.block_txs(h) for h in (1, 2, 3)}
    assert verify_chain(c.genesis, stored, stored_verdicts=lambda h: verdicts_of(stored_rows[h])).ok
    flipped = dataclasses.replace(stored_rows[2][1], status="applied")
    stored_rows[2] = [stored_rows[2][0], flipped]
    r = verify_chain(c.genesis, stored, stored_verdicts=lambda h: verdicts_of(stored_rows[h]))
    assert not r.ok and r.bad_height == 2 and "verdicts" in r.reason
