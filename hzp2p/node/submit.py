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
* Receipts: tx_hash, status (committed | rejected | pending), height, index,
  reason; a resubmitted, already-committed transaction reports the original.

The admission queue on the leader is bounded; transactions are admitted in
batches with one storage call (signature and membership checks run on the
database thread against committed state).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.signing
import structlog
import trio

from hzp2p.contracts.api import TxRejected
from hzp2p.contracts.engine import admit_tx, precheck_tx
from hzp2p.ledger.block import Block
from hzp2p.ledger.codec import CodecError, encode_canonical
from hzp2p.ledger.mempool import DuplicateTx, Mempool, MempoolFull
from hzp2p.ledger.tx import MAX_WINDOW_MS, Transaction, TxError, decode_tx
from hzp2p.net.schemas import ForwardSubmit, SubmitReceipt
from hzp2p.net.transport import Transport
from hzp2p.node.applier import Applier, receipt_of
from hzp2p.node.batching import StorageBatcher
from hzp2p.node.driver import RaftDriver
from hzp2p.node.producer import BlockProducer
from hzp2p.raft.types import NodeId
from hzp2p.storage import AsyncStorage, SyncStorage, TxRecord

log = structlog.get_logger("hzp2p.node.submit")

DAY_MS = 86_400_000
RETRY_S = 1.0
ADMIT_QUEUE_LEN = 8192
ADMIT_BATCH = 512
SIGNED_CACHE = 4096
MAX_KICK_WAITERS = 65536


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
        self._rejections: dict[bytes, str] = {}
        self._requests: dict[int, bytes] = {}
        self._req_ids = itertools.count(1)
        self._admit_send, self._admit_recv = trio.open_memory_channel[_Admission](ADMIT_QUEUE_LEN)
        self._prechecks = StorageBatcher(storage, _precheck_batch(chain_id))
        self._lookups: StorageBatcher[bytes, TxRecord | None] = StorageBatcher(
            storage, _lookup_batch
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
        """Leader changed: every waiting submit re-sends at once."""
        kicks, self._kicks = self._kicks, {}
        for ev in kicks.values():
            ev.set()

    def block_applied(self, block: Block) -> None:
        for tx in block.txs:
            self._kick(tx.hash)

    def on_message(self, sender: NodeId, msg: Any) -> None:
        """Application messages from the transport (called from the inbound loop)."""
        if isinstance(msg, ForwardSubmit):
            try:
                self._admit_send.send_nowait(_Admission(msg.tx, sender, msg.request_id))
            except trio.WouldBlock:
                self.dropped_busy += 1
                self._reply(sender, msg.request_id, b"", "pending", "leader busy; retrying")
        elif isinstance(msg, SubmitReceipt):
            tx_hash = self._requests.pop(msg.request_id, None)
            if tx_hash is None or tx_hash != msg.tx_hash:
                return
            if msg.status == "rejected":
                self._rejections[tx_hash] = msg.reason
                self._kick(tx_hash)

    def _reply(self, dst: NodeId, request_id: int, tx_hash: bytes, status: str, reason: str) -> None:
        if dst == 0:
            if status == "rejected" and tx_hash:
                self._rejections[tx_hash] = reason
                self._kick(tx_hash)
            return
        self.transport.send_nowait(
            dst, SubmitReceipt(request_id, tx_hash, status, 0, 0, reason[:1024])
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
                    self._reply(a.origin, a.request_id, b"", "pending", "not leader")
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
            for a, (tx_hash, res) in zip(batch, results, strict=True):
                if isinstance(res, str):
                    dup = res.startswith("duplicate")
                    self.refused_at_admission += not dup
                    status = "pending" if dup else "rejected"
                    self._reply(a.origin, a.request_id, tx_hash, status, res)
                    continue
                if res.hash in inflight:
                    self._reply(a.origin, a.request_id, res.hash, "pending", "in a proposed block")
                    continue
                try:
                    self.mempool.add(res, len(a.raw))
                    added = True
                    self.admitted += 1
                    self._reply(a.origin, a.request_id, res.hash, "pending", "")
                except DuplicateTx:
                    self._reply(a.origin, a.request_id, res.hash, "pending", "already queued")
                except MempoolFull as exc:
                    self._reply(a.origin, a.request_id, res.hash, "pending", exc.reason)
            if added:
                self.producer.tx_added()

    # ---------------------------------------------------------------- origin side
    def _send_to_leader(self, tx: Transaction, raw: bytes) -> None:
        if self.driver.is_leader():
            try:
                self._admit_send.send_nowait(_Admission(raw, 0, 0, tx))
            except trio.WouldBlock:
                self.dropped_busy += 1
            return
        leader = self.driver.leader_id
        if not leader:
            return
        rid = next(self._req_ids)
        self._requests[rid] = tx.hash
        if len(self._requests) > MAX_KICK_WAITERS:
            self._requests.pop(next(iter(self._requests)))
        self.transport.send_nowait(leader, ForwardSubmit(rid, raw, 0))
        self.forwarded += 1

    def is_waiting(self, tx_hash: bytes) -> bool:
        """A submit on this node is still waiting for `tx_hash`."""
        return tx_hash in self._kicks

    async def lookup(self, tx_hash: bytes) -> dict[str, object] | None:
        rec = await self._lookups.run(tx_hash)  # batched with the other waiting submits
        return None if rec is None else receipt_of(tx_hash, rec)

    async def submit(self, tx: Transaction, wait_s: float) -> dict[str, object]:
        """Get `tx` committed (or refused), waiting at most `wait_s`; returns the receipt."""
        h = tx.hash
        # one trip to the database, shared with the other submits waiting at this moment
        problem = await self._prechecks.run((tx, int(time.time() * 1000)))
        if isinstance(problem, TxRecord):
            return receipt_of(h, problem)
        if problem is not None and not problem.startswith("duplicate"):
            return _rejected(h, problem)
        raw = tx.encode()
        deadline = trio.current_time() + wait_s
        self._rejections.pop(h, None)
        while True:
            if h not in self._kicks and len(self._kicks) < MAX_KICK_WAITERS:
                self._kicks[h] = trio.Event()
            kick = self._kicks.get(h)
            self._send_to_leader(tx, raw)
            remaining = deadline - trio.current_time()
            if remaining > 0 and kick is not None:
                with trio.move_on_after(min(RETRY_S, remaining)):
                    await kick.wait()
            found = await self.lookup(h)
            if found is not None:
                return found
            reason = self._rejections.pop(h, None)
            if reason is not None:
                return _rejected(h, reason)
            if trio.current_time() >= deadline:
                return {"tx_hash": h.hex(), "status": "pending", "height": None,
                        "index": None, "reason": None}


def _admit_batch(
    raws: list[bytes], chain_id: str, now_ms: int
) -> Callable[[SyncStorage], list[tuple[bytes, Transaction | str]]]:
    """Admission checks for a batch, on the storage thread: (tx hash or b"", tx or reason)."""

    def check(store: SyncStorage) -> list[tuple[bytes, Transaction | str]]:
        out: list[tuple[bytes, Transaction | str]] = []
        for raw in raws:
            try:
                tx = admit_tx(store, raw, chain_id, now_ms)
                out.append((tx.hash, tx))
            except (TxError, TxRejected) as exc:
                try:
                    tx_hash = decode_tx(raw).hash
                except TxError:
                    tx_hash = b""  # undecodable: nobody can be waiting for it
                out.append((tx_hash, str(exc) or type(exc).__name__))
        return out

    return check


def _precheck_batch(
    chain_id: str,
) -> Callable[[SyncStorage, Sequence[tuple[Transaction, int]]], list[TxRecord | str | None]]:
    """For each (tx, now_ms): its stored verdict, or why it cannot pass, or None."""

    def run(
        store: SyncStorage, items: Sequence[tuple[Transaction, int]]
    ) -> list[TxRecord | str | None]:
        out: list[TxRecord | str | None] = []
        for tx, now_ms in items:
            rec = store.tx(tx.hash)
            if rec is not None:
                out.append(rec)
                continue
            try:
                precheck_tx(store, tx, chain_id, now_ms)
            except (TxError, TxRejected) as exc:
                out.append(str(exc) or type(exc).__name__)
                continue
            out.append(None)
        return out

    return run


def _lookup_batch(store: SyncStorage, hashes: Sequence[bytes]) -> list[TxRecord | None]:
    return [store.tx(h) for h in hashes]


def _rejected(tx_hash: bytes, reason: str) -> dict[str, object]:
    return {"tx_hash": tx_hash.hex(), "status": "rejected", "height": None, "index": None,
            "reason": reason}
