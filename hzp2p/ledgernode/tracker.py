"""The submit tracker: where each transaction a client submitted on this node stands.

It owns one explicit state per tracked transaction hash, h11-style: every event is a
transition in `TRANSITIONS`, and an event the table does not allow is a broken invariant
(`InvalidTransition`), not a silent no-op.

    received -> checked -> queued (this node leads: in its mempool)
                        -> forwarded (sent to the leader)
    queued | forwarded -> proposed (in a block this node proposed)
    any live state -> checked (leader change, refused block: send it again)
    any live state -> landed (an applied block decided it) | refused (admission said no)
                    | expired (the client's wait ended first: it is told "pending")

`landed`, `refused` and `expired` are final: the entry then holds the client's
`Receipt` until the waiter takes it. Several waiters may wait on one hash (the same
request sent twice): the entry lives until the last of them lets go.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hzp2p.ledgernode.receipts import Receipt, Refused, Verdict

MAX_TRACKED = 65536
"""Bound on tracked transactions; beyond it the oldest final entries are dropped first."""


class TxState(enum.Enum):
    RECEIVED = "received"
    CHECKED = "checked"
    QUEUED = "queued"
    FORWARDED = "forwarded"
    PROPOSED = "proposed"
    LANDED = "landed"
    REFUSED = "refused"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({TxState.LANDED, TxState.REFUSED, TxState.EXPIRED})
_ENDS = frozenset({TxState.LANDED, TxState.REFUSED, TxState.EXPIRED})

TRANSITIONS: dict[TxState, frozenset[TxState]] = {
    TxState.RECEIVED: frozenset({TxState.CHECKED}) | _ENDS,
    TxState.CHECKED: frozenset({TxState.CHECKED, TxState.QUEUED, TxState.FORWARDED}) | _ENDS,
    TxState.QUEUED: frozenset({TxState.QUEUED, TxState.FORWARDED, TxState.PROPOSED,
                               TxState.CHECKED}) | _ENDS,
    TxState.FORWARDED: frozenset({TxState.FORWARDED, TxState.QUEUED, TxState.PROPOSED,
                                  TxState.CHECKED}) | _ENDS,
    TxState.PROPOSED: frozenset({TxState.PROPOSED, TxState.CHECKED, TxState.QUEUED,
                                 TxState.FORWARDED}) | _ENDS,
    TxState.LANDED: frozenset(),
    TxState.REFUSED: frozenset(),
    TxState.EXPIRED: frozenset(),
}
"""state -> the states an event may move it to (re-sending keeps queued/forwarded)."""


class InvalidTransition(AssertionError):
    """An event the state table does not allow: a bug in the caller, not bad input."""


@dataclass(slots=True)
class Tracked:
    tx_hash: bytes
    state: TxState = TxState.RECEIVED
    receipt: Receipt | None = None
    """Set on entering a final state."""
    waiters: int = 1
    sends: int = 0
    """Times it was sent towards a leader (queued or forwarded)."""


class SubmitTracker:
    """The tracked transactions of one node; see the module docstring."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self._txs: OrderedDict[bytes, Tracked] = OrderedDict()
        self.max_tracked = max_tracked
        self.landed_count = 0
        self.refused_count = 0
        self.expired_count = 0

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def __len__(self) -> int:
        return len(self._txs)

    def state(self, tx_hash: bytes) -> TxState | None:
        t = self._txs.get(tx_hash)
        return None if t is None else t.state

    def live(self) -> Iterator[bytes]:
        """Hashes not in a final state."""
        return (h for h, t in self._txs.items() if not t.state.final)

    def _move(self, t: Tracked, to: TxState) -> None:
        if to not in TRANSITIONS[t.state]:
            raise InvalidTransition(f"tx {t.tx_hash.hex()[:16]}: {t.state.value} -> {to.value}")
        t.state = to

    # ---------------------------------------------------------------- events
    def received(self, tx_hash: bytes) -> Tracked:
        """A client submitted `tx_hash` here (another waiter joins a live entry; a final
        entry nobody took is replaced: this is a new request)."""
        t = self._txs.get(tx_hash)
        if t is not None and not t.state.final:
            t.waiters += 1
            return t
        t = Tracked(tx_hash)
        self._txs[tx_hash] = t
        self._bound()
        return t

    def checked(self, tx_hash: bytes) -> None:
        t = self._txs.get(tx_hash)
        if t is not None and t.state is TxState.RECEIVED:
            self._move(t, TxState.CHECKED)

    def sent(self, tx_hash: bytes, *, queued: bool) -> None:
        """Sent towards the leader: into this node's own mempool (`queued`) or forwarded."""
        t = self._txs.get(tx_hash)
        if t is None or t.state.final:
            return
        if t.state is TxState.RECEIVED:
            self._move(t, TxState.CHECKED)
        self._move(t, TxState.QUEUED if queued else TxState.FORWARDED)
        t.sends += 1

    def proposed(self, hashes: Iterable[bytes]) -> None:
        """This node proposed a block carrying `hashes` (the tracked ones move)."""
        txs = self._txs
        for h in hashes:
            t = txs.get(h)
            if t is not None and t.state in (TxState.QUEUED, TxState.FORWARDED):
                self._move(t, TxState.PROPOSED)

    def resend_all(self) -> list[bytes]:
        """The leader changed, or a block was refused: every live entry is to be sent
        again; returns their hashes."""
        out: list[bytes] = []
        for t in self._txs.values():
            if t.state in (TxState.QUEUED, TxState.FORWARDED, TxState.PROPOSED):
                self._move(t, TxState.CHECKED)
            if not t.state.final:
                out.append(t.tx_hash)
        return out

    def landed(self, receipt: Receipt) -> bool:
        """An applied block decided a tracked transaction (True if it was tracked and live)."""
        assert receipt.verdict.final and receipt.height is not None
        t = self._txs.get(receipt.tx_hash)
        if t is None or t.state.final:
            return False
        self._move(t, TxState.LANDED)
        t.receipt = receipt
        self.landed_count += 1
        return True

    def refused(self, tx_hash: bytes, why: Refused, tx_type: str | None = None) -> bool:
        """Admission refused it (here or on the leader); True if it was tracked and live."""
        t = self._txs.get(tx_hash)
        if t is None or t.state.final:
            return False
        self._move(t, TxState.REFUSED)
        t.receipt = Receipt.refused(tx_hash, why, tx_type)
        self.refused_count += 1
        return True

    def expired(self, tx_hash: bytes) -> Receipt:
        """The client's wait ended without a verdict: it is told "pending"."""
        t = self._txs.get(tx_hash)
        if t is not None and not t.state.final:
            self._move(t, TxState.EXPIRED)
            t.receipt = Receipt.pending(tx_hash)
            self.expired_count += 1
        return Receipt.pending(tx_hash)

    # ---------------------------------------------------------------- outcomes
    def outcome(self, tx_hash: bytes) -> Receipt | None:
        """The final receipt, if the entry is final (it stays until released)."""
        t = self._txs.get(tx_hash)
        if t is None or not t.state.final:
            return None
        return t.receipt

    def take(self, tx_hash: bytes, verdict: Verdict | None = None) -> Receipt | None:
        """The final receipt (of `verdict` only, when given), releasing this waiter's hold."""
        r = self.outcome(tx_hash)
        if r is None or (verdict is not None and r.verdict is not verdict):
            return None
        self.release(tx_hash)
        return r

    def release(self, tx_hash: bytes) -> None:
        """One waiter stops waiting for `tx_hash`."""
        t = self._txs.get(tx_hash)
        if t is None:
            return
        t.waiters -= 1
        if t.waiters <= 0:
            del self._txs[tx_hash]

    def _bound(self) -> None:
        txs = self._txs
        if len(txs) <= self.max_tracked:
            return
        for h in [h for h, t in txs.items() if t.state.final][: len(txs) - self.max_tracked]:
            del txs[h]
        while len(txs) > self.max_tracked:
            txs.popitem(last=False)
