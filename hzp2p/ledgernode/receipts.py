"""Verdicts and receipts: the one outcome type every interface hands a client.

Owns `Verdict` (committed | rejected | pending), `Receipt` (what a client is told about
one transaction) and `Refused` (why admission refused one). The admin socket renders a
`Receipt` with `as_dict()`; the simulator compares them field by field. A refusal is
told apart from a duplicate by a flag, never by its reason's text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from hzp2p.contracts.api import TxRejected
from hzp2p.contracts.engine import BlockResult, TxVerdict
from hzp2p.ledger.tx import TxError
from hzp2p.storage import TxRecord


class Verdict(enum.Enum):
    """A transaction's outcome as a client sees it."""

    COMMITTED = "committed"
    """In an applied block, and applied by the contract."""
    REJECTED = "rejected"
    """Refused at admission, or in an applied block and refused by the contract."""
    PENDING = "pending"
    """No final outcome yet (the wait ended first): ask again."""

    @property
    def final(self) -> bool:
        return self is not Verdict.PENDING


@dataclass(frozen=True, slots=True)
class Refused:
    """Why admission refused a transaction: its reason and each payload problem (field,
    reason). `duplicate`: it is already included or queued — not a refusal at all."""

    reason: str
    problems: tuple[tuple[str, str], ...] = ()
    duplicate: bool = False

    @staticmethod
    def of(exc: TxError | TxRejected) -> Refused:
        if isinstance(exc, TxRejected):
            problems = tuple((p.field, p.reason) for p in exc.problems)
            return Refused(exc.reason, problems, exc.duplicate)
        return Refused(str(exc) or type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a client is told about one transaction."""

    tx_hash: bytes
    """b"" when the request never became a transaction (it could not be decoded or signed)."""
    verdict: Verdict
    height: int | None = None
    index: int | None = None
    """Position in the block (0-based)."""
    reason: str | None = None
    tx_type: str | None = None
    problems: tuple[tuple[str, str], ...] | None = None
    """An admission refusal's payload problems (None: not an admission refusal)."""

    @staticmethod
    def pending(tx_hash: bytes) -> Receipt:
        return Receipt(tx_hash, Verdict.PENDING)

    @staticmethod
    def of_record(tx_hash: bytes, rec: TxRecord | None) -> Receipt:
        """The receipt of a stored verdict (pending when there is none)."""
        if rec is None:
            return Receipt.pending(tx_hash)
        committed = rec.status == "applied"
        return Receipt(tx_hash, Verdict.COMMITTED if committed else Verdict.REJECTED,
                       rec.height, rec.position, None if committed else rec.reason, rec.tx_type)

    @staticmethod
    def of_verdict(height: int, position: int, v: TxVerdict) -> Receipt:
        """The receipt of a verdict in an applied block (not for a duplicate's verdict)."""
        return Receipt(v.tx_hash, Verdict.COMMITTED if v.applied else Verdict.REJECTED,
                       height, position, None if v.applied else v.reason, v.tx_type)

    @staticmethod
    def refused(tx_hash: bytes, why: Refused, tx_type: str | None = None) -> Receipt:
        """An admission refusal's receipt."""
        return Receipt(tx_hash, Verdict.REJECTED, reason=why.reason, tx_type=tx_type,
                       problems=why.problems)

    def record(self) -> TxRecord | None:
        """The stored verdict this receipt reports (None unless it landed in a block)."""
        if self.height is None or self.index is None or not self.verdict.final:
            return None
        ok = self.verdict is Verdict.COMMITTED
        return TxRecord(self.tx_hash, self.height, self.index, self.tx_type or "",
                        "applied" if ok else "rejected", "" if ok else self.reason or "")

    def as_dict(self) -> dict[str, object]:
        """The admin socket's receipt shape."""
        out: dict[str, object] = {
            "tx_hash": self.tx_hash.hex() if self.tx_hash else None,
            "status": self.verdict.value,
            "height": self.height,
            "index": self.index,
            "reason": self.reason,
        }
        if self.problems is not None:
            problems: dict[str, str] = {}
            for field, reason in self.problems:
                key = field or "payload"
                problems[key] = f"{problems[key]}; {reason}" if key in problems else reason
            out["problems"] = problems
        if self.tx_type is not None:
            out["type"] = self.tx_type
        return out


def block_receipts(result: BlockResult) -> Iterator[Receipt]:
    """The receipts an applied block gives: one per transaction it decided (a second
    inclusion's duplicate verdict is not a receipt: the first inclusion's is)."""
    for pos, v in enumerate(result.verdicts):
        if not v.duplicate:
            yield Receipt.of_verdict(result.height, pos, v)
