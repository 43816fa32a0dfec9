"""Certificates as a node's storage holds them: found in the blocks that carry them, statements rebuilt.

Runs on the database thread (`storage.call`): nothing here awaits. A
certificate for height h lives in a later block (version 2, hzp2p.ledger.block);
`find_certificate` looks for it in the next `window` blocks (in steady state it
is 1-3 blocks later; the scan stops at the first). `stored_statement` rebuilds the statement a voter signs
for a stored block (its verdicts as stored, the state digest after it from the
next block's header or the chain head), so a node can attest after a restart
and a receipt can be built long after the fact.
"""

from __future__ import annotations

from hzp2p.contracts.certify import VoterHistory, statement_of
from hzp2p.contracts.engine import read_head, state_digest
from hzp2p.contracts.storage_bridge import verdicts_of
from hzp2p.ledger.block import decode_header
from hzp2p.ledger.certificate import CertError, Statement, decode_certificate
from hzp2p.ledger.codec import CodecError, unpack
from hzp2p.ledger.genesis import Genesis
from hzp2p.storage import SyncStorage

FIND_WINDOW_BLOCKS = 1100
"""A leader certifies heights up to hzp2p.node.attest.KEEP_HEIGHTS (1024) blocks back."""


def carried_certs(raw: bytes) -> list[bytes]:
    """The certificates a stored block carries (without decoding its transactions)."""
    try:
        outer = unpack(raw, "block")
    except CodecError:
        return []
    if type(outer) is not list or len(outer) != 4 or type(outer[3]) is not list:
        return []
    return [c for c in outer[3] if type(c) is bytes]


def certified_heights(raw: bytes) -> list[int]:
    out = []
    for c in carried_certs(raw):
        try:
            out.append(decode_certificate(c).height)
        except CertError:
            continue
    return out


def find_certificate(
    s: SyncStorage, height: int, head_height: int, window: int = FIND_WINDOW_BLOCKS
) -> bytes | None:
    """The first stored certificate of block `height` (None if none in the window)."""
    found = find_certificate_carrier(s, height, head_height, window)
    return None if found is None else found[0]


def find_certificate_carrier(
    s: SyncStorage, height: int, head_height: int, window: int = FIND_WINDOW_BLOCKS
) -> tuple[bytes, int] | None:
    """The first stored certificate of block `height` and the height of the block carrying it."""
    lo, hi = height + 1, min(head_height, height + window)
    for a in range(lo, hi + 1, 64):
        for rec in s.blocks(a, min(hi + 1, a + 64)):
            for c in carried_certs(rec.raw):
                try:
                    if decode_certificate(c).height == height:
                        return c, rec.height
                except CertError:
                    continue
    return None


def stored_statement(
    s: SyncStorage, genesis: Genesis, history: VoterHistory, height: int
) -> Statement | None:
    """The statement for stored block `height` (None if the block or its successor's
    header is not stored, e.g. below a snapshot)."""
    rec = s.block_by_height(height)
    if rec is None:
        return None
    nxt = s.block_by_height(height + 1)
    if nxt is not None:
        digest = decode_header(_header_bytes(nxt.raw)).state_digest
    else:
        if read_head(s).height != height:
            return None
        digest = state_digest(s)
    verdicts = verdicts_of(s.block_txs(height))
    return statement_of(genesis.chain_id, height, rec.block_hash, digest, verdicts, history)


def _header_bytes(raw: bytes) -> bytes:
    outer = unpack(raw, "block")
    assert type(outer) is list and type(outer[0]) is bytes, "stored block is malformed"
    return bytes(outer[0])
