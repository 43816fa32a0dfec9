"""The leader's block producer: mempool -> block -> `core.propose(block bytes)`.

It owns when a block is cut and proposed. One block is in flight at a time:
the leader builds on its applied chain head (height, hash, timestamp, state
digest) only once every entry in its log is applied, so the header's state
digest is always the digest of the state the block will execute on, and a new
leader never builds on a head that an older-term entry is about to move.
While a block is in flight transactions accumulate, so the next block is
bigger (batching under load, low latency when idle). A ProposalDropped
(uncommitted-bytes bound, leader transfer) puts the transactions back and
backs off; losing leadership clears the mempool (submitters retry through the
new leader, and the engine refuses a transaction included twice).
"""

from __future__ import annotations

import time

import nacl.signing
import structlog
import trio

from hzp2p.ledger.block import Block
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.mempool import Mempool
from hzp2p.node.applier import Applier
from hzp2p.node.driver import RaftDriver
from hzp2p.raft.errors import NotLeader, ProposalDropped

log = structlog.get_logger("hzp2p.node.producer")

DROPPED_BACKOFF_S = 0.05
INFLIGHT_WAIT_S = 0.5
PRUNE_EVERY_S = 5.0


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
    ) -> None:
        self.driver = driver
        self.applier = applier
        self.mempool = mempool
        self.builder = builder
        self.node_key = node_key
        self.node_id = node_id
        self.inflight: set[bytes] = set()
        """Hashes of transactions in proposed blocks not yet applied here."""
        self.blocks_proposed = 0
        self.proposals_dropped = 0
        self._waiting_since_ms: int | None = None
        self._arrived = trio.Event()

    def tx_added(self) -> None:
        if self._waiting_since_ms is None:
            self._waiting_since_ms = now_ms()
        self._arrived.set()

    def block_applied(self, block: Block) -> None:
        for tx in block.txs:
            self.inflight.discard(tx.hash)

    def leadership_lost(self) -> None:
        dropped = self.mempool.clear()
        self.inflight.clear()
        self._waiting_since_ms = None
        if dropped:
            log.info("mempool_cleared", txs=dropped, reason="no longer leader")

    async def run(self) -> None:
        last_prune = trio.current_time()
        while True:
            if len(self.mempool) == 0:
                self._waiting_since_ms = None
                self._arrived = trio.Event()
                await self._arrived.wait()
                continue
            if not self.driver.is_leader():
                with trio.move_on_after(INFLIGHT_WAIT_S):
                    await self.driver.changed.wait()
                continue
            if not self.driver.idle_leader():
                with trio.move_on_after(INFLIGHT_WAIT_S):
                    await self.applier.wait_applied(self.driver.core.log.last_index())
                continue
            t = now_ms()
            if trio.current_time() - last_prune > PRUNE_EVERY_S:
                last_prune = trio.current_time()
                self.mempool.prune_expired(t)
            if not self.builder.should_cut(self.mempool, t, self._waiting_since_ms):
                since = self._waiting_since_ms if self._waiting_since_ms is not None else t
                await trio.sleep(max(0.001, (since + self.builder.max_wait_ms - t) / 1000))
                continue
            if self._propose_one(t):
                await trio.lowlevel.checkpoint()
            else:
                await trio.sleep(DROPPED_BACKOFF_S)

    def _propose_one(self, t: int) -> bool:
        head = self.applier.head
        block = self.builder.build(
            self.mempool,
            self.node_key,
            self.node_id,
            height=head.height + 1,
            prev_hash=head.block_hash,
            prev_timestamp_ms=head.timestamp_ms,
            state_digest=head.state_digest,
            now_ms=t,
        )
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
            return False
        self.blocks_proposed += 1
        self.inflight.update(tx.hash for tx in block.txs)
        log.debug("block_proposed", height=block.height, index=index, txs=len(block.txs))
        return True
