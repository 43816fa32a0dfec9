"""The ledger-level checkers of `hzp2p fuzz`: receipts, double application, state digests.

Owns three properties of the production ledger node (hzp2p.ledgernode) run on every
simulated node:

* "receipt differs from the applied verdict": every final receipt a client got names
  the height, position and verdict with which its transaction was applied (checked as
  soon as both are known, and for all of them at the end of the run); an admission
  refusal's transaction is never applied;
* "tx applied twice": no transaction is in two applied blocks (a second inclusion is
  a duplicate verdict of the engine, which the node's admission must prevent);
* "state digest differs at equal height": every node that applied height H has the
  same block and the same state digest after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hzp2p.ledgernode.node import Applied
from hzp2p.ledgernode.receipts import Receipt, Verdict
from hzp2p.raft.types import NodeId
from hzp2p.sim.checkers import Violation


@dataclass(frozen=True, slots=True)
class _Landing:
    height: int
    index: int
    applied: bool
    reason: str


class LedgerChecks:
    """See the module docstring."""

    def __init__(self) -> None:
        self._heights: dict[int, tuple[bytes, bytes, NodeId]] = {}
        """height -> (block hash, state digest after, first node that applied it)"""
        self._landed: dict[bytes, _Landing] = {}
        self._receipts: dict[bytes, tuple[int, Receipt]] = {}
        """tx hash -> (client, final receipt it got): checked again at the end."""
        self.receipts_checked = 0
        self.block_applies = 0

    @property
    def blocks_applied(self) -> int:
        """Distinct blocks applied (the chain's height)."""
        return len(self._heights)

    def on_block(self, node: NodeId, applied: Applied, digest_after: bytes) -> None:
        result = applied.result
        if result is None:
            return  # refused: every node refuses it alike (the log checkers compare entries)
        self.block_applies += 1
        block = applied.block
        height = block.height
        seen = self._heights.get(height)
        if seen is None:
            self._heights[height] = (block.hash, digest_after, node)
        elif seen[:2] != (block.hash, digest_after):
            what = "block" if seen[0] != block.hash else "state digest"
            raise Violation(
                "state digest differs at equal height",
                f"node {node} applied height {height} with {what} "
                f"{(block.hash if seen[0] != block.hash else digest_after).hex()[:16]} but node "
                f"{seen[2]} has {(seen[0] if seen[0] != block.hash else seen[1]).hex()[:16]}",
            )
        for pos, v in enumerate(result.verdicts):
            first = self._landed.get(v.tx_hash)
            if v.duplicate:
                where = f"height {first.height}" if first is not None else "an earlier block"
                raise Violation(
                    "tx applied twice",
                    f"tx {v.tx_hash.hex()[:16]} was included again at height {height} "
                    f"(position {pos}) after landing at {where}",
                )
            landing = _Landing(height, pos, v.applied, v.reason)
            if first is None:
                self._landed[v.tx_hash] = landing
                got = self._receipts.get(v.tx_hash)
                if got is not None:
                    self._compare(got[0], got[1], landing)
            elif first != landing:
                raise Violation(
                    "tx applied twice",
                    f"tx {v.tx_hash.hex()[:16]} landed at height {first.height} position "
                    f"{first.index} and at height {height} position {pos}",
                )

    def on_receipt(self, client: int, r: Receipt) -> None:
        """A client got a final receipt."""
        if not r.verdict.final:
            return
        self.receipts_checked += 1
        self._receipts[r.tx_hash] = (client, r)
        landing = self._landed.get(r.tx_hash)
        if landing is not None:
            self._compare(client, r, landing)

    def _compare(self, client: int, r: Receipt, landing: _Landing) -> None:
        if r.height is None:  # refused at admission, yet applied
            if landing.applied:
                raise Violation(
                    "receipt differs from the applied verdict",
                    f"client {client} was told tx {r.tx_hash.hex()[:16]} was refused "
                    f"({r.reason}) but it was applied at height {landing.height}",
                )
            return
        ok = r.verdict is Verdict.COMMITTED
        if (r.height, r.index, ok) != (landing.height, landing.index, landing.applied):
            raise Violation(
                "receipt differs from the applied verdict",
                f"client {client} got {r.verdict.value} at height {r.height} position "
                f"{r.index} for tx {r.tx_hash.hex()[:16]}, but it was "
                f"{'applied' if landing.applied else 'rejected'} at height {landing.height} "
                f"position {landing.index}",
            )

    def check_end(self) -> None:
        """Every receipt that names a block names one that was applied."""
        for h, (client, r) in sorted(self._receipts.items()):
            if r.height is not None and h not in self._landed:
                raise Violation(
                    "receipt differs from the applied verdict",
                    f"client {client} got {r.verdict.value} at height {r.height} for tx "
                    f"{h.hex()[:16]}, which no node ever applied",
                )
