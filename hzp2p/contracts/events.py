"""What happened in a committed block, as events people watch (`hzp2p admin watch`).

A pure function of a stored block, its stored verdicts and the committed state: one
`block` event, then one event per notable transaction — `refused` (a transaction the
contracts rejected), `quarantine` (a lot quarantined by its readings), `recall`,
`release`, `code` (a health-code change: a lab result, an authority's decision, a
declared exposure, a recovery, an appeal's correction, or a quarantine that ended and
was written by this transaction — each with its reason), `appeal` (opened or resolved),
`member` (a membership or rule-version proposal or vote).

Some events are not caused by a transaction but by time passing, judged on block time
(`time_events`): `overdue` at the first block whose time is past a monitored lot's
reading deadline (hzp2p.contracts.coldchain.readings_due, from the readings recorded up
to that block), and `appeal_overdue` at the first block whose time is past an open
appeal's limit (the rules' `appeal_limit_days`; an appeal resolved since is no longer
listed). A node adds its own, local events to the stream (`handover_failed`: a key
hand-over its daemon could not complete; hzp2p.node.handover).
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

TYPES = ("block", "refused", "quarantine", "recall", "release", "code", "appeal", "member",
         "overdue", "appeal_overdue", "handover_failed")
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


TimeCache = dict[str, Any]
"""What `time_events` reads once per watch request (monitored lots and their readings)."""


def time_events(
    reader: Readable, height: int, timestamp_ms: int, prev_timestamp_ms: int, cache: TimeCache
) -> list[dict[str, Any]]:
    """The events of block `height` caused by time passing from the previous block's time to
    its own (see the module docstring); `cache` is shared across the blocks of one request."""
    from hzp2p.contracts import codelife, coldchain  # their layouts are theirs

    out: list[dict[str, Any]] = []
    if "lots" not in cache:
        lots = []
        for mon in coldchain.monitored_lots(reader):
            lot = dq.lot(reader, mon["lot_id"])
            if lot is not None:
                pairs = [(r["height"], r["t_ms"])
                         for r in dq.temperature_history(reader, mon["lot_id"])]
                lots.append((lot, pairs))
        cache["lots"] = lots
    for lot, pairs in cache["lots"]:
        now = coldchain.overdue(reader, lot, timestamp_ms, pairs, height)
        if now is None or not now["overdue"] or now["height"] > height:
            continue
        before = coldchain.overdue(reader, lot, prev_timestamp_ms, pairs, height - 1)
        if before is not None and before["overdue"] and now["height"] < height:
            continue  # already overdue at the previous block
        out.append({"type": "overdue", "height": height, "timestamp_ms": timestamp_ms,
                    "lot_id": lot["lot_id"], "interval_ms": now["interval_ms"],
                    "last_t_ms": now["last_t_ms"], "due_ms": now["due_ms"]})
    before_ids = {(a["subject"], a["appeal_id"])
                  for a in codelife.overdue_appeals(reader, prev_timestamp_ms)}
    for a in codelife.overdue_appeals(reader, timestamp_ms):
        if (a["subject"], a["appeal_id"]) not in before_ids:
            out.append({"type": "appeal_overdue", "height": height, "timestamp_ms": timestamp_ms,
                        "subject": a["subject"], "appeal_id": a["appeal_id"],
                        "open_ms": a["open_ms"]})
    return out
