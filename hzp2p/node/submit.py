"""The submit path: sign, admit, reach the leader's mempool, wait for the receipt.

It owns how a client's transaction gets from `admin submit` on any node into a
committed block, and what the client is told:

* Signing is idempotent: the nonce is derived from (type, payload,
  idempotency key) and the validity window from the current UTC day, so the
  same request to the same node is the same transaction (same hash) — and the
  engine never applies one hash twice.
* The origin node pre-checks the transaction against its own state (quick
  rejection of bad signatures, unknown types, non-members, duplicates).
* If this node leads, the transaction goes into the local mempool through the
  admission queue; otherwise it is forwarded to the leader (net ForwardSubmit,
  answered by SubmitReceipt). The origin then waits for the transaction to be
  applied *here* — every node applies every block — and re-sends it to the
  current leader after a leader change or every RETRY_S, within --wait
  (Fabric #3593). Re-sends are harmless: the leader's mempool refuses a copy,
  and the engine rejects a second inclusion as a duplicate.
* Receipts (hzp2p.ledgernode.receipts.Receipt, rendered by `as_dict`): tx_hash,
  status (committed | rejected | pending), height, index, reason; a resubmitted,
  already-committed transaction reports the original. Where each waited-for
  transaction stands is the submit tracker's (hzp2p.ledgernode.tracker: received ->
  checked -> queued | forwarded -> proposed -> landed | refused | expired); this
  module owns only the Trio side (wake-up events, database trips, sockets). A waiter
  learns its verdict from the applied block's result (no database trip); only after
  a leader change, a snapshot install or a periodic retry does it look its receipt
  up in storage.
* Batches (`submit_many`, the admin method of the same name): many signed
  transactions pre-checked in one database trip, admitted together (on the
  leader straight into the mempool, with one producer wake-up), and waited
  for by one task on one event however many blocks they land in; each item
  gets the receipt `submit` would have given it.

The admission queue on the leader is bounded; transactions are admitted in
batches with one storage call (signature and membership checks run on the
database thread against committed state).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.signing
import structlog
import trio

from hzp2p.contracts.api import TxRejected
from hzp2p.contracts.engine import BlockResult, admit_tx
from hzp2p.contracts.state import CachedReader
from hzp2p.ledger.block import Block
from hzp2p.ledger.codec import CodecError, encode_canonical
from hzp2p.ledger.mempool import Mempool
from hzp2p.ledger.tx import MAX_WINDOW_MS, Transaction, TxError, decode_tx
from hzp2p.ledgernode.admission import ALREADY_QUEUED, IN_A_PROPOSED_BLOCK, enqueue, precheck
from hzp2p.ledgernode.receipts import Receipt, Refused, Verdict, block_receipts
from hzp2p.ledgernode.tracker import SubmitTracker
from hzp2p.net.schemas import ForwardSubmit, SubmitReceipt
from hzp2p.net.transport import Transport
from hzp2p.node import failfast
from hzp2p.node.applier import Applier
from hzp2p.node.batching import StorageBatcher
from hzp2p.node.driver import RaftDriver
from hzp2p.node.producer import BlockProducer
from hzp2p.raft.types import NodeId
from hzp2p.storage import AsyncStorage, Refusal, SyncStorage, TxRecord

log = structlog.get_logger("hzp2p.node.submit")

DAY_MS = 86_400_000
RETRY_S = 1.0
ADMIT_QUEUE_LEN = 8192
ADMIT_BATCH = 512
SIGNED_CACHE = 4096
MAX_KICK_WAITERS = 65536
STORAGE_TRIP_ITEMS = 256
"""Pre-checks or look-ups per database trip: a few ms of work, so the Raft log's fsynced
writes (same FIFO thread) never queue long behind a burst of batch submits."""


__all__ = ["IdempotentSigner", "Refused", "SubmitError", "SubmitService"]


class SubmitError(Exception):
    """A submit request that cannot become a transaction (bad payload): bad_request."""


@dataclass(slots=True)
class _Admission:
    raw: bytes
    origin: NodeId  # 0 = local
    request_id: int
    checked: Transaction | None = None
    """A local submit's transaction, already pre-checked on this node: not checked again."""


def _window(now_ms: int) -> tuple[int, int]:
    """A validity window that is the same all day (UTC) and covers now: [day-1, day+5]."""
    start = max(0, (now_ms // DAY_MS - 1) * DAY_MS)
    return start, start + MAX_WINDOW_MS - DAY_MS


class IdempotentSigner:
    """Signs submit requests so that the same request is the same transaction.

    The nonce is derived from (type, canonical payload, idempotency key); the
    validity window from the UTC day. A request repeated while its transaction
    is still valid for more than a day returns the cached transaction (so a
    retry across midnight keeps its hash); otherwise the same day gives the
    same window and hence the same hash, even after a restart.
    """

    def __init__(self, key: nacl.signing.SigningKey, chain_id: str,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.key = key
        self.chain_id = chain_id
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._signed: OrderedDict[bytes, Transaction] = OrderedDict()

    def sign(self, tx_type: str, payload: Mapping[str, Any], idem_key: str | None) -> Transaction:
        try:
            canon = encode_canonical(dict(payload), "payload")
        except CodecError as exc:
            raise SubmitError(str(exc)) from None
        digest = hashlib.blake2b(
            b"hzp2p/submit/v1\x00" + tx_type.encode() + b"\x00" + canon + b"\x00"
            + (idem_key or "").encode(),
            digest_size=32,
        ).digest()
        t = self._clock_ms()
        tx = self._signed.get(digest)
        if tx is not None and tx.valid_from_ms <= t and tx.valid_until_ms - t > DAY_MS:
            return tx  # a retry is the same transaction, even across midnight
        start, until = _window(t)
        try:
            tx = Transaction.create(
                self.key,
                self.chain_id,
                tx_type,
                dict(payload),
                nonce=int.from_bytes(digest[:8], "big"),
                valid_from_ms=start,
                valid_until_ms=until,
            )
        except TxError as exc:
            raise SubmitError(str(exc)) from None
        self._signed[digest] = tx
        while len(self._signed) > SIGNED_CACHE:
            self._signed.popitem(last=False)
        return tx


class SubmitService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        node_id: NodeId,
        signing_key: nacl.signing.SigningKey,
        chain_id: str,
        storage: AsyncStorage,
        driver: RaftDriver,
        applier: Applier,
        transport: Transport,
        mempool: Mempool,
        producer: BlockProducer,
    ) -> None:
        self.node_id = node_id
        self.key = signing_key
        self.chain_id = chain_id
        self.storage = storage
        self.driver = driver
        self.applier = applier
        self.transport = transport
        self.mempool = mempool
        self.producer = producer
        self.signer = IdempotentSigner(signing_key, chain_id)
        self._kicks: dict[bytes, trio.Event] = {}
        self.tracker = SubmitTracker(MAX_KICK_WAITERS)
        """Where each waited-for transaction stands, and its verdict once final."""
        if producer is not None and producer.on_proposed is None:
            producer.on_proposed = lambda block: self.tracker.proposed(tx.hash for tx in block.txs)
        self._requests: dict[int, bytes] = {}
        self._req_ids = itertools.count(1)
        self._admit_send, self._admit_recv = trio.open_memory_channel[_Admission](ADMIT_QUEUE_LEN)
        self._prechecks = StorageBatcher(storage, _precheck_batch(chain_id), STORAGE_TRIP_ITEMS)
        self._lookups: StorageBatcher[bytes, TxRecord | None] = StorageBatcher(
            storage, _lookup_batch, STORAGE_TRIP_ITEMS
        )
        self.forwarded = 0
        self.admitted = 0
        self.refused_at_admission = 0
        self.dropped_busy = 0

    # ---------------------------------------------------------------- signing
    def sign(self, tx_type: str, payload: Mapping[str, Any], idem_key: str | None) -> Transaction:
        """The node's idempotent signature of a submit request (see IdempotentSigner)."""
        return self.signer.sign(tx_type, payload, idem_key)

    # ---------------------------------------------------------------- events
    def _kick(self, tx_hash: bytes) -> None:
        ev = self._kicks.pop(tx_hash, None)
        if ev is not None:
            ev.set()

    def kick_all(self) -> None:
        """Leader changed: every waiting submit re-sends at once. The dict is emptied in
        place: a waiter holding it sees its hash gone (kicked without a verdict) and keeps
        registering where block_applied looks."""
        events = list(self._kicks.values())
        self._kicks.clear()
        self.tracker.resend_all()
        for ev in events:
            ev.set()

    def _unregister(self, hashes: Iterable[bytes], ev: trio.Event | None) -> None:
        """A batch that stops waiting (done, deadline, cancellation) takes its registrations
        with it, so a transaction that never lands does not hold a slot of MAX_KICK_WAITERS."""
        kicks = self._kicks
        for h in hashes:
            if ev is not None and kicks.get(h) is ev:
                del kicks[h]

    def block_applied(self, block: Block, result: object = None) -> None:
        """Wake the submits waiting for `block`'s transactions, handing them their verdicts
        (the block and its verdicts are stored by now) so they need no database trip."""
        kicks = self._kicks
        if not kicks:
            return
        verdicts = result.verdicts if isinstance(result, BlockResult) else ()
        if len(verdicts) != len(block.txs):  # a refused block: its txs may be retried
            for tx in block.txs:
                self._kick(tx.hash)
            return
        assert isinstance(result, BlockResult)
        tracker = self.tracker
        # A second inclusion's verdict is not the receipt (block_receipts skips it): the
        # woken waiter looks the first one up instead.
        for r in block_receipts(result):
            if r.tx_hash in kicks:
                tracker.landed(r)
        for v in verdicts:
            ev = kicks.pop(v.tx_hash, None)
            if ev is not None:
                ev.set()

    def on_message(self, sender: NodeId, msg: Any) -> None:
        """Application messages from the transport (called from the inbound loop)."""
        if isinstance(msg, ForwardSubmit):
            try:
                self._admit_send.send_nowait(_Admission(msg.tx, sender, msg.request_id))
            except trio.WouldBlock:
                self.dropped_busy += 1
                self._reply(sender, msg.request_id, b"", Verdict.PENDING, "leader busy; retrying")
        elif isinstance(msg, SubmitReceipt):
            tx_hash = self._requests.pop(msg.request_id, None)
            if tx_hash is None or tx_hash != msg.tx_hash:
                return
            if msg.status == Verdict.REJECTED.value:
                self.tracker.refused(tx_hash, Refused(msg.reason))
                self._kick(tx_hash)

    def _reply(self, dst: NodeId, request_id: int, tx_hash: bytes, verdict: Verdict,
               reason: str, refused: Refused | None = None) -> None:
        if dst == 0:
            if verdict is Verdict.REJECTED and tx_hash:
                self.tracker.refused(tx_hash, refused or Refused(reason))
                self._kick(tx_hash)
            return
        self.transport.send_nowait(
            dst, SubmitReceipt(request_id, tx_hash, verdict.value, 0, 0, reason[:1024])
        )

    # ---------------------------------------------------------------- leader side
    async def admission_loop(self) -> None:
        """Admit queued transactions into the mempool in batches (leader only)."""
        while True:
            first = await self._admit_recv.receive()
            batch = [first]
            while len(batch) < ADMIT_BATCH:
                try:
                    batch.append(self._admit_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            if not self.driver.is_leader():
                for a in batch:
                    self._reply(a.origin, a.request_id, b"", Verdict.PENDING, "not leader")
                continue
            inflight = self.producer.inflight
            unchecked = [a.raw for a in batch if a.checked is None]
            checked = iter(
                await self.storage.call(
                    _admit_batch(unchecked, self.chain_id, int(time.time() * 1000))
                )
                if unchecked
                else []
            )
            results = [
                (a.checked.hash, a.checked) if a.checked is not None else next(checked)
                for a in batch
            ]
            added = False
            refusals: list[tuple[bytes, str, Refused]] = []
            for a, (tx_hash, res) in zip(batch, results, strict=True):
                if isinstance(res, tuple):
                    tx_type, why = res
                    self.refused_at_admission += not why.duplicate
                    verdict = Verdict.PENDING if why.duplicate else Verdict.REJECTED
                    self._reply(a.origin, a.request_id, tx_hash, verdict, why.reason, why)
                    if not why.duplicate and tx_hash:
                        refusals.append((tx_hash, tx_type, why))
                    continue
                queued = enqueue(res, self.mempool, inflight, len(a.raw))
                if queued is None:
                    added = True
                    self.admitted += 1
                self._reply(a.origin, a.request_id, res.hash, Verdict.PENDING,
                            queued.reason if queued else "")
            if added:
                self.producer.tx_added()
            if refusals:
                await self._record_refusals(refusals)

    async def _record_refusals(self, refusals: Sequence[tuple[bytes, str, Refused]]) -> None:
        """Keep refusals answerable (`admin tx HASH`), locally and bounded; log each by hash,
        type and reason — never its payload."""
        now_ms = int(time.time() * 1000)
        for h, typ, why in refusals:
            log.info("tx_refused", tx_hash=h.hex(), type=typ, reason=why.reason)
        await self.storage.record_refusals(
            [Refusal(h, typ, why.reason, why.problems, now_ms) for h, typ, why in refusals]
        )

    # ---------------------------------------------------------------- origin side
    def _send_to_leader(self, tx: Transaction, raw: bytes) -> None:
        if self.driver.is_leader():
            try:
                self._admit_send.send_nowait(_Admission(raw, 0, 0, tx))
                self.tracker.sent(tx.hash, queued=True)
            except trio.WouldBlock:
                self.dropped_busy += 1
            return
        leader = self.driver.leader_id
        if not leader:
            return
        self.tracker.sent(tx.hash, queued=False)
        rid = next(self._req_ids)
        self._requests[rid] = tx.hash
        if len(self._requests) > MAX_KICK_WAITERS:
            self._requests.pop(next(iter(self._requests)))
        self.transport.send_nowait(leader, ForwardSubmit(rid, raw, 0))
        self.forwarded += 1

    def is_pending(self, tx_hash: bytes) -> bool:
        """On its way here: a live tracked submit, queued in the mempool, or in a block this
        leader proposed (the one question `admin tx` asks before looking for a refusal)."""
        state = self.tracker.state(tx_hash)
        return (
            (state is not None and not state.final)
            or tx_hash in self._kicks
            or tx_hash in self.mempool
            or tx_hash in self.producer.inflight
        )

    async def lookup(self, tx_hash: bytes) -> dict[str, object] | None:
        found = await self._lookup(tx_hash)
        return None if found is None else found.as_dict()

    async def _lookup(self, tx_hash: bytes) -> Receipt | None:
        landed = self.tracker.outcome(tx_hash)
        if landed is not None and landed.height is not None:
            return landed
        rec = await self._lookups.run(tx_hash)  # batched with the other waiting submits
        return None if rec is None else Receipt.of_record(tx_hash, rec)

    async def refusal(self, tx_hash: bytes) -> dict[str, object] | None:
        """The receipt of a transaction refused at admission on this node, if it was."""
        r = await self.storage.refusal(tx_hash)
        if r is None:
            return None
        return Receipt.refused(tx_hash, Refused(r.reason, r.problems), r.tx_type).as_dict()

    async def submit(self, tx: Transaction, wait_s: float) -> dict[str, object]:
        """Get `tx` committed (or refused), waiting at most `wait_s`; returns the receipt."""
        h = tx.hash
        # one trip to the database, shared with the other submits waiting at this moment
        problem = await self._prechecks.run((tx, int(time.time() * 1000)))
        if isinstance(problem, TxRecord):
            return Receipt.of_record(h, problem).as_dict()
        if problem is not None and not problem.duplicate:
            await self._record_refusals([(h, tx.tx_type, problem)])
            return Receipt.refused(h, problem).as_dict()
        raw = tx.encode()
        deadline = trio.current_time() + wait_s
        self.tracker.received(h)
        self.tracker.checked(h)
        try:
            return (await self._wait_one(tx, raw, deadline)).as_dict()
        finally:
            # an entry still here was never set (setting pops it): nobody else will set it
            # either, unless another caller waits on the same hash, which then polls
            self._kicks.pop(h, None)
            self.tracker.release(h)

    async def _wait_one(self, tx: Transaction, raw: bytes, deadline: float) -> Receipt:
        h = tx.hash
        tracker = self.tracker
        while True:
            if h not in self._kicks and len(self._kicks) < MAX_KICK_WAITERS:
                self._kicks[h] = trio.Event()
            kick = self._kicks.get(h)
            self._send_to_leader(tx, raw)
            remaining = deadline - trio.current_time()
            if remaining > 0 and kick is not None:
                with trio.move_on_after(min(failfast.poll_s(self.driver, RETRY_S), remaining)):
                    await kick.wait()
            found = await self._lookup(h)
            if found is not None:
                return found
            refused = tracker.outcome(h)
            if refused is not None and refused.verdict is Verdict.REJECTED:
                await self._record_refusals(
                    [(h, tx.tx_type, Refused(refused.reason or "", refused.problems or ()))])
                return refused
            failfast.check(self.driver, self.node_id, raw)  # NoQuorum: the client retries elsewhere
            if trio.current_time() >= deadline:
                return tracker.expired(h)

    # ---------------------------------------------------------------- batches
    def _admit_local(self, txs: Sequence[Transaction]) -> None:
        """On the leader: pre-checked transactions straight into the mempool (what the
        admission loop does for a local submit), with one producer wake-up."""
        inflight, mempool, added = self.producer.inflight, self.mempool, False
        for tx in txs:
            why = enqueue(tx, mempool, inflight)
            if why is not None:
                # mempool full: the waiter re-sends after RETRY_S
                self.dropped_busy += why not in (IN_A_PROPOSED_BLOCK, ALREADY_QUEUED)
                continue
            added = True
            self.admitted += 1
        if added:
            self.producer.tx_added()

    def _send_many(self, txs: Sequence[Transaction]) -> None:
        if self.driver.is_leader():
            self._admit_local(txs)
        else:
            for tx in txs:
                self._send_to_leader(tx, tx.encode())

    async def submit_many(
        self, items: Sequence[Transaction | Refused], wait_s: float
    ) -> list[dict[str, object]]:
        """`submit` for each item, together: one pre-check trip, one admission, one waiting
        task. A Refused item could not be signed (rejected, no hash)."""
        receipts: list[Receipt | None] = [None] * len(items)
        signed = [(i, tx) for i, tx in enumerate(items) if isinstance(tx, Transaction)]
        for i, tx in enumerate(items):
            if isinstance(tx, Refused):
                receipts[i] = Receipt.refused(b"", tx)
        now_ms = int(time.time() * 1000)
        problems = await self._prechecks.run_many([(tx, now_ms) for _, tx in signed])
        waiting: dict[bytes, list[int]] = {}  # hash -> positions (an item may repeat)
        txs: dict[bytes, Transaction] = {}
        refused: list[tuple[bytes, str, Refused]] = []
        for (i, tx), problem in zip(signed, problems, strict=True):
            h = tx.hash
            if isinstance(problem, TxRecord):
                receipts[i] = Receipt.of_record(h, problem)
            elif problem is not None and not problem.duplicate:
                receipts[i] = Receipt.refused(h, problem)
                refused.append((h, tx.tx_type, problem))
            else:
                waiting.setdefault(h, []).append(i)
                if h not in txs:
                    self.tracker.received(h)
                    self.tracker.checked(h)
                txs[h] = tx

        if refused:
            await self._record_refusals(refused)

        def finish(h: bytes, receipt: Receipt) -> None:
            for i in waiting.pop(h):
                receipts[i] = receipt

        deadline = trio.current_time() + wait_s
        registered: list[trio.Event] = []  # the event the batch's hashes point at, if any
        stuck: list[str] = []  # why the wait ended early: no quorum reachable (failfast)
        try:
            await self._wait_many(waiting, txs, deadline, finish, registered, stuck)
            for h in list(waiting):
                finish(h, self.tracker.expired(h))
        finally:
            self._unregister(txs, registered[-1] if registered else None)
            for h in txs:
                self.tracker.release(h)
        out = [r.as_dict() for r in receipts if r is not None]
        assert len(out) == len(receipts)
        if stuck:  # what is still pending, with the words and the signed transaction to
            for r in out:  # hand to another node (`submit_raw`: same hash, applied once)
                h = bytes.fromhex(str(r["tx_hash"])) if r["tx_hash"] else b""
                if r["status"] == Verdict.PENDING.value and h in txs:
                    r.update(reason=stuck[0], no_quorum=True, retry_tx=txs[h].encode().hex())
        return out

    async def _wait_many(
        self,
        waiting: dict[bytes, list[int]],
        txs: dict[bytes, Transaction],
        deadline: float,
        finish: Callable[[bytes, Receipt], None],
        registered: list[trio.Event],
        stuck: list[str],
    ) -> None:
        """Wait for the `waiting` hashes to land (re-sending as needed) until `deadline`, or
        until no quorum is reachable from here (`stuck` gets why: fail fast, issue 22);
        `registered` ends with the event their kicks entries point at."""
        kicks, tracker = self._kicks, self.tracker  # kick_all empties kicks in place
        ev: trio.Event | None = None
        resend = list(waiting)
        while waiting:
            old, ev = ev, trio.Event()
            registered[:] = [ev]
            for h in waiting:
                cur = kicks.get(h)
                if (cur is None and len(kicks) < MAX_KICK_WAITERS) or (cur is not None and cur is old):
                    kicks[h] = ev
            if resend:
                self._send_many([txs[h] for h in resend])
            remaining = deadline - trio.current_time()
            woken = False
            if remaining > 0:
                with trio.move_on_after(min(failfast.poll_s(self.driver, RETRY_S), remaining)):
                    await ev.wait()
                    woken = True
            unknown: list[bytes] = []
            # On the leader, a transaction in the mempool or in a proposed block is on its
            # way: the periodic look (and re-send) is for the others only.
            queued = (self.mempool, self.producer.inflight) if self.driver.is_leader() else ()
            for h in list(waiting):
                final = tracker.outcome(h)
                if final is not None and final.height is not None:
                    finish(h, final)
                    continue
                if final is not None and final.verdict is Verdict.REJECTED:
                    why = Refused(final.reason or "", final.problems or ())
                    await self._record_refusals([(h, txs[h].tx_type, why)])
                    finish(h, final)
                elif kicks.get(h) is not ev:
                    unknown.append(h)  # kicked without a verdict (leader change, snapshot)
                elif not woken and not any(h in q for q in queued):
                    unknown.append(h)  # a periodic look
            if unknown:
                for h, found in zip(unknown, await self._lookups.run_many(unknown), strict=True):
                    if found is not None:
                        finish(h, Receipt.of_record(h, found))
            resend = [h for h in unknown if h in waiting]
            # A batch on the majority side waits for the election, however long it takes
            # (it would only be re-sent to the same majority); cut off, it fails fast.
            no_quorum = (failfast.no_quorum(self.driver, self.node_id)
                         if waiting and not failfast.quorum_reachable(self.driver) else None)
            if no_quorum is not None:
                stuck.append(no_quorum)
                break
            if trio.current_time() >= deadline:
                break


Admitted = tuple[bytes, Transaction | tuple[str, Refused]]
"""(tx hash or b"" if undecodable, the transaction or (its type, why it was refused))."""


def _admit_batch(
    raws: list[bytes], chain_id: str, now_ms: int
) -> Callable[[SyncStorage], list[Admitted]]:
    """Admission checks for a batch, on the storage thread."""

    def check(store: SyncStorage) -> list[Admitted]:
        out: list[Admitted] = []
        for raw in raws:
            try:
                tx = admit_tx(store, raw, chain_id, now_ms)
                out.append((tx.hash, tx))
            except (TxError, TxRejected) as exc:
                try:
                    decoded = decode_tx(raw)
                    tx_hash, tx_type = decoded.hash, decoded.tx_type
                except TxError:
                    tx_hash, tx_type = b"", ""  # undecodable: nobody can be waiting for it
                out.append((tx_hash, (tx_type, Refused.of(exc))))
        return out

    return check


def _precheck_batch(
    chain_id: str,
) -> Callable[[SyncStorage, Sequence[tuple[Transaction, int]]], list[TxRecord | Refused | None]]:
    """For each (tx, now_ms): its stored verdict, or why it cannot pass, or None. State reads
    are remembered for the trip (one consistent moment on the database thread), so a batch
    from one signer reads its membership once."""

    def run(
        store: SyncStorage, items: Sequence[tuple[Transaction, int]]
    ) -> list[TxRecord | Refused | None]:
        out: list[TxRecord | Refused | None] = []
        reader = CachedReader(store)
        for tx, now_ms in items:
            rec = store.tx(tx.hash)
            if rec is not None:
                out.append(rec)
                continue
            out.append(precheck(reader, tx, chain_id, now_ms))
        return out

    return run


def _lookup_batch(store: SyncStorage, hashes: Sequence[bytes]) -> list[TxRecord | None]:
    return [store.tx(h) for h in hashes]
