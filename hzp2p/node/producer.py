"""The leader's block producer: mempool -> block -> `driver.propose(block bytes)`.

It owns the Trio loop that cuts and proposes blocks; the decisions (when to build, on
which head, what is in flight, what is dropped) are hzp2p.ledgernode.pipeline's, which
the simulator runs too. A leader starts building only once
every entry in its log is applied (a new leader never builds on a head that an
older-term entry is about to move), on its applied chain head (height, hash,
timestamp, state digest). Then it pipelines: right after proposing block N it
executes N on the database thread on top of the committed state plus the
other blocks it has in flight (`speculative_state`), which gives the state
digest block N+1's header must carry, so N+1 can be proposed before N is
committed (at most MAX_INFLIGHT_BLOCKS, and only while the log's tail is
exactly its own blocks of this term). The speculative result is handed to the
applier, which reuses it when N commits on the very state it assumed (same
head and state digest) instead of executing N twice. If anything moves the
log under the pipeline (a refused block, a conf change, a lost leadership) it
is dropped and the producer waits until its log is applied again. An idle leader
(nothing of its own in flight) proposes a block as soon as a transaction
arrives; while blocks are in flight transactions accumulate until one applies
or the batching interval passes, so the next block is bigger (batching under
load, no added latency when idle). A ProposalDropped
(uncommitted-bytes bound, leader transfer) puts the transactions back and
backs off; losing leadership clears the mempool (submitters retry through the
new leader, and the engine refuses a transaction included twice).

Quorum certificates (hzp2p.node.attest, issue 19) ride in the blocks it cuts:
every block takes the certificates that are ready, and a certificate for a
block that carried transactions is *urgent*: with an empty mempool a block
holding only certificates is cut for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import nacl.signing
import structlog
import trio

from hzp2p.contracts.engine import BlockRejected, execute_block, speculative_state
from hzp2p.ledger.block import Block
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.mempool import Mempool
from hzp2p.ledgernode.pipeline import MAX_INFLIGHT_BLOCKS, BlockPipeline
from hzp2p.node.applier import Applier
from hzp2p.node.driver import RaftDriver
from hzp2p.raft.errors import NotLeader, ProposalDropped

log = structlog.get_logger("hzp2p.node.producer")

DROPPED_BACKOFF_S = 0.05
INFLIGHT_WAIT_S = 0.5
PRUNE_EVERY_S = 5.0
__all__ = ["MAX_INFLIGHT_BLOCKS", "BlockProducer", "CertSource"]


class CertSource(Protocol):
    """Where the leader's certificates come from (hzp2p.node.attest.AttestService)."""

    def urgent(self) -> bool: ...

    def take(self) -> list[bytes]: ...


def now_ms() -> int:
    return int(time.time() * 1000)


class BlockProducer:
    """Cuts and proposes blocks while this node leads; see the module docstring."""

    def __init__(
        self,
        driver: RaftDriver,
        applier: Applier,
        mempool: Mempool,
        builder: BlockBuilder,
        node_key: nacl.signing.SigningKey,
        node_id: int,
        certs: CertSource | None = None,
        on_proposed: Callable[[Block], None] | None = None,
    ) -> None:
        self.driver = driver
        self.certs = certs
        self.applier = applier
        self.mempool = mempool
        self.builder = builder
        self.node_key = node_key
        """The node key in force in the applied state (the daemon switches it when a block
        rotating this node's keys applies, hzp2p.node.rotation)."""
        self.node_key_for: Callable[[bytes], nacl.signing.SigningKey | None] = (
            lambda pub: None)
        """The private key of a public node key this daemon holds (a pending rotation's)."""
        self.node_pub: bytes | None = None
        """The node key the applied state names for this node, when it may differ from
        `node_key` (set by the daemon when a rotation names keys it could not switch to)."""
        self.node_id = node_id
        self.pipeline = BlockPipeline(applier.precomputed if applier is not None else {})
        self.inflight = self.pipeline.inflight
        """Hashes of transactions in proposed blocks not yet applied here."""
        self.on_proposed = on_proposed
        """Told of every block proposed (the submit tracker's `proposed` event)."""
        self.blocks_proposed = 0
        self.proposals_dropped = 0
        self.pipelined = 0
        """Blocks proposed while another of ours was still in flight."""
        self._waiting_since_ms: int | None = None
        self._arrived = trio.Event()

    def certs_ready(self) -> None:
        """An urgent certificate is ready: wake the loop even with an empty mempool."""
        self._arrived.set()

    def _certs_urgent(self) -> bool:
        return self.certs is not None and self.certs.urgent()

    def tx_added(self) -> None:
        if self._waiting_since_ms is None:
            self._waiting_since_ms = now_ms()
        self._arrived.set()

    def block_applied(self, block: Block) -> None:
        a = self.applier
        self.pipeline.block_applied(block, a.head.block_hash, a.applied_index, self.mempool)

    def leadership_lost(self) -> None:
        dropped = self.pipeline.leadership_lost(self.mempool)
        self._waiting_since_ms = None
        if dropped:
            log.info("mempool_cleared", txs=dropped, reason="no longer leader")

    async def run(self) -> None:
        last_prune = trio.current_time()
        while True:
            if len(self.mempool) == 0 and not self._certs_urgent():
                self._waiting_since_ms = None
                self._arrived = trio.Event()
                await self._arrived.wait()
                continue
            if not self.driver.is_leader():
                with trio.move_on_after(INFLIGHT_WAIT_S):
                    await self.driver.changed.wait()
                continue
            if not self.pipeline.may_build(self.driver.raft, self.applier.applied_index):
                target = self.pipeline.wait_target(self.driver.raft)
                with trio.move_on_after(INFLIGHT_WAIT_S):
                    await self.applier.wait_applied(target)
                continue
            t = now_ms()
            if trio.current_time() - last_prune > PRUNE_EVERY_S:
                last_prune = trio.current_time()
                self.mempool.prune_expired(t)
            # Adaptive batching (etcd's, Nagle-off's rule): with nothing of ours in flight,
            # propose at once — waiting would only add latency, nothing else is coming to
            # ride along. While a block is in flight, transactions accumulate until it
            # applies or the batching interval passes, so blocks grow only under load.
            idle = not self.pipeline.blocks and self.driver.idle_leader()
            if not self.pipeline.should_cut(self.builder, self.mempool, idle, t,
                                            self._waiting_since_ms, self._certs_urgent()):
                since = self._waiting_since_ms if self._waiting_since_ms is not None else t
                target = self.pipeline.wait_target(self.driver.raft)
                with trio.move_on_after(max(0.001, (since + self.builder.max_wait_ms - t) / 1000)):
                    await self.applier.wait_applied(target)
                continue
            proposed = self._propose_one(t)
            if proposed is None:
                await trio.sleep(DROPPED_BACKOFF_S)
            elif isinstance(proposed, tuple):
                await self._execute_ahead(*proposed)
            else:
                await trio.lowlevel.checkpoint()

    async def _execute_ahead(self, index: int, term: int, block: Block) -> None:
        """Execute our just-proposed block on the state it will commit on, for the next
        header's digest (and for the applier to reuse)."""
        if index <= self.applier.applied_index:
            return  # committed and applied meanwhile: nothing left to pipeline on
        before = self.pipeline.results_before()
        a = self.applier
        try:
            result = await a.storage.call(
                lambda s: execute_block(speculative_state(s, *before), block, a.genesis)
            )
        except BlockRejected as exc:  # cannot happen for a block built on that head
            log.warning("speculative_execution_refused", height=block.height, reason=exc.reason)
            self.pipeline.drop()
            return
        self.pipeline.executed_ahead(index, term, block, result, a.applied_index,
                                     self.driver.raft.current_term())

    def _block_key(self) -> nacl.signing.SigningKey | None:
        """The node key the next block must be signed with: the one in force in the state it
        executes on, i.e. after our blocks in flight (one of them may rotate our keys)."""
        key = self.node_key
        if self.node_pub is not None and self.node_pub != bytes(key.verify_key):
            held = self.node_key_for(self.node_pub)  # the state rotated to a key we lack
            if held is None:
                return None
            key = held
        for f in self.pipeline.blocks:
            for c in f.result.membership_changes:
                if c.kind == "rotate" and c.inst_id == self.node_id \
                        and c.node_key != bytes(key.verify_key):
                    new = self.node_key_for(c.node_key)
                    if new is None:
                        return None
                    key = new
        return key

    def _propose_one(self, t: int) -> bool | tuple[int, int, Block] | None:
        """True: nothing to propose; None: refused (backed off); else what was proposed."""
        node_key = self._block_key()
        if node_key is None:  # rotated to a key this daemon lacks (hzp2p.node.rotation logs it)
            self.pipeline.drop()
            return True
        head = self.pipeline.head(self.applier.head)
        certs = self.certs.take() if self.certs is not None else []
        block = self.builder.build(
            self.mempool,
            node_key,
            self.node_id,
            height=head.height + 1,
            prev_hash=head.block_hash,
            prev_timestamp_ms=head.timestamp_ms,
            state_digest=head.state_digest,
            now_ms=t,
            certs=certs,
        )
        if block is None and certs:
            block = Block.create(node_key, height=head.height + 1,
                                 prev_hash=head.block_hash, state_digest=head.state_digest,
                                 proposer=self.node_id, timestamp_ms=max(t, head.timestamp_ms),
                                 txs=[], certs=certs)
        self._waiting_since_ms = now_ms() if len(self.mempool) else None
        if block is None:
            return True
        try:
            index = self.driver.propose(block.encode())
        except (ProposalDropped, NotLeader) as exc:
            self.proposals_dropped += 1
            self.mempool.requeue(list(block.txs))
            if self._waiting_since_ms is None:
                self._waiting_since_ms = now_ms()
            log.info("proposal_dropped", height=block.height, reason=str(exc))
            return None
        self.blocks_proposed += 1
        self.pipelined += bool(self.pipeline.blocks)
        self.pipeline.proposed(block)
        if self.on_proposed is not None:
            self.on_proposed(block)
        log.debug("block_proposed", height=block.height, index=index, txs=len(block.txs))
        return index, self.driver.raft.current_term(), block
