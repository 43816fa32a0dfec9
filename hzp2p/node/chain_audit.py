"""`hzp2p admin verify` on one node: re-check the chain it stores, from the genesis or from its snapshot.

A node that holds every block from height 1 to its head replays them all from
the genesis (`hzp2p.contracts.verify.verify_chain`), comparing the re-executed
verdicts with those stored with each block (`storage_bridge.verdicts_of`). A node that caught up by
installing a snapshot (a learner admitted late, a node long down) lacks the
blocks below the snapshot's tip; it verifies instead

1. the stored snapshot itself, with the very checks run before installing one
   (`hzp2p.node.snapshot_format.decode_snapshot` / `verify_snapshot`): the state
   digest recomputed from the snapshot's pairs against the tip's, the chain
   head and digest vector in its state against the tip, the tip block's bytes
   hashing to the tip hash at the tip height with a valid proposer signature;
   and, if this node also stores a block at that height, that it is the
   snapshot's tip block;
2. every block after the tip, from that trusted starting point
   (`verify_chain_from`): hash links from the tip hash, Merkle roots, proposer
   signatures, timestamps, re-execution and state digests, the verdicts stored
   with each block, the final digest against the node's head. Re-execution runs on an in-memory copy of the
   snapshot's state on a worker thread; the node's live state is never touched.

Blocks this node may still hold below the snapshot (from before it fell behind)
are not replayed: their state is gone. The result says where verification
started: `from_height` (first height checked) and `snapshot_height` (None when
from the genesis).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from hzp2p.contracts.engine import TxVerdict
from hzp2p.contracts.storage_bridge import verdicts_of
from hzp2p.contracts.verify import TrustedStart, VerifyReport, verify_chain, verify_chain_from
from hzp2p.ledger.block import decode_block
from hzp2p.ledger.genesis import Genesis
from hzp2p.node.applier import ChainHead
from hzp2p.node.snapshot_format import BadSnapshot, decode_snapshot, verify_snapshot
from hzp2p.raft.types import Snapshot
from hzp2p.storage import AsyncStorage, BlockRecord, SyncStorage

VERIFY_BATCH = 512


async def _blocks(storage: AsyncStorage, lo: int, hi: int) -> list[BlockRecord]:
    """The stored blocks of heights lo..hi (those present), in height order."""
    out: list[BlockRecord] = []
    for a in range(lo, hi + 1, VERIFY_BATCH):
        out.extend(await storage.blocks(a, min(hi + 1, a + VERIFY_BATCH)))
    return out


async def _verdicts(storage: AsyncStorage, lo: int, hi: int) -> dict[int, list[TxVerdict]]:
    """The verdicts stored with blocks lo..hi, to compare with their re-execution."""
    out: dict[int, list[TxVerdict]] = {}
    for a in range(lo, hi + 1, VERIFY_BATCH):
        b = min(hi + 1, a + VERIFY_BATCH)

        def read(s: SyncStorage, a: int = a, b: int = b) -> dict[int, list[TxVerdict]]:
            return {h: verdicts_of(s.block_txs(h)) for h in range(a, b)}

        out.update(await storage.call(read))
    return out


def _result(
    ok: bool, height: int, checked: int, bad: int | None, reason: str | None,
    from_height: int, snapshot_height: int | None,
) -> dict[str, Any]:
    return {"ok": ok, "height": height, "blocks_checked": checked, "first_bad_height": bad,
            "reason": reason or None, "from_height": from_height,
            "snapshot_height": snapshot_height}


async def verify_local_chain(
    storage: AsyncStorage, genesis: Genesis, head: ChainHead, *,
    refresh_head: Callable[[], ChainHead] | None = None,
) -> dict[str, Any]:
    """The `verify` admin answer (without the optional integrity check) for the node whose
    storage and applied head (taken once, before reading blocks) are given. `refresh_head`
    (a callable returning the current head) is used once if the stored snapshot turns out to
    be newer than `head` (it was taken or installed meanwhile)."""
    recs = await _blocks(storage, 1, head.height)
    if len(recs) == head.height:
        raws = [r.raw for r in recs]
        stored = await _verdicts(storage, 1, head.height)
        report = await trio.to_thread.run_sync(
            lambda: verify_chain(genesis, raws, stored_verdicts=stored.get,
                                 expected_final_digest=head.state_digest)
        )
        return _from_report(report, head.height, None)
    snap = await storage.snapshot()
    if snap is None:
        return await _without_snapshot(genesis, head, recs)
    return await _from_snapshot(storage, genesis, head, recs, snap, refresh_head)


async def _without_snapshot(
    genesis: Genesis, head: ChainHead, recs: Sequence[BlockRecord]
) -> dict[str, Any]:
    """Blocks missing and no snapshot to start from: report what is wrong first."""
    raws = [r.raw for r in recs]
    report = await trio.to_thread.run_sync(lambda: verify_chain(genesis, raws))
    if not report.ok:
        return _from_report(report, head.height, None)
    missing = head.height - len(recs)
    return _result(False, head.height, report.blocks_checked, None,
                   f"{missing} blocks missing from storage", 1, None)


async def _from_snapshot(
    storage: AsyncStorage, genesis: Genesis, head: ChainHead, recs: list[BlockRecord],
    snap: Snapshot, refresh_head: Callable[[], ChainHead] | None,
) -> dict[str, Any]:
    try:
        s = await trio.to_thread.run_sync(decode_snapshot, snap.data, snap.meta.index)
    except BadSnapshot as exc:
        return _result(False, head.height, 0, None, f"stored snapshot: {exc.reason}", 1, None)
    sh = s.height
    if sh > head.height and refresh_head is not None:
        newer = refresh_head()
        recs = recs + await _blocks(storage, head.height + 1, newer.height)
        head = newer
    if sh > head.height:
        return _result(False, head.height, 0, sh, f"stored snapshot at height {sh} is beyond "
                       f"the chain head ({head.height}); retry", sh + 1, sh)
    after = [r for r in recs if r.height > sh]
    if len(after) != head.height - sh:
        missing = head.height - sh - len(after)
        return _result(False, head.height, 0, None, f"{missing} blocks after the snapshot at "
                       f"height {sh} missing from storage", sh + 1, sh)
    at_tip = [r.raw for r in recs if r.height == sh]
    raws = [r.raw for r in after]
    stored = await _verdicts(storage, sh + 1, head.height)

    def run() -> dict[str, Any]:
        try:  # the checks a follower runs before installing it (digest recomputed here)
            verify_snapshot(s, snap.meta, genesis.hash)
        except BadSnapshot as exc:
            return _result(False, head.height, 0, sh, f"snapshot at height {sh}: {exc.reason}",
                           sh + 1, sh)
        if at_tip and at_tip[0] != s.tip_block:
            return _result(False, head.height, 0, sh, f"stored block {sh} is not the "
                           "snapshot's tip block", sh + 1, sh)
        ts = decode_block(s.tip_block).header.timestamp_ms if sh else genesis.timestamp_ms
        start = TrustedStart(sh, s.block_hash, s.state_digest, ts, dict(s.pairs))
        report = verify_chain_from(genesis, start, raws, stored_verdicts=stored.get,
                                   expected_final_digest=head.state_digest,
                                   recompute_start_digest=False)
        return _from_report(report, head.height, sh)

    return await trio.to_thread.run_sync(run)


def _from_report(report: VerifyReport, height: int, snapshot_height: int | None) -> dict[str, Any]:
    return _result(report.ok, height, report.blocks_checked, report.bad_height,
                   report.reason, report.start_height + 1, snapshot_height)
