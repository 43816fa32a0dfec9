"""The leader's mempool: deduplicated, bounded, FIFO per sender, fair across senders.

Transactions are keyed by hash (a second copy is refused as a duplicate). Bounds:
total bytes, total count, and count and bytes per sender (signer key), so one busy or
hostile institution cannot crowd out the others. `pop_batch` cuts a block's
worth round-robin across senders (one transaction from each sender per round,
oldest first within a sender), starting each cut after the sender the previous
cut ended on. Admission checks against the chain (signature, membership,
already included) are the caller's: see hzp2p.contracts.engine.precheck_tx.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from dataclasses import dataclass

from hzp2p.ledger.tx import Transaction


class MempoolFull(Exception):
    """The transaction does not fit; `reason` says which bound."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DuplicateTx(Exception):
    pass


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_txs: int = 200_000
    max_per_sender: int = 10_000
    max_sender_bytes: int = 8 * 1024 * 1024


class Mempool:
    def __init__(self, limits: MempoolLimits | None = None) -> None:
        self.limits = limits or MempoolLimits()
        self._by_hash: dict[bytes, tuple[Transaction, int]] = {}  # hash -> (tx, encoded size)
        self._queues: OrderedDict[bytes, deque[bytes]] = OrderedDict()  # signer -> hashes, FIFO
        self._bytes = 0
        self._sender_bytes: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def add(self, tx: Transaction, size: int | None = None, *, front: bool = False) -> None:
        """Queue `tx` (raises DuplicateTx or MempoolFull). `size`: its encoded length if known."""
        if tx.hash in self._by_hash:
            raise DuplicateTx(tx.hash.hex())
        n = len(tx.encode()) if size is None else size
        lim = self.limits
        if self._bytes + n > lim.max_bytes:
            raise MempoolFull("mempool byte limit reached")
        if len(self._by_hash) >= lim.max_txs:
            raise MempoolFull("mempool transaction limit reached")
        q = self._queues.get(tx.signer)
        if q is not None and len(q) >= lim.max_per_sender:
            raise MempoolFull("per-sender limit reached")
        if self._sender_bytes.get(tx.signer, 0) + n > lim.max_sender_bytes:
            raise MempoolFull("per-sender byte limit reached")
        if q is None:
            q = self._queues[tx.signer] = deque()
        if front:
            q.appendleft(tx.hash)
        else:
            q.append(tx.hash)
        self._by_hash[tx.hash] = (tx, n)
        self._bytes += n
        self._sender_bytes[tx.signer] = self._sender_bytes.get(tx.signer, 0) + n

    def get(self, tx_hash: bytes) -> Transaction | None:
        e = self._by_hash.get(tx_hash)
        return None if e is None else e[0]

    def pop_batch(
        self, max_count: int, max_bytes: int, *, per_tx_bytes: int = 0
    ) -> list[Transaction]:
        """Remove and return up to `max_count` txs / `max_bytes` bytes, fairly across senders.

        `per_tx_bytes` is charged on top of each transaction's encoded size (its framing
        inside a block), so the cut fits the block it becomes.
        """
        out: list[Transaction] = []
        used = 0
        while len(out) < max_count and self._queues:
            progressed = False
            for signer in list(self._queues):
                if len(out) >= max_count:
                    break
                q = self._queues[signer]
                tx, n = self._by_hash[q[0]]
                if used + n + per_tx_bytes > max_bytes:
                    continue
                q.popleft()
                del self._by_hash[tx.hash]
                self._bytes -= n
                self._debit(signer, n)
                used += n + per_tx_bytes
                out.append(tx)
                progressed = True
                # Served: this sender goes to the back, so the next cut starts after it.
                if q:
                    self._queues.move_to_end(signer)
                else:
                    del self._queues[signer]
            if not progressed:
                break
        return out

    def requeue(self, txs: list[Transaction]) -> None:
        """Put back transactions of a block that was not committed, ahead of newer ones."""
        for tx in reversed(txs):
            if tx.hash not in self._by_hash:
                with contextlib.suppress(MempoolFull):
                    self.add(tx, front=True)

    def remove(self, hashes: list[bytes]) -> int:
        """Drop transactions that were included in a committed block; returns how many."""
        dropped = 0
        for h in hashes:
            e = self._by_hash.pop(h, None)
            if e is None:
                continue
            tx, n = e
            self._bytes -= n
            self._debit(tx.signer, n)
            q = self._queues[tx.signer]
            q.remove(h)
            if not q:
                del self._queues[tx.signer]
            dropped += 1
        return dropped

    def clear(self) -> int:
        """Drop every queued transaction (e.g. on losing leadership); returns how many."""
        dropped = len(self._by_hash)
        self._by_hash.clear()
        self._queues.clear()
        self._sender_bytes.clear()
        self._bytes = 0
        return dropped

    def hashes(self) -> list[bytes]:
        """The hashes of every queued transaction, in the order they were added (a requeued
        transaction counts as added when it was put back); a snapshot, safe to mutate."""
        return list(self._by_hash)

    def _debit(self, signer: bytes, n: int) -> None:
        left = self._sender_bytes[signer] - n
        assert left >= 0, "per-sender byte accounting went negative"
        if left:
            self._sender_bytes[signer] = left
        else:
            del self._sender_bytes[signer]

    def prune_expired(self, now_ms: int) -> int:
        return self.remove([h for h, (tx, _) in self._by_hash.items() if tx.valid_until_ms < now_ms])

    def senders(self) -> int:
        return len(self._queues)
