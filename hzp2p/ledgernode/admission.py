"""Admission: whether a transaction may go (on) towards a block, and into the mempool.

It owns the two decisions every node takes on the way in, for the daemon's Trio
shell (hzp2p.node.submit, on its database thread) and for LedgerNode alike:
`precheck` (the contract's pre-check against the applied state: a refusal, a
duplicate, or fine) and `enqueue` (the leader's duplicate checks against what is
queued or in a proposed block, then the mempool's bounds).
"""

from __future__ import annotations

from collections.abc import Container

from hzp2p.contracts.api import TxRejected
from hzp2p.contracts.engine import precheck_tx
from hzp2p.contracts.state import Readable
from hzp2p.ledger.mempool import DuplicateTx, Mempool, MempoolFull
from hzp2p.ledger.tx import Transaction, TxError
from hzp2p.ledgernode.receipts import Refused

IN_A_PROPOSED_BLOCK = Refused("in a proposed block", duplicate=True)
ALREADY_QUEUED = Refused("already queued", duplicate=True)


def precheck(reader: Readable, tx: Transaction, chain_id: str, now_ms: int) -> Refused | None:
    """None: it may pass; else why not (`duplicate`: already included, not a refusal)."""
    try:
        precheck_tx(reader, tx, chain_id, now_ms)
    except (TxError, TxRejected) as exc:
        return Refused.of(exc)
    return None


def enqueue(tx: Transaction, mempool: Mempool, inflight: Container[bytes],
            size: int | None = None, *, check_inflight: bool = True) -> Refused | None:
    """Into the leader's mempool. None: queued now; else a `duplicate` Refused saying why
    not (in a proposed block, already queued, mempool full: the origin sends it again)."""
    if check_inflight and tx.hash in inflight:
        return IN_A_PROPOSED_BLOCK
    try:
        mempool.add(tx, size)
    except DuplicateTx:
        return ALREADY_QUEUED
    except MempoolFull as exc:
        return Refused(exc.reason, duplicate=True)
    return None
