"""The `receipt` admin method: an offline receipt for a committed transaction, built from storage.

It gathers what hzp2p.ledger.receipt.build_receipt needs on the database
thread: where the transaction landed, its block and the block's stored verdicts,
the block's quorum certificate (found in the blocks after it,
hzp2p.node.certstore), and for every change of the voter set below that height
the certificate of the block that made it and the new set (the voter history is
rebuilt from the committed membership log). Answers
`{receipt: bytes, tx_hash, height, index, certified_by: [names], voters}`;
errors: `not_found` (unknown transaction), `unavailable` with a hint when the
block is not certified yet (retry in a moment) or when this node lacks the
blocks (it caught up from a snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hzp2p.admin.protocol import AdminError
from hzp2p.contracts.certify import VoterHistory
from hzp2p.contracts.engine import read_head
from hzp2p.contracts.storage_bridge import verdicts_of
from hzp2p.ledger.block import decode_block
from hzp2p.ledger.certificate import VoterSet
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledger.receipt import build_receipt, verify_receipt
from hzp2p.node.certstore import FIND_WINDOW_BLOCKS, find_certificate
from hzp2p.storage import AsyncStorage, SyncStorage


class _Missing(Exception):
    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def make_receipt(
    s: SyncStorage, genesis: Genesis, tx_hash: bytes, *, whole_tx: bool = True
) -> bytes:
    """The receipt bytes for `tx_hash` from a node's storage (database thread). Raises
    _Missing when it cannot be built (yet)."""
    rec = s.tx(tx_hash)
    if rec is None:
        raise _Missing("not_found", f"no committed transaction {tx_hash.hex()}", "")
    h = rec.height
    head = read_head(s).height
    blk = s.block_by_height(h)
    if blk is None:
        raise _Missing("unavailable", f"block {h} is not stored on this node",
                       "ask a node that holds the whole chain (this one caught up by a snapshot)")
    cert = find_certificate(s, h, head)
    if cert is None:
        if head - h > FIND_WINDOW_BLOCKS:
            raise _Missing("unavailable", f"block {h} has no certificate on this chain",
                           "blocks written with certification off are never certified")
        raise _Missing("unavailable", f"block {h} is not certified yet",
                       "retry in a moment: certificates ride in the next blocks")
    history = VoterHistory.from_state(genesis, s)
    changes: list[tuple[bytes, VoterSet]] = []
    for ch, voters in history.changes_below(h):
        c = find_certificate(s, ch, head)
        if c is None:
            raise _Missing("unavailable", f"block {ch} (a change of the voter set) is not "
                           "certified", "retry in a moment, or ask a node holding that block")
        changes.append((c, voters))
    block = decode_block(blk.raw)
    verdicts = [(v.tx_hash, v.tx_type, v.applied, v.reason)
                for v in verdicts_of(s.block_txs(h))]
    return build_receipt(genesis, block, verdicts, rec.position, cert, changes,
                         whole_tx=whole_tx).encode()


async def receipt(storage: AsyncStorage, genesis: Genesis, params: Mapping[str, Any]) -> Any:
    """The admin method (registered by hzp2p.node.handlers)."""
    tx_hash = bytes.fromhex(str(params["tx_hash"]))
    whole = not params.get("hash_only", False)
    try:
        data = await storage.call(
            lambda s: make_receipt(s, genesis, tx_hash, whole_tx=whole))
    except _Missing as exc:
        raise AdminError(exc.code, exc.message, hint=exc.hint or None) from None
    proven = verify_receipt(data, genesis)  # what we hand out must verify
    return {"receipt": data, "tx_hash": tx_hash.hex(), "height": proven.height,
            "index": proven.index, "verdict": proven.verdict,
            "certified_by": list(proven.signers), "voters": proven.voters,
            "bytes": len(data)}
