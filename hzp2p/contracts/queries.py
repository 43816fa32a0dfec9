"""Read-only queries over committed contract state (pure functions of a StateReader).

What the admin socket and the CLI show: the chain head, institutions, a
proposal's status (an open proposal past its expiry reads as "expired"), the
membership change log, an epidemic report, a data set, where a
transaction landed, and a health code's life (the code in force, its history,
appeals, overdue appeals, published exposures, rule versions). Values come back as plain JSON-friendly dicts (bytes as hex).
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts import epi, members
from hzp2p.contracts.api import Institution, decode_value
from hzp2p.contracts.domain_queries import jsonable
from hzp2p.contracts.engine import read_head, rules_of, state_digest, tx_record
from hzp2p.contracts.state import Readable


def institution_json(inst: Institution) -> dict[str, Any]:
    return jsonable(members.inst_record(inst))  # type: ignore[no-any-return]


def head(reader: Readable) -> dict[str, Any]:
    h = read_head(reader)
    return {
        "height": h.height,
        "hash": h.hash.hex(),
        "timestamp_ms": h.timestamp_ms,
        "state_digest": state_digest(reader).hex(),
        "rules": rules_of(reader),
    }


def institution_list(reader: Readable, *, include_inactive: bool = True) -> list[dict[str, Any]]:
    return [
        institution_json(i)
        for i in members.institutions(reader)
        if include_inactive or i.active
    ]


def institution(reader: Readable, inst_id: int) -> dict[str, Any] | None:
    inst = members.get_institution(reader, inst_id)
    return None if inst is None else institution_json(inst)


def proposal_status(reader: Readable, proposal_id: int) -> dict[str, Any] | None:
    raw = reader.get(members.k_proposal(proposal_id))
    if raw is None:
        return None
    p = dict(decode_value(raw))
    if p["status"] == "open" and read_head(reader).timestamp_ms > p["expires_ms"]:
        p["status"] = "expired"
    p["votes_needed"] = max(0, p["threshold"] - len(p["yes"]))
    return jsonable(p)  # type: ignore[no-any-return]


def proposals(reader: Readable) -> list[dict[str, Any]]:
    out = []
    for k, _ in reader.scan(b"mem/p/"):
        s = proposal_status(reader, int(k[len(b"mem/p/") :]))
        assert s is not None
        out.append(s)
    return out


def membership_log(reader: Readable) -> list[dict[str, Any]]:
    return [
        {
            "seq": c.seq,
            "kind": c.kind,
            "inst_id": c.inst_id,
            "address": c.address,
            "node_key": c.node_key.hex(),
            "height": c.height,
            "proposal_id": c.proposal_id,
        }
        for c in members.membership_log(reader)
    ]


def epi_report(reader: Readable, report_id: str) -> dict[str, Any] | None:
    r = epi.get_report(reader, report_id)
    return None if r is None else jsonable(r)


def dataset(reader: Readable, dataset_id: str, version: int | None = None) -> dict[str, Any] | None:
    r = epi.get_dataset(reader, dataset_id, version)
    return None if r is None else jsonable(r)


def tx_status(reader: Readable, tx_hash: bytes) -> dict[str, Any] | None:
    """Where an included transaction landed (status applied | rejected), or None if unknown.

    Transactions rejected for a bad envelope (signature, chain id, window) are not
    recorded in state; their verdicts are stored with the block by storage.
    """
    r = tx_record(reader, tx_hash)
    if r is None:
        return None
    return {
        "tx_hash": tx_hash.hex(),
        "status": "applied" if r["applied"] else "rejected",
        "height": r["height"],
        "index": r["index"],
        "reason": r["reason"],
    }


def block_summary(raw_block: bytes, verdicts: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """`admin block HEIGHT` JSON: height, hash, prev_hash, merkle_root, proposer, timestamp, txs.

    `verdicts`: (status, reason) per transaction, as stored with the block (optional).
    """
    from hzp2p.ledger.block import decode_block

    b = decode_block(raw_block)
    h = b.header
    txs = []
    for i, tx in enumerate(b.txs):
        status, reason = verdicts[i] if verdicts is not None else ("committed", "")
        txs.append({"tx_hash": tx.hash.hex(), "type": tx.tx_type, "status": status, "reason": reason})
    return {
        "height": h.height,
        "hash": h.hash.hex(),
        "prev_hash": h.prev_hash.hex(),
        "merkle_root": h.merkle_root.hex(),
        "state_digest": h.state_digest.hex(),
        "proposer": h.proposer,
        "timestamp": h.timestamp_ms,
        "txs": txs,
    }


# ---------------------------------------------------------------- health codes (issue 17)


def health_code(reader: Readable, subject: str) -> dict[str, Any]:
    """`health-code SUBJECT` JSON: the code in force at the head's time (colour, source,
    reason, since_ms, cause_tx, rules_version, ...; a quarantine that ended shows green)."""
    from hzp2p.contracts import codelife

    return jsonable(codelife.effective_health_code(reader, subject))  # type: ignore[no-any-return]


def health_code_history(reader: Readable, subject: str) -> list[dict[str, Any]]:
    """`health-code SUBJECT --history` JSON: every event with its seq, reason and tx."""
    from hzp2p.contracts import codelife

    return jsonable(codelife.code_history(reader, subject))  # type: ignore[no-any-return]


def appeals(reader: Readable, subject: str) -> list[dict[str, Any]]:
    from hzp2p.contracts import codelife

    return jsonable(codelife.appeals(reader, subject))  # type: ignore[no-any-return]


def overdue_appeals(reader: Readable) -> list[dict[str, Any]]:
    """Appeals open longer than the rules' limit at the head's time (for watch and metrics)."""
    from hzp2p.contracts import codelife

    return jsonable(codelife.overdue_appeals(reader))  # type: ignore[no-any-return]


def exposures(reader: Readable) -> list[dict[str, Any]]:
    """Every published exposure (what apps download to match their check-ins locally)."""
    from hzp2p.contracts import exposure

    return jsonable(exposure.exposures(reader))  # type: ignore[no-any-return]


def rule_history(reader: Readable, name: str) -> list[dict[str, Any]]:
    """Every version of rule `name`, with activation heights and status at the head."""
    from hzp2p.contracts import rulebook

    return jsonable(rulebook.rule_history(reader, name))  # type: ignore[no-any-return]
