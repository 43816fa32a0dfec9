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

Version 2 (issue 19) adds quorum certificates for earlier blocks
(hzp2p.ledger.certificate): the header gains a ninth field ``certs_hash`` =
blake2b-256(``b"hzp2p/certs/v1"`` + canonical msgpack list of the certificates'
bytes) and the wire a fourth element, that list. A block carrying no
certificate is encoded as version 1, byte for byte as before, so chains without
certification (and every block written before it) decode and verify unchanged.
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
BLOCK_VERSION_CERTS = 2
CERTS_DOMAIN = b"hzp2p/certs/v1"
MAX_BLOCK_CERTS = 256
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
    certs_hash: bytes = b""  # version 2 only: commits to the certificates the block carries

    @property
    def version(self) -> int:
        return BLOCK_VERSION_CERTS if self.certs_hash else BLOCK_VERSION

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
        fields = [
            BLOCK_VERSION,
            self.height,
            self.prev_hash,
            self.merkle_root,
            self.state_digest,
            self.proposer,
            self.timestamp_ms,
            self.tx_count,
        ]
        if self.certs_hash:
            if type(self.certs_hash) is not bytes or len(self.certs_hash) != 32:
                raise BlockError("header.certs_hash", "must be 32 bytes")
            fields[0] = BLOCK_VERSION_CERTS
            fields.append(self.certs_hash)
        enc = pack(fields)
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
    certs: tuple[bytes, ...] = ()  # encoded quorum certificates (version 2 blocks only)
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
        certs: list[bytes] | tuple[bytes, ...] = (),
    ) -> Block:
        """Assemble and sign a block (the Merkle root is computed here). With `certs`
        (encoded quorum certificates) it is a version 2 block."""
        if len(certs) > MAX_BLOCK_CERTS:
            raise BlockError("certs", f"more than {MAX_BLOCK_CERTS}")
        header = BlockHeader(
            height,
            prev_hash,
            merkle_root(tx_leaves(txs)),
            state_digest,
            proposer,
            timestamp_ms,
            len(txs),
            certs_hash=certs_hash(certs) if certs else b"",
        )
        sig = bytes(node_key.sign(BLOCK_SIG_DOMAIN + header.hash).signature)
        block = cls(header, sig, tuple(txs), tuple(certs))
        object.__setattr__(block, "computed_root", header.merkle_root)
        return block

    @staticmethod
    def decode(data: bytes) -> Block:
        return decode_block(data)

    def encode(self) -> bytes:
        w = self.wire
        if not w:
            parts: list[object] = [
                self.header.encoded, self.signature, [tx.encode() for tx in self.txs]
            ]
            if self.header.certs_hash:
                parts.append(list(self.certs))
            w = pack(parts)
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


def certs_hash(certs: list[bytes] | tuple[bytes, ...]) -> bytes:
    """The header field committing to a version 2 block's certificates."""
    return blake(CERTS_DOMAIN + pack(list(certs)))


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
    if type(f) is not list or len(f) not in (8, 9):
        raise BlockError("header", "must be an array of 8 (version 1) or 9 (version 2) fields")
    version = BLOCK_VERSION if len(f) == 8 else BLOCK_VERSION_CERTS
    if type(f[0]) is not int or f[0] != version:
        raise BlockError("header.version", f"unsupported version {f[0]!r}")
    if len(f) == 9:
        if type(f[8]) is not bytes or len(f[8]) != 32:
            raise BlockError("header.certs_hash", "must be 32 bytes")
        return BlockHeader(f[1], f[2], f[3], f[4], f[5], f[6], f[7], data, certs_hash=f[8])
    return BlockHeader(f[1], f[2], f[3], f[4], f[5], f[6], f[7], data)


def decode_block(data: bytes) -> Block:
    """Parse wire bytes (structure, canonical form, Merkle root; not signatures)."""
    if type(data) is not bytes or len(data) > MAX_BLOCK_BYTES:
        raise BlockError("wire", f"must be bytes of at most {MAX_BLOCK_BYTES}")
    try:
        outer = unpack(data, "wire")
    except CodecError as e:
        raise BlockError("wire", e.problem) from None
    if type(outer) is not list or len(outer) not in (3, 4):
        raise BlockError("wire", "must be [header, signature, txs] or [header, signature, txs, certs]")
    hdr, sig, raw_txs = outer[:3]
    if type(hdr) is not bytes or type(sig) is not bytes or type(raw_txs) is not list:
        raise BlockError("wire", "bad field types")
    if len(sig) != 64:
        raise BlockError("signature", "must be 64 bytes")
    header = decode_header(hdr)
    certs: tuple[bytes, ...] = ()
    if len(outer) == 4:
        raw_certs = outer[3]
        if type(raw_certs) is not list or not 0 < len(raw_certs) <= MAX_BLOCK_CERTS or any(
            type(c) is not bytes for c in raw_certs
        ):
            raise BlockError("certs", f"must be a list of 1..{MAX_BLOCK_CERTS} bin")
        if not header.certs_hash:
            raise BlockError("wire", "a version 1 header carries no certificates")
        certs = tuple(raw_certs)
        if certs_hash(certs) != header.certs_hash:
            raise BlockError("header.certs_hash", "does not match the certificates")
    elif header.certs_hash:
        raise BlockError("wire", "a version 2 block must carry its certificates")
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
    block = Block(header, sig, tuple(txs), certs)
    # Each tx's encode() is its `raw` (decode_tx insists on it), so this is block.encode()
    # without re-packing every transaction.
    if pack([header.encoded, sig, raw_txs, *outer[3:]]) != data:
        raise BlockError("wire", "not the canonical encoding")
    object.__setattr__(block, "wire", data)
    block.check_merkle()
    return block
