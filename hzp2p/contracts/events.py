"""What happened in a committed block, as events people watch (`hzp2p admin watch`).

A pure function of a stored block, its stored verdicts and the committed state: one
`block` event, then one event per notable transaction — `refused` (a transaction the
contracts rejected), `quarantine` (a lot quarantined by its readings), `recall`,
`release`, `code` (a health-code change: a lab result, an authority's decision, a
declared exposure, a recovery, an appeal's correction, or a quarantine that ended and
was written by this transaction — each with its reason), `appeal` (opened or resolved),
`member` (a membership or rule-version proposal or vote).
Events carry ids, pseudonyms and reasons, never a payload's personal fields (there are
none in the clear; records stay ciphertext and are not shown). Events are read from
state at the *current* head for lots and codes, so a later change shows the later value;
the height and transaction hash say when the event happened.
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts.state import Readable
from hzp2p.crypto.records import pseudonym
from hzp2p.ledger.block import decode_block

TYPES = ("block", "refused", "quarantine", "recall", "release", "code", "appeal", "member")
CODE_TXS = (
    "lab.result",
    "healthcode.set",
    "recovery.record",
    "exposure.declare",
    "healthcode.appeal",
    "healthcode.resolve",
)
"""Transactions that may change a health code (the citizen-signed ones name no subject:
it is the signer's pseudonym)."""


def block_events(
    reader: Readable, raw_block: bytes, verdicts: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The events of one block; `verdicts` are (status, reason) per transaction as stored."""
    b = decode_block(raw_block)
    h = b.header
    out: list[dict[str, Any]] = [{
        "type": "block", "height": h.height, "hash": b.hash.hex(), "proposer": h.proposer,
        "timestamp_ms": h.timestamp_ms, "txs": len(b.txs),
        "refused": sum(1 for s, _ in verdicts if s != "committed"),
    }]
    for tx, (status, reason) in zip(b.txs, verdicts, strict=False):
        base = {"height": h.height, "tx_hash": tx.hash.hex(), "tx_type": tx.tx_type}
        if status != "committed":
            out.append({"type": "refused", **base, "reason": reason})
            continue
        p = tx.payload
        if tx.tx_type == "coldchain.readings":
            lot = dq.lot(reader, str(p.get("lot_id")))
            ev = (lot or {}).get("quarantine") or {}
            if ev.get("tx_hash") == tx.hash:
                out.append({"type": "quarantine", **base, "lot_id": p["lot_id"],
                            "temp_centi_c": ev.get("temp_centi_c"), "t_ms": ev.get("t_ms"),
                            "allowed_centi_c": ev.get("allowed_centi_c")})
        elif tx.tx_type in ("lot.recall", "lot.release"):
            out.append({"type": tx.tx_type.split(".")[1], **base, "lot_id": p.get("lot_id"),
                        "reason": p.get("reason")})
        elif tx.tx_type in CODE_TXS:
            subject = str(p.get("subject") or pseudonym(tx.signer))
            for e in dq.health_code_history(reader, subject):
                if e.get("tx_hash") != tx.hash:
                    continue
                if e.get("changed"):
                    out.append({"type": "code", **base, "subject": subject,
                                "colour": e.get("colour"), "event": e.get("event"),
                                "reason": e.get("reason", "")})
                if e.get("event") in ("healthcode.appeal", "healthcode.resolve"):
                    out.append({"type": "appeal", **base, "subject": subject,
                                "appeal_id": e.get("appeal_id"),
                                "outcome": e.get("outcome", "open")})
        elif tx.tx_type in ("member.propose", "member.vote", "rules.propose"):
            out.append({"type": "member", **base})
    return out
