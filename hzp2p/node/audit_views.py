"""The auditors' view: who signed a transaction, what it carried (sizes, not secrets), its
verdict and certificate; and the transactions a node refused, with why.

Runs on the database thread (`storage.call`): nothing here awaits.

* `tx_details` / `block_details` add to `admin tx` / `admin block`: the signer (the
  institution a key belongs or belonged to, with its name and whether the key is still
  its current one; a key that is no member's is a citizen's, shown by pseudonym), the
  payload with every byte string other than a 32-byte key or hash shown as its length
  (`"<212 bytes>"`: ciphertexts, sealed keys, signatures never leave as bytes), and the
  block's quorum certificate (the institutions that signed it, of how many voters, and
  the block carrying it).
* `refused_page` is `admin refused`: transactions refused at admission on this node
  (the `refusals` table: local, never replicated, bounded) and transactions a block
  holds with a rejected verdict (on every node), merged newest first by time (the
  refusal's time, or the block's), filtered by a time range and paged by a cursor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hzp2p.contracts import members
from hzp2p.contracts.certify import VoterHistory
from hzp2p.contracts.engine import read_head
from hzp2p.crypto.records import pseudonym
from hzp2p.ledger.block import Block, decode_block, decode_header
from hzp2p.ledger.certificate import CertError, decode_certificate
from hzp2p.ledger.codec import unpack
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledger.tx import Transaction
from hzp2p.node.certstore import find_certificate_carrier
from hzp2p.storage import SyncStorage

SHOWN_BYTES = 32
"""Byte strings of this length (keys, hashes, commitments) are public and shown in hex."""
MAX_LIMIT = 1000
MAX_TIME_MS = 2**63 - 1


def redact(value: Any) -> Any:
    """A payload as an auditor sees it: bytes other than 32-byte keys and hashes become
    their length; everything else as it is (JSON-friendly)."""
    if isinstance(value, bytes):
        return value.hex() if len(value) == SHOWN_BYTES else f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def signer_view(s: SyncStorage, key: bytes) -> dict[str, Any]:
    inst = members.key_owner(s, key)
    if inst is None:
        return {"key": key.hex(), "citizen": pseudonym(key)}
    return {"key": key.hex(), "inst_id": inst.inst_id, "name": inst.name,
            "current_key": inst.signing_key == key}


def certificate_view(s: SyncStorage, genesis: Genesis, height: int) -> dict[str, Any] | None:
    """The block's quorum certificate as an auditor reads it (None: not certified yet)."""
    head = read_head(s).height
    found = find_certificate_carrier(s, height, head)
    if found is None:
        return None
    raw, carrier = found
    try:
        cert = decode_certificate(raw)
    except CertError as e:  # `verify` reports it; show it here too
        return {"carried_in": carrier, "problem": str(e)}
    voters = VoterHistory.from_state(genesis, s).at(height)
    known = [i for i in cert.signers if voters.get(i) is not None]
    return {"carried_in": carrier, "signer_ids": cert.signers,
            "signers": voters.names(known), "voters": len(voters.voters),
            "voter_names": voters.names(v.inst_id for v in voters.voters),
            "quorum": voters.quorum, "voters_hash": cert.voters_hash.hex()}


def tx_fields(s: SyncStorage, tx: Transaction) -> dict[str, Any]:
    return {"signer": signer_view(s, tx.signer), "payload": redact(dict(tx.payload)),
            "nonce": tx.nonce, "valid_from_ms": tx.valid_from_ms,
            "valid_until_ms": tx.valid_until_ms}


def tx_details(s: SyncStorage, genesis: Genesis, tx_hash: bytes) -> dict[str, Any]:
    """What `admin tx` adds for a transaction in a block ({} if it is in none here)."""
    rec = s.tx(tx_hash)
    if rec is None:
        return {}
    blk = s.block_by_height(rec.height)
    if blk is None:
        return {"audit_problem": f"block {rec.height} is not stored on this node (snapshot)"}
    tx = decode_block(blk.raw).txs[rec.position]
    assert tx.hash == tx_hash, "stored verdict does not match its block"
    return {**tx_fields(s, tx), "certificate": certificate_view(s, genesis, rec.height)}


def block_details(s: SyncStorage, genesis: Genesis, height: int) -> dict[str, Any]:
    """What `admin block` adds: the proposer's name, each transaction's signer and
    payload, the block's certificate and the certificates it carries."""
    blk = s.block_by_height(height)
    if blk is None:
        return {}
    b: Block = decode_block(blk.raw)
    proposer = members.get_institution(s, b.header.proposer)
    carried = []
    for raw in b.certs:
        try:
            c = decode_certificate(raw)
            carried.append({"height": c.height, "signer_ids": c.signers})
        except CertError as e:
            carried.append({"problem": str(e)})
    return {"proposer_name": proposer.name if proposer is not None else None,
            "tx_details": [tx_fields(s, tx) for tx in b.txs],
            "certificate": certificate_view(s, genesis, height),
            "carries_certificates": carried}


# ---------------------------------------------------------------- admin refused


def _block_time(s: SyncStorage, height: int, memo: dict[int, int]) -> int | None:
    if height not in memo:
        blk = s.block_by_height(height)
        if blk is None:
            return None
        outer = unpack(blk.raw, "block")
        assert type(outer) is list and type(outer[0]) is bytes, "stored block is malformed"
        memo[height] = decode_header(outer[0]).timestamp_ms
    return memo[height]


def _last_height_at_or_before(s: SyncStorage, t_ms: int, head: int, memo: dict[int, int]) -> int:
    """The highest height whose block time is <= t_ms (0 if none); block times never go
    back (hzp2p.contracts.verify), and a missing block (below a snapshot) counts as old."""
    lo, hi = 0, head
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ts = _block_time(s, mid, memo)
        if ts is None or ts <= t_ms:
            lo = mid
        else:
            hi = mid - 1
    return lo


def parse_cursor(text: str) -> tuple[int, bytes]:
    """`admin refused --after` cursors: "<at_ms>-<tx hash hex>" (as `next_after` gives)."""
    ms, _, h = text.partition("-")
    at, tx_hash = int(ms), bytes.fromhex(h)
    if not 0 <= at <= MAX_TIME_MS or len(tx_hash) != 32:
        raise ValueError("bad cursor")
    return at, tx_hash


def refused_page(
    s: SyncStorage, lo_ms: int, hi_ms: int, after: tuple[int, bytes] | None, limit: int
) -> dict[str, Any]:
    """`admin refused`: see the module docstring. `after` is the cursor of the last item
    already seen; answers `refused` (newest first) and `next_after` (None at the end)."""
    assert 0 < limit <= MAX_LIMIT, "limit out of range"
    if after is not None:
        hi_ms = min(hi_ms, after[0])
    items: list[dict[str, Any]] = []
    for r in s.refusals_page(lo_ms, hi_ms, after, limit + 1):
        items.append({"tx_hash": r.tx_hash.hex(), "type": r.tx_type, "reason": r.reason,
                      "problems": [list(p) for p in r.problems], "where": "admission",
                      "at_ms": r.at_ms, "height": None, "index": None})
    memo: dict[int, int] = {}
    head = read_head(s).height
    hi_h = _last_height_at_or_before(s, hi_ms, head, memo)
    lo_h = _last_height_at_or_before(s, lo_ms - 1, head, memo) + 1 if lo_ms > 0 else 1
    before: tuple[int, int] | None = None
    found = 0
    while hi_h >= lo_h and found <= limit:
        page = s.rejected_page(lo_h, hi_h, before, limit + 1)
        for t in page:
            ts = _block_time(s, t.height, memo)
            at = ts if ts is not None else 0
            if after is not None and (at, t.tx_hash) >= after:
                continue
            found += 1
            items.append({"tx_hash": t.tx_hash.hex(), "type": t.tx_type, "reason": t.reason,
                          "problems": [], "where": "block", "at_ms": at, "height": t.height,
                          "index": t.position})
        if len(page) <= limit:
            break
        before = (page[-1].height, page[-1].position)
    items.sort(key=lambda i: (i["at_ms"], i["tx_hash"]), reverse=True)
    more = len(items) > limit
    items = items[:limit]
    nxt = f"{items[-1]['at_ms']}-{items[-1]['tx_hash']}" if more and items else None
    return {"refused": items, "next_after": nxt,
            "note": "refusals at admission are this node's own (never replicated); "
                    "rejected verdicts are the chain's"}
