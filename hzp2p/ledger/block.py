"""Blocks: a signed header chaining to its parent, plus the transactions; one Raft entry each.

Header (canonical msgpack array): ``[version, height, prev_hash, merkle_root,
state_digest, proposer, timestamp_ms, tx_count]``; ``state_digest`` is the
contract-state digest after the *previous* block (so a block can be proposed
before it executes), ``proposer`` the proposing node's id (= its institution
id). Block hash = blake2b-256(header bytes); the proposer signs
``b"hzp2p/block/v1" + hash`` with its node key. Wire: ``[header, signature,
[tx wire, ...]]``; header and transactions stay as the exact bytes received, so
nothing is re-encoded to hash or verify. Height 0 is the genesis; block 1's
``prev_hash`` is the genesis hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing

from hzp2p.ledger.codec import CodecError, FieldError, pack, unpack
from hzp2p.ledger.merkle import MerkleProof, leaf_hash, merkle_proof, merkle_root, verify_proof
from hzp2p.ledger.tx import INT64_MAX, Transaction, TxError, blake, decode_tx

BLOCK_VERSION = 1
BLOCK_SIG_DOMAIN = b"hzp2p/block/v1"
MAX_BLOCK_BYTES = 8 * 1024 * 1024
MAX_BLOCK_TXS = 20_000


class BlockError(FieldError):
    """A block is malformed or fails a check; `field` names what (e.g. 'txs[3].signature')."""

    PREFIX = "block."


@dataclass(frozen=True, slots=True, eq=False)
class BlockHeader:
    height: int
    prev_hash: bytes
    merkle_root: bytes
    state_digest: bytes
    proposer: int
    timestamp_ms: int
    tx_count: int
    encoded: bytes = field(default=b"", repr=False)
    hash: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        for name in ("height", "proposer", "timestamp_ms", "tx_count"):
            v = getattr(self, name)
            if type(v) is not int or not 0 <= v <= INT64_MAX:
                raise BlockError(f"header.{name}", "must be a non-negative int64")
        if self.height < 1:
            raise BlockError("header.height", "blocks start at height 1 (0 is genesis)")
        for name in ("prev_hash", "merkle_root", "state_digest"):
            v = getattr(self, name)
            if type(v) is not bytes or len(v) != 32:
                raise BlockError(f"header.{name}", "must be 32 bytes")
        if self.tx_count > MAX_BLOCK_TXS:
            raise BlockError("header.tx_count", f"more than {MAX_BLOCK_TXS}")
        enc = pack(
            [
                BLOCK_VERSION,
                self.height,
                self.prev_hash,
                self.merkle_root,
                self.state_digest,
                self.proposer,
                self.timestamp_ms,
                self.tx_count,
            ]
        )
        if self.encoded and self.encoded != enc:
            raise BlockError("header", "not the canonical encoding")
        object.__setattr__(self, "encoded", enc)
        object.__setattr__(self, "hash", blake(enc))

    def verify_signature(self, signature: bytes, node_key: bytes) -> None:
        if len(signature) != 64 or len(node_key) != 32:
            raise BlockError("signature", "bad signature or key length")
        try:
            nacl.bindings.crypto_sign_open(signature + BLOCK_SIG_DOMAIN + self.hash, node_key)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise BlockError("signature", "does not verify against the proposer's node key") from None


@dataclass(frozen=True, slots=True, eq=False)
class Block:
    header: BlockHeader
    signature: bytes
    txs: tuple[Transaction, ...]
    # Caches (a block is immutable): the Merkle root of `txs` once computed (decode_block,
    # create and execute_block all need it) and the wire bytes once encoded or received.
    computed_root: bytes = field(default=b"", init=False, repr=False)
    wire: bytes = field(default=b"", init=False, repr=False)

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @classmethod
    def create(
        cls,
        node_key: nacl.signing.SigningKey,
        *,
        height: int,
        prev_hash: bytes,
        state_digest: bytes,
        proposer: int,
        timestamp_ms: int,
        txs: list[Transaction] | tuple[Transaction, ...],
    ) -> Block:
        """Assemble and sign a block (the Merkle root is computed here)."""
        header = BlockHeader(
            height,
            prev_hash,
            merkle_root(tx_leaves(txs)),
            state_digest,
            proposer,
            timestamp_ms,
            len(txs),
        )
        sig = bytes(node_key.sign(BLOCK_SIG_DOMAIN + header.hash).signature)
        block = cls(header, sig, tuple(txs))
        object.__setattr__(block, "computed_root", header.merkle_root)
        return block

    @staticmethod
    def decode(data: bytes) -> Block:
        return decode_block(data)

    def encode(self) -> bytes:
        w = self.wire
        if not w:
            w = pack([self.header.encoded, self.signature, [tx.encode() for tx in self.txs]])
            object.__setattr__(self, "wire", w)
        return w

    def check_merkle(self) -> None:
        if len(self.txs) != self.header.tx_count:
            raise BlockError("header.tx_count", "does not match the transactions")
        root = self.computed_root
        if not root:
            root = merkle_root(tx_leaves(self.txs))
            object.__setattr__(self, "computed_root", root)
        if root != self.header.merkle_root:
            raise BlockError("header.merkle_root", "does not match the transactions")

    def proof(self, index: int) -> MerkleProof:
        return merkle_proof(tx_leaves(self.txs), index)


def tx_leaves(txs: list[Transaction] | tuple[Transaction, ...]) -> list[bytes]:
    return [leaf_hash(tx.hash, tx.signature) for tx in txs]


def verify_inclusion(
    header: BlockHeader, tx_hash: bytes, signature: bytes, proof: MerkleProof
) -> bool:
    """True iff the transaction (hash, signature) is at `proof.index` of the block with `header`."""
    return proof.count == header.tx_count and verify_proof(
        header.merkle_root, leaf_hash(tx_hash, signature), proof
    )


def decode_header(data: bytes) -> BlockHeader:
    try:
        f = unpack(data, "header")
    except CodecError as e:
        raise BlockError("header", e.problem) from None
    if type(f) is not list or len(f) != 8:
        raise BlockError("header", "must be an array of 8 fields")
    if type(f[0]) is not int or f[0] != BLOCK_VERSION:
        raise BlockError("header.version", f"unsupported version {f[0]!r}")
    return BlockHeader(f[1], f[2], f[3], f[4], f[5], f[6], f[7], data)


def decode_block(data: bytes) -> Block:
    """Parse wire bytes (structure, canonical form, Merkle root; not signatures)."""
    if type(data) is not bytes or len(data) > MAX_BLOCK_BYTES:
        raise BlockError("wire", f"must be bytes of at most {MAX_BLOCK_BYTES}")
    try:
        outer = unpack(data, "wire")
    except CodecError as e:
        raise BlockError("wire", e.problem) from None
    if type(outer) is not list or len(outer) != 3:
        raise BlockError("wire", "must be [header, signature, txs]")
    hdr, sig, raw_txs = outer
    if type(hdr) is not bytes or type(sig) is not bytes or type(raw_txs) is not list:
        raise BlockError("wire", "bad field types")
    if len(sig) != 64:
        raise BlockError("signature", "must be 64 bytes")
    header = decode_header(hdr)
    if len(raw_txs) != header.tx_count:
        raise BlockError("header.tx_count", "does not match the transactions")
    txs: list[Transaction] = []
    for i, raw in enumerate(raw_txs):
        if type(raw) is not bytes:
            raise BlockError(f"txs[{i}]", "must be bin")
        try:
            txs.append(decode_tx(raw))
        except TxError as e:
            raise BlockError(f"txs[{i}].{e.field}", e.problem) from None
    block = Block(header, sig, tuple(txs))
    # Each tx's encode() is its `raw` (decode_tx insists on it), so this is block.encode()
    # without re-packing every transaction.
    if pack([header.encoded, sig, raw_txs]) != data:
        raise BlockError("wire", "not the canonical encoding")
    object.__setattr__(block, "wire", data)
    block.check_merkle()
    return block
