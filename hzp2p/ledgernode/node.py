"""`LedgerNode`: one ledger node's decisions, whole — events in, actions out.

It owns, over a state it is handed (any `Readable` with `apply(writes)`), what a node
does with a submitted transaction and a committed block:

* submit: pre-check against the applied state (a stored verdict answers at once; a
  refusal is final), then queue it in the local mempool when this node leads, or
  forward it to the leader it knows (`Forward`); after a leader change every live
  transaction is sent again (`role_changed`);
* admission on the leader (local or forwarded): the contract's pre-check against the
  applied state, and the duplicate checks (applied, queued, in a proposed block);
  the origin gets an `AdmissionReply` (pending, or rejected with the reason);
* block building: the pipeline policy (hzp2p.ledgernode.pipeline) decides, `poll`
  returns the block to propose; `proposed` executes it ahead on the speculative state;
* apply: a committed block is executed by the contract engine (or the speculative
  result is reused when the state is the one it assumed) and its writes applied; the
  receipts of the transactions waited for here leave as `ClientReceipt`s.

The simulator (hzp2p.sim.ledger_app) runs it as is; the daemon's Trio shell
(hzp2p.node) runs the same parts (tracker, pipeline, apply, receipts) around its
database thread and sockets. `PlantedBugs` are test-only switches for the
simulator's self-test (tests/sim/test_ledger_bugs.py); production never sets them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import nacl.signing

from hzp2p.contracts.engine import (
    BlockRejected,
    BlockResult,
    execute_block,
    speculative_state,
    tx_record,
)
from hzp2p.contracts.state import Readable
from hzp2p.ledger.block import Block, BlockError, decode_block
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledger.mempool import Mempool, MempoolLimits
from hzp2p.ledger.tx import Transaction, TxError, decode_tx
from hzp2p.ledgernode.admission import enqueue, precheck
from hzp2p.ledgernode.apply import ChainHead, execute_committed, head_of, refused_result
from hzp2p.ledgernode.pipeline import BlockPipeline, RaftView
from hzp2p.ledgernode.receipts import Receipt, Refused, Verdict, block_receipts
from hzp2p.ledgernode.tracker import SubmitTracker, TxState

NodeId = int
Execute = Callable[[Readable, Block, Genesis], BlockResult]


class LedgerState(Readable, Protocol):
    """The applied state a LedgerNode reads and writes (contracts.state.DictState)."""

    def apply(self, writes: dict[bytes, bytes | None]) -> None: ...


@dataclass(frozen=True, slots=True)
class PlantedBugs:
    """Test-only switches that break the node on purpose (the simulator must catch each)."""

    early_receipt: bool = False
    """Tell a waiting client its verdict from the speculative execution of the block it
    was proposed in, before that block is committed and durably applied."""
    readmit_without_dup_check: bool = False
    """Admit a forwarded transaction without the duplicate checks (already applied, in a
    proposed block): what a re-forward after a leader change then gets included twice."""


# ------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class Propose:
    """Propose this block's bytes to Raft (then report `proposed` or `proposal_dropped`)."""

    block: Block


@dataclass(frozen=True, slots=True)
class Forward:
    """Send a transaction to the leader (`on_forward` there)."""

    dst: NodeId
    request_id: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class AdmissionReply:
    """The leader's answer to a forward (`on_admission_reply` on the origin)."""

    dst: NodeId
    request_id: int
    tx_hash: bytes
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class ClientReceipt:
    """The final receipt for the clients waiting here for `receipt.tx_hash`."""

    receipt: Receipt


Action = Propose | Forward | AdmissionReply | ClientReceipt


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one committed block did (for the caller's bookkeeping and checks)."""

    block: Block
    result: BlockResult | None
    """None: the block was refused (only the applied index moved past it)."""
    reused: bool = False


class LedgerNode:
    """See the module docstring."""

    def __init__(
        self,
        node_id: NodeId,
        genesis: Genesis,
        state: LedgerState,
        node_key: nacl.signing.SigningKey,
        proposer: int,
        *,
        builder: BlockBuilder | None = None,
        mempool_limits: MempoolLimits | None = None,
        bugs: PlantedBugs = PlantedBugs(),
        execute: Execute = execute_block,
    ) -> None:
        """`execute`: the contract engine's execute_block, or a memo of it (a pure
        function of the state and the block: the simulator shares results between nodes)."""
        self.node_id = node_id
        self.execute = execute
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.state = state
        self.node_key = node_key
        self.proposer = proposer
        self.builder = builder or BlockBuilder(max_txs=64, max_wait_ms=20)
        self.mempool = Mempool(mempool_limits)
        self.pipeline = BlockPipeline()
        self.tracker = SubmitTracker()
        self.bugs = bugs
        self.head: ChainHead = head_of(state)
        self.leader_id: NodeId = 0
        self.is_leader = False
        self._txs: dict[bytes, Transaction] = {}
        """Tracked transactions (to send again after a leader change)."""
        self._requests: dict[int, bytes] = {}
        self._req_ids = itertools.count(1)
        self._waiting_since_ms: int | None = None
        self.blocks_proposed = 0
        self.blocks_applied = 0
        self.blocks_refused = 0
        self.forwarded = 0
        self.admitted = 0

    # ---------------------------------------------------------------- origin side
    def submit(self, tx: Transaction, now_ms: int) -> list[Action]:
        """A client submits `tx` here and waits for its ClientReceipt."""
        h = tx.hash
        t = self.tracker.received(h)
        if t.waiters > 1:
            return []  # already on its way for another waiter
        stored = tx_record(self.state, h)
        if stored is not None:
            self.tracker.landed(_stored_receipt(h, tx.tx_type, stored))
            return [ClientReceipt(self._outcome(h))]
        why = precheck(self.state, tx, self.chain_id, now_ms)
        if why is not None and not why.duplicate:
            self.tracker.refused(h, why, tx.tx_type)
            return [ClientReceipt(self._outcome(h))]
        self.tracker.checked(h)
        self._txs[h] = tx
        return self._send(tx, now_ms)

    def _outcome(self, h: bytes) -> Receipt:
        r = self.tracker.outcome(h)
        assert r is not None
        return r

    def _send(self, tx: Transaction, now_ms: int) -> list[Action]:
        if self.is_leader:
            self.tracker.sent(tx.hash, queued=True)
            return self._reply(0, 0, tx.hash, self._admit(tx, now_ms, forwarded=False))
        if not self.leader_id:
            return []  # sent once a leader is known (role_changed)
        self.tracker.sent(tx.hash, queued=False)
        rid = next(self._req_ids)
        self._requests[rid] = tx.hash
        self.forwarded += 1
        return [Forward(self.leader_id, rid, tx.encode())]

    def release(self, tx_hash: bytes) -> None:
        """A waiting client got its receipt or gave up."""
        self.tracker.release(tx_hash)
        if tx_hash not in self.tracker:
            self._txs.pop(tx_hash, None)

    def expire(self, tx_hash: bytes) -> Receipt:
        """A client's wait ended without a verdict: it is told "pending"."""
        r = self.tracker.expired(tx_hash)
        self.release(tx_hash)
        return r

    def on_admission_reply(self, request_id: int, tx_hash: bytes, verdict: Verdict,
                           reason: str) -> list[Action]:
        if self._requests.pop(request_id, None) != tx_hash:
            return []
        if verdict is Verdict.REJECTED and self.tracker.refused(tx_hash, Refused(reason)):
            return [ClientReceipt(self._outcome(tx_hash))]
        return []

    def role_changed(self, is_leader: bool, leader_id: NodeId, now_ms: int) -> list[Action]:
        """Raft's role or leader changed: a lost leadership drops the mempool and the
        pipeline; every live transaction goes to the new leader again."""
        if (is_leader, leader_id) == (self.is_leader, self.leader_id):
            return []
        if self.is_leader and not is_leader:
            self.pipeline.leadership_lost(self.mempool)
            self._waiting_since_ms = None
        self.is_leader, self.leader_id = is_leader, leader_id
        if not is_leader and not leader_id:
            return []
        out: list[Action] = []
        for h in self.tracker.resend_all():
            tx = self._txs.get(h)
            if tx is not None:
                out.extend(self._send(tx, now_ms))
        return out

    # ---------------------------------------------------------------- leader side
    def on_forward(self, sender: NodeId, request_id: int, raw: bytes,
                   now_ms: int) -> list[Action]:
        try:
            tx = decode_tx(raw)
        except TxError as exc:
            return self._reply(sender, request_id, b"", Refused.of(exc))
        return self._reply(sender, request_id, tx.hash, self._admit(tx, now_ms, forwarded=True))

    def _admit(self, tx: Transaction, now_ms: int, *, forwarded: bool) -> Refused | None:
        """None: queued (or on its way already); else why it was not."""
        if not self.is_leader:
            return Refused("not leader", duplicate=True)
        skip_dup = forwarded and self.bugs.readmit_without_dup_check
        why = precheck(self.state, tx, self.chain_id, now_ms)
        if why is not None and not (why.duplicate and skip_dup):
            return why
        why = enqueue(tx, self.mempool, self.pipeline.inflight, check_inflight=not skip_dup)
        if why is not None:
            return why  # a duplicate: on its way already, or to be sent again
        self.admitted += 1
        if self._waiting_since_ms is None:
            self._waiting_since_ms = now_ms
        return None

    def _reply(self, dst: NodeId, request_id: int, tx_hash: bytes,
               why: Refused | None) -> list[Action]:
        verdict = Verdict.PENDING if why is None or why.duplicate else Verdict.REJECTED
        if dst == 0:  # a local submit
            if verdict is Verdict.REJECTED and self.tracker.refused(tx_hash, why or Refused("")):
                return [ClientReceipt(self._outcome(tx_hash))]
            return []
        return [AdmissionReply(dst, request_id, tx_hash, verdict, why.reason if why else "")]

    def poll(self, raft: RaftView, applied_index: int, now_ms: int) -> Propose | None:
        """The block to propose now, if the pipeline policy says one is due."""
        if len(self.mempool) == 0 or not self.is_leader or not raft.is_leader():
            if len(self.mempool) == 0:
                self._waiting_since_ms = None
            return None
        if not self.pipeline.may_build(raft, applied_index):
            return None
        idle = not self.pipeline.blocks and self.pipeline.idle(raft, applied_index)
        if not self.pipeline.should_cut(self.builder, self.mempool, idle, now_ms,
                                        self._waiting_since_ms, False):
            return None
        head = self.pipeline.head(self.head)
        block = self.builder.build(
            self.mempool, self.node_key, self.proposer, height=head.height + 1,
            prev_hash=head.block_hash, prev_timestamp_ms=head.timestamp_ms,
            state_digest=head.state_digest, now_ms=now_ms,
        )
        self._waiting_since_ms = now_ms if len(self.mempool) else None
        return None if block is None else Propose(block)

    def proposal_dropped(self, block: Block, now_ms: int) -> None:
        """Raft refused the proposal (not leader, bound reached): the txs go back."""
        self.mempool.requeue(list(block.txs))
        if self._waiting_since_ms is None and len(self.mempool):
            self._waiting_since_ms = now_ms

    def proposed(self, index: int, term: int, block: Block, raft: RaftView,
                 applied_index: int) -> list[Action]:
        """`block` went into the log at `index`: execute it ahead for the next header."""
        self.blocks_proposed += 1
        self.pipeline.proposed(block)
        self.tracker.proposed(tx.hash for tx in block.txs)
        if index <= applied_index:
            return []
        try:
            result = self.execute(
                speculative_state(self.state, *self.pipeline.results_before()), block,
                self.genesis)
        except BlockRejected:  # cannot happen for a block built on that head
            self.pipeline.drop()
            return []
        self.pipeline.executed_ahead(index, term, block, result, applied_index,
                                     raft.current_term())
        if not self.bugs.early_receipt:
            return []
        return [ClientReceipt(r) for r in block_receipts(result) if self.tracker.landed(r)]

    # ---------------------------------------------------------------- apply
    def apply_entry(self, index: int, data: bytes) -> tuple[Applied | None, list[Action]]:
        """Apply one committed NORMAL entry carrying a block (None: it is not a block)."""
        try:
            block = decode_block(data)
        except BlockError:
            return None, []
        known = self.pipeline.precomputed.pop(block.hash, None)
        try:
            result = execute_committed(self.state, block, self.genesis, known, self.execute)
        except BlockRejected:
            self.blocks_refused += 1
            return Applied(block, None), self._block_done(block, refused_result(block), index)
        self.state.apply(result.writes)
        self.head = ChainHead(block.height, block.hash, block.header.timestamp_ms,
                              result.state_digest_after)
        self.blocks_applied += 1
        return Applied(block, result, result is known), self._block_done(block, result, index)

    def _block_done(self, block: Block, result: BlockResult, index: int) -> list[Action]:
        self.pipeline.block_applied(block, self.head.block_hash, index, self.mempool)
        out: list[Action] = [
            ClientReceipt(r) for r in block_receipts(result) if self.tracker.landed(r)
        ]
        if not result.verdicts and block.txs:  # refused: its txs go to the leader again
            out.extend(self._resend(tx.hash for tx in block.txs))
        return out

    def _resend(self, hashes: Iterable[bytes]) -> list[Action]:
        out: list[Action] = []
        for h in hashes:
            tx = self._txs.get(h)
            if tx is not None and self.tracker.state(h) is TxState.PROPOSED:
                out.extend(self._send(tx, self.head.timestamp_ms))
        return out

    def restored(self) -> list[Action]:
        """The state was replaced (a snapshot): what was built on the old one is dropped;
        waiters whose transaction the snapshot holds get their receipts."""
        self.head = head_of(self.state)
        self.pipeline.drop()
        out: list[Action] = []
        for h in list(self.tracker.live()):
            rec = tx_record(self.state, h)
            tx = self._txs.get(h)
            if (rec is not None and tx is not None
                    and self.tracker.landed(_stored_receipt(h, tx.tx_type, rec))):
                out.append(ClientReceipt(self._outcome(h)))
        return out


def _stored_receipt(h: bytes, tx_type: str, rec: dict[str, object]) -> Receipt:
    """The receipt of a verdict stored in contract state (engine.tx_record)."""
    ok = bool(rec["applied"])
    height, index = rec["height"], rec["index"]
    assert isinstance(height, int) and isinstance(index, int)
    return Receipt(h, Verdict.COMMITTED if ok else Verdict.REJECTED, height, index,
                   None if ok else str(rec["reason"]), tx_type)
