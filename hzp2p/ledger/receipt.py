"""Offline transaction receipts: a self-contained proof a citizen can check with the genesis alone.

A receipt is one canonical msgpack array (any other encoding of the same values
is refused, so no byte of a receipt can change without failing):

    [1, chain_id, genesis_hash,
     tx,              # the transaction's wire bytes, or [tx_hash, signature] (hash only)
     verdict,         # [tx_type, applied, reason]
     index, tx_siblings, result_siblings,
     header,          # the block header's canonical bytes
     certificate,     # the quorum certificate of that block (hzp2p.ledger.certificate)
     changes]         # [[certificate, new voter set entries], ...] genesis -> that height

`verify_receipt(data, genesis)` checks, with no network: the chain id and the
genesis hash; the chain of voter-set changes from the genesis voters (each
change's certificate signed by a majority of the set before it, its
`next_voters_hash` the new set, heights increasing and below the block's); the
transaction (its signature, when the whole transaction is included), its Merkle
path to the header's root, its verdict's path to the certificate's verdicts
root; the certificate is for this header and signed by a majority of the voter
set in force at that height. It returns what was proven, or raises
`ReceiptError` saying why not.

Selective disclosure of payload fields is not possible with this transaction
format: the transaction hash commits to the whole body, so a field can only be
proven by revealing the body (personal fields there are ciphertexts already). A
receipt therefore carries either the whole transaction or only its hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hzp2p.ledger.block import Block, BlockError, decode_header, verify_inclusion
from hzp2p.ledger.certificate import (
    CertError,
    VoterSet,
    check_statement,
    decode_certificate,
    genesis_voters,
    result_leaf,
    verify_certificate,
)
from hzp2p.ledger.codec import CodecError, FieldError, pack, unpack
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledger.merkle import MerkleProof, merkle_proof, verify_proof
from hzp2p.ledger.tx import Transaction, TxError, decode_tx

RECEIPT_VERSION = 1
MAX_RECEIPT_BYTES = 1 << 20
MAX_CHANGES = 4096
MAX_SIBLINGS = 64


class ReceiptError(FieldError):
    """A receipt is malformed or does not prove what it claims; the message says why."""

    PREFIX = "receipt "


@dataclass(frozen=True, slots=True)
class Receipt:
    chain_id: str
    genesis_hash: bytes
    tx: bytes | tuple[bytes, bytes]  # wire bytes, or (tx_hash, signature)
    tx_type: str
    applied: bool
    reason: str
    index: int
    tx_siblings: tuple[bytes, ...]
    result_siblings: tuple[bytes, ...]
    header: bytes
    certificate: bytes
    changes: tuple[tuple[bytes, list[list[object]]], ...]

    def encode(self) -> bytes:
        tx: object = self.tx if isinstance(self.tx, bytes) else list(self.tx)
        return pack([RECEIPT_VERSION, self.chain_id, self.genesis_hash, tx,
                     [self.tx_type, self.applied, self.reason], self.index,
                     list(self.tx_siblings), list(self.result_siblings), self.header,
                     self.certificate, [[c, e] for c, e in self.changes]])


@dataclass(frozen=True, slots=True)
class Proven:
    """What a valid receipt proves."""

    chain_id: str
    tx_hash: bytes
    tx_type: str
    applied: bool
    reason: str
    height: int
    index: int
    block_hash: bytes
    timestamp_ms: int
    signers: tuple[str, ...]  # institution names, by id
    signer_ids: tuple[int, ...]
    voters: int
    transaction: Transaction | None  # when the receipt carries the whole transaction

    @property
    def verdict(self) -> str:
        return "accepted" if self.applied else "rejected"

    def sentence(self) -> str:
        why = "" if self.applied else f" ({self.reason})"
        return (f"transaction {self.tx_hash.hex()}, verdict {self.verdict}{why}, in block "
                f"{self.height} of chain {self.chain_id}, certified by institutions "
                f"{', '.join(self.signers)} ({len(self.signers)} of {self.voters} voters)")

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "ok": True, "chain_id": self.chain_id, "tx_hash": self.tx_hash.hex(),
            "type": self.tx_type, "verdict": self.verdict, "reason": self.reason or None,
            "height": self.height, "index": self.index, "block_hash": self.block_hash.hex(),
            "timestamp_ms": self.timestamp_ms, "certified_by": list(self.signers),
            "certified_by_ids": list(self.signer_ids), "voters": self.voters,
        }
        if self.transaction is not None:
            out["signer_key"] = self.transaction.signer.hex()
        return out


def _siblings(v: object, name: str) -> tuple[bytes, ...]:
    if type(v) is not list or len(v) > MAX_SIBLINGS or any(
        type(s) is not bytes or len(s) != 32 for s in v
    ):
        raise ReceiptError(name, f"must be a list of at most {MAX_SIBLINGS} 32-byte hashes")
    return tuple(v)


def decode_receipt(data: bytes) -> Receipt:
    """Parse a receipt's canonical bytes (structure only)."""
    if type(data) is not bytes or len(data) > MAX_RECEIPT_BYTES:
        raise ReceiptError("file", f"must be at most {MAX_RECEIPT_BYTES} bytes")
    try:
        f = unpack(data, "receipt")
    except CodecError as e:
        raise ReceiptError("encoding", e.problem) from None
    if type(f) is not list or len(f) != 11:
        raise ReceiptError("encoding", "must be an array of 11 fields")
    if type(f[0]) is not int or f[0] != RECEIPT_VERSION:
        raise ReceiptError("version", f"unsupported version {f[0]!r}")
    if type(f[1]) is not str or type(f[2]) is not bytes or len(f[2]) != 32:
        raise ReceiptError("chain", "bad chain id or genesis hash")
    tx = f[3]
    if type(tx) is list:
        if len(tx) != 2 or any(type(x) is not bytes for x in tx) or len(tx[0]) != 32 or len(
            tx[1]
        ) != 64:
            raise ReceiptError("tx", "must be the transaction, or [32-byte hash, 64-byte signature]")
        tx_field: bytes | tuple[bytes, bytes] = (tx[0], tx[1])
    elif type(tx) is bytes:
        tx_field = tx
    else:
        raise ReceiptError("tx", "must be the transaction, or [hash, signature]")
    v = f[4]
    if (type(v) is not list or len(v) != 3 or type(v[0]) is not str or type(v[1]) is not bool
            or type(v[2]) is not str):
        raise ReceiptError("verdict", "must be [type, applied, reason]")
    if type(f[5]) is not int or f[5] < 0:
        raise ReceiptError("index", "must be a non-negative integer")
    if type(f[8]) is not bytes or type(f[9]) is not bytes:
        raise ReceiptError("encoding", "header and certificate must be bin")
    ch = f[10]
    if type(ch) is not list or len(ch) > MAX_CHANGES or any(
        type(c) is not list or len(c) != 2 or type(c[0]) is not bytes for c in ch
    ):
        raise ReceiptError("changes", "must be a list of [certificate, voter set]")
    r = Receipt(f[1], f[2], tx_field, v[0], v[1], v[2], f[5], _siblings(f[6], "tx_path"),
                _siblings(f[7], "verdict_path"), f[8], f[9],
                tuple((c[0], c[1]) for c in ch))
    if r.encode() != data:
        raise ReceiptError("encoding", "not the canonical encoding")
    return r


def verify_receipt(data: bytes, genesis: Genesis) -> Proven:
    """Check a receipt against the genesis alone; see the module docstring."""
    r = decode_receipt(data)
    if r.chain_id != genesis.chain_id:
        raise ReceiptError("chain", f"is for chain {r.chain_id!r}, not {genesis.chain_id!r}")
    if r.genesis_hash != genesis.hash:
        raise ReceiptError("chain", "names a different genesis")
    try:
        header = decode_header(r.header)
    except BlockError as e:
        raise ReceiptError("header", str(e)) from None
    h = header.height
    voters = genesis_voters(genesis)
    last = 0
    try:
        for i, (raw, entries) in enumerate(r.changes):
            c = decode_certificate(raw)
            if not last < c.height < h:
                raise ReceiptError(f"changes[{i}]", "heights must increase and stay below the "
                                   "receipt's block")
            verify_certificate(c, r.chain_id, voters)
            new = VoterSet.from_entries(entries)
            if c.next_voters_hash != new.hash:
                raise ReceiptError(f"changes[{i}]", f"the voter set after block {c.height} is "
                                   "not the one its certificate names")
            voters, last = new, c.height
        cert = decode_certificate(r.certificate)
        if cert.height != h:
            raise ReceiptError("certificate", f"is for height {cert.height}, not the block's {h}")
        check_statement(cert, block_hash=header.hash)
        verify_certificate(cert, r.chain_id, voters)
    except CertError as e:
        raise ReceiptError("certificate", str(e)) from None
    tx: Transaction | None = None
    if isinstance(r.tx, bytes):
        try:
            tx = decode_tx(r.tx)
            tx.verify()
        except TxError as e:
            raise ReceiptError("tx", str(e)) from None
        if tx.chain_id != r.chain_id:
            raise ReceiptError("tx", "signed for another chain")
        if tx.tx_type != r.tx_type:
            raise ReceiptError("verdict", "type differs from the transaction's")
        tx_hash, signature = tx.hash, tx.signature
    else:
        tx_hash, signature = r.tx
    proof = MerkleProof(r.index, header.tx_count, r.tx_siblings)
    if not verify_inclusion(header, tx_hash, signature, proof):
        raise ReceiptError("tx_path", f"the transaction is not at index {r.index} of block {h}")
    leaf = result_leaf(tx_hash, r.tx_type, r.applied, r.reason)
    if not verify_proof(cert.results_root, leaf,
                        MerkleProof(r.index, header.tx_count, r.result_siblings)):
        raise ReceiptError("verdict_path", "the verdict is not the one the voters certified")
    return Proven(r.chain_id, tx_hash, r.tx_type, r.applied, r.reason, h, r.index, header.hash,
                  header.timestamp_ms, tuple(voters.names(cert.signers)), tuple(cert.signers),
                  len(voters.voters), tx)


def build_receipt(
    genesis: Genesis,
    block: Block,
    verdicts: Sequence[tuple[bytes, str, bool, str]],
    index: int,
    certificate: bytes,
    changes: Sequence[tuple[bytes, VoterSet]],
    *,
    whole_tx: bool = True,
) -> Receipt:
    """The receipt for transaction `index` of `block` (its verdicts in block order, the
    block's certificate, and (certificate, new set) of every voter-set change below it)."""
    assert 0 <= index < len(block.txs) == len(verdicts), "index out of range"
    tx = block.txs[index]
    tx_hash, tx_type, applied, reason = verdicts[index]
    assert tx_hash == tx.hash, "verdicts are not the block's"
    leaves = [result_leaf(*v) for v in verdicts]
    return Receipt(
        genesis.chain_id, genesis.hash, tx.encode() if whole_tx else (tx.hash, tx.signature),
        tx_type, applied, reason, index, block.proof(index).siblings,
        merkle_proof(leaves, index).siblings, block.header.encoded, certificate,
        tuple((c, s.entries()) for c, s in changes),
    )


def hash_only(r: Receipt) -> Receipt:
    """The same receipt without the transaction's body (its hash and signature stay)."""
    if not isinstance(r.tx, bytes):
        return r
    try:
        tx = decode_tx(r.tx)
    except TxError as e:
        raise ReceiptError("tx", str(e)) from None
    return Receipt(r.chain_id, r.genesis_hash, (tx.hash, tx.signature), r.tx_type, r.applied,
                   r.reason, r.index, r.tx_siblings, r.result_siblings, r.header, r.certificate,
                   r.changes)
