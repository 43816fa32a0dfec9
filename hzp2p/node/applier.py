"""The applier: committed Raft entries become blocks, verdicts and state, atomically.

It owns step 4 of the Ready contract (hzp2p.raft.ready) for the daemon: each
NORMAL entry is decoded as a block and executed by the contract engine on the
storage thread, and the block, its verdicts, its state writes and the applied
index are committed in one transaction (storage.apply_block_with). A block the
engine refuses (stale height after a leader change, bad header) is refused the
same way on every node, so only the applied index moves past it. NOOP entries
only advance the applied index; CONF_CHANGE entries go back to the core
(`core.apply_conf_change`) and the new membership is stored with the index.

It also keeps what the rest of the daemon reads without touching the database:
the chain head (height, hash, timestamp, state digest), the applied index, and
waiters for applied indexes (ReadIndex reads); callbacks tell the producer and the
submit path which transactions a block carried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog
import trio

from hzp2p.contracts.engine import BlockRejected, BlockResult
from hzp2p.contracts.members import MembershipChange
from hzp2p.contracts.storage_bridge import block_record, executor, genesis_record, genesis_writes
from hzp2p.ledger.block import Block, BlockError, decode_block
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledgernode.apply import ChainHead, head_of, refused_result, reusing
from hzp2p.node.opaque import is_opaque
from hzp2p.raft.membership import ConfChange
from hzp2p.raft.types import ConfState, Entry, EntryKind
from hzp2p.storage import AsyncStorage, StorageError, SyncStorage
from hzp2p.storage.interfaces import BlockJob

log = structlog.get_logger("hzp2p.node.applier")

MAX_INDEX_WAITERS = 4096

Predecoded = Callable[[Entry], Block | None]
ApplyConfChange = Callable[[ConfChange], ConfState]
"""The driver's hand-over of a committed membership change to its core."""

__all__ = ["Applier", "ApplyConfChange", "ChainHead", "Predecoded", "bootstrap"]


async def bootstrap(storage: AsyncStorage, genesis: Genesis) -> None:
    """On a fresh database: store the genesis as block 0 with its state and the first conf."""
    if await storage.tip() is not None:
        return
    conf = ConfState(voters=frozenset(genesis.voters), learners=frozenset(genesis.learners))
    await storage.set_applied(0, conf)
    await storage.apply_block(genesis_record(genesis), [], genesis_writes(genesis), 0)
    log.info("genesis_stored", chain_id=genesis.chain_id, genesis_hash=genesis.hash.hex())


def _read_head(store: SyncStorage) -> ChainHead:
    return head_of(store)


class Applier:
    """Applies committed entries; see the module docstring."""

    def __init__(
        self,
        storage: AsyncStorage,
        genesis: Genesis,
        *,
        on_block: Callable[[Block, BlockResult], None] | None = None,
        on_membership: Callable[[tuple[MembershipChange, ...]], None] | None = None,
    ) -> None:
        """`on_membership` is also called (with no changes) after a CONF_CHANGE is applied."""
        self.storage = storage
        self.genesis = genesis
        self.head = ChainHead(0, genesis.hash, genesis.timestamp_ms, b"")
        self.applied_index = 0
        self.blocks_applied = 0
        self.blocks_refused = 0
        self.txs_committed = 0
        self.txs_rejected = 0
        self.last_apply_ms = 0.0
        self.batched_applies = 0
        """Storage transactions that applied several blocks at once."""
        self.precomputed: dict[bytes, BlockResult] = {}
        """Block hash -> the result of the leader's speculative execution of its own block
        (hzp2p.node.producer); used only if the state it executes on is the one it assumed."""
        self._on_block = on_block
        self._on_membership = on_membership
        self._index_waiters: list[tuple[int, trio.Event]] = []
        self._new_block = trio.Event()
        """Set (and replaced) whenever a block is applied: `wait_height`'s wake-up."""

    async def load(self) -> None:
        self.head = await self.storage.call(_read_head)
        self.applied_index = await self.storage.applied_index()

    # ---------------------------------------------------------------- waiting
    async def wait_applied(self, index: int) -> None:
        """Return once the applied index is >= `index` (bound the wait with a deadline)."""
        if self.applied_index >= index:
            return
        if len(self._index_waiters) >= MAX_INDEX_WAITERS:
            raise trio.TooSlowError("too many reads waiting for the applied index")
        ev = trio.Event()
        self._index_waiters.append((index, ev))
        await ev.wait()

    async def wait_height(self, height: int) -> None:
        """Return once the chain head is at `height` or above (bound it with a deadline)."""
        while self.head.height < height:
            await self._new_block.wait()

    def _advance_applied(self, index: int) -> None:
        self.applied_index = index
        if not self._index_waiters:
            return
        keep: list[tuple[int, trio.Event]] = []
        for want, ev in self._index_waiters:
            if want <= index:
                ev.set()
            else:
                keep.append((want, ev))
        self._index_waiters = keep

    # ---------------------------------------------------------------- applying
    async def apply(
        self, apply_conf_change: ApplyConfChange, entries: Sequence[Entry],
        decoded: Predecoded | None = None,
    ) -> None:
        """Apply `entries` (committed, durable, in order) to storage and state. `decoded`
        gives the block already decoded (and its signatures checked) from an entry's bytes,
        or None (hzp2p.node.preverify).

        A run of NOOPs costs one `set_applied` at its end. A run made only of opaque
        benchmark entries (hzp2p.node.opaque) moves the applied index in memory only:
        they change no state, so re-applying them after a restart is harmless, and the
        next block, conf change or NOOP stores an applied index past them.
        """
        pending_noop = 0
        opaque_only = True
        run: list[tuple[Entry, Block | None]] = []  # consecutive blocks: one transaction
        for e in entries:
            if e.index <= self.applied_index:
                continue  # already applied before a restart
            if e.kind is EntryKind.NORMAL and e.data and not is_opaque(e.data):
                if pending_noop:
                    await self._noops_applied(pending_noop, opaque_only)
                    pending_noop, opaque_only = 0, True
                run.append((e, None if decoded is None else decoded(e)))
                continue
            if run:
                await self._apply_blocks(run)
                run = []
            if e.kind is EntryKind.CONF_CHANGE:
                if pending_noop:
                    await self._noops_applied(pending_noop, opaque_only)
                    pending_noop, opaque_only = 0, True
                try:
                    change = ConfChange.decode(e.data)
                except ValueError:
                    log.warning("conf_change_undecodable", index=e.index)
                    pending_noop, opaque_only = e.index, False
                    continue
                conf = apply_conf_change(change)
                await self.storage.set_applied(e.index, conf)
                self._advance_applied(e.index)
                if self._on_membership is not None:
                    self._on_membership(())
                log.info(
                    "conf_change_applied",
                    index=e.index,
                    change=change.kind.name.lower(),
                    target=change.node_id,
                    voters=sorted(conf.voters),
                    learners=sorted(conf.learners),
                )
            else:  # NOOP, or an opaque benchmark entry (hzp2p.node.opaque): index only
                pending_noop = e.index
                opaque_only = opaque_only and e.kind is EntryKind.NORMAL and bool(e.data)
        if run:
            await self._apply_blocks(run)
        if pending_noop:
            await self._noops_applied(pending_noop, opaque_only)

    async def _apply_blocks(self, run: list[tuple[Entry, Block | None]]) -> None:
        """Several committed blocks in one storage transaction (one fsync) when all decode and
        none is refused (the common case); otherwise block by block, which refuses exactly
        the ones a block-by-block apply refuses (the failed transaction changed nothing)."""
        if len(run) > 1:
            blocks: list[tuple[Entry, Block]] = []
            for e, b in run:
                if b is None:
                    try:
                        b = decode_block(e.data)
                    except BlockError:
                        break
                blocks.append((e, b))
            else:
                if await self._apply_together(blocks):
                    return
                run = [(e, b) for e, b in blocks]
        for e, b in run:
            await self._apply_block(e, b)

    async def _apply_together(self, blocks: list[tuple[Entry, Block]]) -> bool:
        t0 = time.perf_counter()
        outs: list[list[BlockResult]] = []
        jobs: list[BlockJob] = []
        for e, block in blocks:
            out: list[BlockResult] = []
            outs.append(out)
            run = executor(block, self.genesis, out)
            known = self.precomputed.get(block.hash)
            if known is not None:
                run = reusing(block, known, run, out)
            jobs.append((block_record(block, e.index, raw=e.data), run, e.index))
        try:
            await self.storage.apply_blocks_with(jobs)
        except BlockRejected:
            return False  # nothing stored: the caller goes block by block
        self.batched_applies += 1
        for (e, block), out in zip(blocks, outs, strict=True):
            self.precomputed.pop(block.hash, None)
            self._block_done(e, block, out[-1], t0)
        return True

    async def _noops_applied(self, index: int, opaque_only: bool) -> None:
        if not opaque_only:
            await self.storage.set_applied(index)
        self._advance_applied(index)

    async def _apply_block(self, e: Entry, block: Block | None = None) -> None:
        t0 = time.perf_counter()
        try:
            if block is None:
                block = decode_block(e.data)
        except BlockError as exc:
            log.warning("block_undecodable", index=e.index, reason=str(exc))
            await self.storage.set_applied(e.index)
            self._advance_applied(e.index)
            self.blocks_refused += 1
            return
        out: list[BlockResult] = []
        known = self.precomputed.pop(block.hash, None)
        try:
            await self.storage.apply_block_with(
                block_record(block, e.index, raw=e.data),
                executor(block, self.genesis, out)
                if known is None
                else reusing(block, known, executor(block, self.genesis, out), out),
                e.index,
            )
        except BlockRejected as exc:
            # Every node holds the same state, so every node refuses it the same way.
            log.info("block_refused", index=e.index, height=block.height, reason=exc.reason)
            await self.storage.set_applied(e.index)
            self._advance_applied(e.index)
            self.blocks_refused += 1
            if self._on_block is not None:
                self._on_block(block, refused_result(block))
            return
        except StorageError:
            raise
        self._block_done(e, block, out[-1], t0)

    def _block_done(self, e: Entry, block: Block, result: BlockResult, t0: float) -> None:
        self.head = ChainHead(
            block.height, block.hash, block.header.timestamp_ms, result.state_digest_after
        )
        self._advance_applied(e.index)
        self.blocks_applied += 1
        self._new_block.set()
        self._new_block = trio.Event()
        ok = sum(1 for v in result.verdicts if v.applied)
        self.txs_committed += ok
        self.txs_rejected += len(result.verdicts) - ok
        self.last_apply_ms = (time.perf_counter() - t0) * 1000
        if self._on_block is not None:
            self._on_block(block, result)
        if result.membership_changes and self._on_membership is not None:
            self._on_membership(result.membership_changes)
        log.debug("block_applied", height=block.height, index=e.index, txs=len(block.txs))
