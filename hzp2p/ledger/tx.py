"""Signed transactions: the canonical envelope, its hash and Ed25519 signature.

Wire format (msgpack): ``[body, signature]`` where ``body`` is the bin of the
canonical msgpack array ``[version, chain_id, tx_type, signer, nonce,
valid_from_ms, valid_until_ms, payload]``. The transaction hash is
blake2b-256(body); the signature is Ed25519 by ``signer`` over
``b"hzp2p/tx/v1" + hash``. Keeping ``body`` as bytes means the hash is taken
once, over exactly the bytes received, with no re-encoding. The hash excludes
the signature, so a tampered signature cannot make a different "copy" of a
transaction (replay protection is by hash); Merkle leaves cover hash and
signature together (see hzp2p.ledger.merkle).

`decode_tx` validates field by field and raises `TxError(field, problem)`.
Semantic checks against a chain (chain id, validity window vs the block
timestamp, registered type) are `check_envelope` and the engine's business.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from hzp2p.ledger.codec import CodecError, FieldError, canonical, is_canonical, pack, unpack

TX_VERSION = 1
SIG_DOMAIN = b"hzp2p/tx/v1"
MAX_TX_BYTES = 64 * 1024
MAX_WINDOW_MS = 7 * 24 * 3600 * 1000  # a validity window may span at most a week
MAX_TYPE_CHARS = 64
MAX_CHAIN_ID_CHARS = 64
UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1


def blake(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


VERIFIED_CACHE_SIZE = 65536
_VERIFIED: dict[bytes, None] = {}
"""(hash + signature) pairs whose signature verified in this process, oldest first (bounded)."""


def _remember_verified(key: bytes) -> None:
    _VERIFIED[key] = None
    if len(_VERIFIED) > VERIFIED_CACHE_SIZE:
        # another thread may evict at the same time: a miss only costs a re-check
        with contextlib.suppress(KeyError, StopIteration, RuntimeError):
            del _VERIFIED[next(iter(_VERIFIED))]


def clear_verified_cache() -> None:
    """Forget every verified signature (benchmarks that time verification call this)."""
    _VERIFIED.clear()


class TxError(FieldError):
    """A transaction is malformed or fails an envelope check; `field` names what."""

    PREFIX = "tx."


@dataclass(frozen=True, slots=True, eq=False)
class Transaction:
    """A transaction; build with `Transaction.create` (signs) or `decode_tx` (parses)."""

    chain_id: str
    tx_type: str
    signer: bytes
    nonce: int
    valid_from_ms: int
    valid_until_ms: int
    payload: Mapping[str, Any]
    signature: bytes = b""
    # Derived once in __post_init__ (never re-encoded afterwards):
    body: bytes = field(default=b"", repr=False)
    hash: bytes = field(default=b"", repr=False)
    # The wire bytes ([body, signature]): the bytes received (decode_tx), else packed on the
    # first encode() and kept.
    wire: bytes = field(default=b"", init=False, repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)
        try:
            payload = canonical(self.payload, "payload")
        except CodecError as e:
            raise TxError(e.path, e.problem) from None
        body = pack(
            [
                TX_VERSION,
                self.chain_id,
                self.tx_type,
                self.signer,
                self.nonce,
                self.valid_from_ms,
                self.valid_until_ms,
                payload,
            ]
        )
        if self.body and self.body != body:
            raise TxError("body", "not the canonical encoding")
        if len(body) + len(self.signature) + 8 > MAX_TX_BYTES:
            raise TxError("size", f"encoded transaction exceeds {MAX_TX_BYTES} bytes")
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "hash", blake(body))

    @classmethod
    def create(
        cls,
        key: nacl.signing.SigningKey,
        chain_id: str,
        tx_type: str,
        payload: Mapping[str, Any],
        *,
        nonce: int,
        valid_from_ms: int,
        valid_until_ms: int,
    ) -> Transaction:
        """Build and sign a transaction with `key` (an institution's or a citizen's)."""
        unsigned = cls(
            chain_id, tx_type, bytes(key.verify_key), nonce, valid_from_ms, valid_until_ms, payload
        )
        return unsigned.signed(key)

    def signed(self, key: nacl.signing.SigningKey) -> Transaction:
        """This transaction with `key`'s signature. The body and hash are reused as they are
        (encode once; `dataclasses.replace` would re-encode and re-hash the whole body), and
        the pair counts as verified here: it was just made with the signer's own key."""
        assert bytes(key.verify_key) == self.signer, "signing key does not match tx.signer"
        sig = bytes(key.sign(SIG_DOMAIN + self.hash).signature)
        if len(self.body) + len(sig) + 8 > MAX_TX_BYTES:  # as __post_init__ checks
            raise TxError("size", f"encoded transaction exceeds {MAX_TX_BYTES} bytes")
        out = _new_tx(
            self.chain_id,
            self.tx_type,
            self.signer,
            self.nonce,
            self.valid_from_ms,
            self.valid_until_ms,
            self.payload,
            sig,
            self.body,
            b"",
        )
        _SET_HASH(out, self.hash)
        _remember_verified(out.hash + sig)
        return out

    sign = signed  # alias: tx.sign(key) -> the signed transaction

    @staticmethod
    def decode(data: bytes) -> Transaction:
        return decode_tx(data)

    def verify(self) -> None:
        """Check the Ed25519 signature; raises TxError('signature', ...).

        A (hash, signature) pair this process has already verified is not verified again
        (`_VERIFIED`): the hash covers the body and hence the signer, so the pair fixes
        every input of the check. A node then checks each signature once even though
        admission, its own block execution and verification all ask; every other node
        still checks it itself, and a copy read back from disk is re-hashed first.
        """
        if len(self.signature) != 64:
            raise TxError("signature", "missing or not 64 bytes")
        key = self.hash + self.signature
        if key in _VERIFIED:
            return
        try:
            nacl.bindings.crypto_sign_open(self.signature + SIG_DOMAIN + self.hash, self.signer)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise TxError("signature", "does not verify against signer") from None
        _remember_verified(key)

    def encode(self) -> bytes:
        w = self.wire
        if not w:
            w = pack([self.body, self.signature])
            object.__setattr__(self, "wire", w)
        return w

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Transaction)
            and self.hash == other.hash
            and self.signature == other.signature
        )

    def __hash__(self) -> int:
        return hash(self.hash)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Transaction))


def _check_fields(tx: Transaction) -> None:
    if type(tx.chain_id) is not str or not 0 < len(tx.chain_id) <= MAX_CHAIN_ID_CHARS:
        raise TxError("chain_id", f"must be a string of 1..{MAX_CHAIN_ID_CHARS} chars")
    if type(tx.tx_type) is not str or not 0 < len(tx.tx_type) <= MAX_TYPE_CHARS:
        raise TxError("tx_type", f"must be a string of 1..{MAX_TYPE_CHARS} chars")
    if type(tx.signer) is not bytes or len(tx.signer) != 32:
        raise TxError("signer", "must be a 32-byte Ed25519 public key")
    if type(tx.nonce) is not int or not 0 <= tx.nonce <= UINT64_MAX:
        raise TxError("nonce", "must be an integer in 0..2^64-1")
    for name in ("valid_from_ms", "valid_until_ms"):
        v = getattr(tx, name)
        if type(v) is not int or not 0 <= v <= INT64_MAX:
            raise TxError(name, "must be a non-negative int64 (milliseconds)")
    if tx.valid_until_ms < tx.valid_from_ms:
        raise TxError("valid_until_ms", "earlier than valid_from_ms")
    if tx.valid_until_ms - tx.valid_from_ms > MAX_WINDOW_MS:
        raise TxError("valid_until_ms", f"validity window longer than {MAX_WINDOW_MS} ms")
    if type(tx.payload) is not dict:
        raise TxError("payload", "must be a map")
    if type(tx.signature) is not bytes or len(tx.signature) not in (0, 64):
        raise TxError("signature", "must be 64 bytes")


def decode_tx(data: bytes) -> Transaction:
    """Parse wire bytes into a Transaction (structure and canonical form; not the signature)."""
    if type(data) is not bytes:
        raise TxError("wire", "must be bytes")
    if len(data) > MAX_TX_BYTES:
        raise TxError("size", f"encoded transaction exceeds {MAX_TX_BYTES} bytes")
    try:
        outer = unpack(data, "wire")
    except CodecError as e:
        raise TxError("wire", e.problem) from None
    if type(outer) is not list or len(outer) != 2:
        raise TxError("wire", "must be [body, signature]")
    body, sig = outer
    if type(body) is not bytes or type(sig) is not bytes:
        raise TxError("wire", "body and signature must be bin")
    if len(sig) != 64:
        raise TxError("signature", "must be 64 bytes")
    try:
        fields = unpack(body, "body")
    except CodecError as e:
        raise TxError("body", e.problem) from None
    if type(fields) is not list or len(fields) != 8:
        raise TxError("body", "must be an array of 8 fields")
    if fields[0] != TX_VERSION or type(fields[0]) is not int:
        raise TxError("version", f"unsupported version {fields[0]!r}")
    # The checks of Transaction.__post_init__, in its order, without its copies: the decoded
    # payload is ours (no defensive copy), and when it is already canonical (sorted keys,
    # allowed types; `is_canonical`) re-packing the decoded fields must give `body` back.
    _v, chain_id, tx_type, signer, nonce, vfrom, vuntil, payload = fields
    tx = _new_tx(chain_id, tx_type, signer, nonce, vfrom, vuntil, payload, sig, body, data)
    _check_fields(tx)
    if not is_canonical(payload):
        try:
            fields[7] = canonical(payload, "payload")  # raises, or sorts: then `body` differs
        except CodecError as e:
            raise TxError(e.path, e.problem) from None
    if pack(fields) != body:
        raise TxError("body", "not the canonical encoding")
    if len(body) + len(sig) + 8 > MAX_TX_BYTES:
        raise TxError("size", f"encoded transaction exceeds {MAX_TX_BYTES} bytes")
    # [body, signature] decoded from `data` with nothing left over: the only other encodings
    # of those two bins use longer (non-minimal) headers, so the minimal length proves it.
    if len(data) != _wire_len(len(body)):
        raise TxError("wire", "not the canonical encoding")
    _SET_HASH(tx, blake(body))
    return tx


# The slots' own setters: building a decoded Transaction without the frozen __setattr__ and
# without __post_init__ (decode_tx runs the same checks itself).
(
    _SET_CHAIN_ID,
    _SET_TX_TYPE,
    _SET_SIGNER,
    _SET_NONCE,
    _SET_FROM,
    _SET_UNTIL,
    _SET_PAYLOAD,
    _SET_SIGNATURE,
    _SET_BODY,
    _SET_HASH,
    _SET_WIRE,
) = (getattr(Transaction, f).__set__ for f in _FIELD_NAMES)


def _new_tx(
    chain_id: Any,
    tx_type: Any,
    signer: Any,
    nonce: Any,
    vfrom: Any,
    vuntil: Any,
    payload: Any,
    sig: bytes,
    body: bytes,
    wire: bytes,
) -> Transaction:
    tx = object.__new__(Transaction)
    _SET_CHAIN_ID(tx, chain_id)
    _SET_TX_TYPE(tx, tx_type)
    _SET_SIGNER(tx, signer)
    _SET_NONCE(tx, nonce)
    _SET_FROM(tx, vfrom)
    _SET_UNTIL(tx, vuntil)
    _SET_PAYLOAD(tx, payload)
    _SET_SIGNATURE(tx, sig)
    _SET_BODY(tx, body)
    _SET_HASH(tx, b"")
    _SET_WIRE(tx, wire)
    return tx


def _wire_len(body_len: int) -> int:
    """Length of the canonical encoding of [body, 64-byte signature]: fixarray(2), bin8/16/32
    header + body, bin8 header + signature."""
    hdr = 2 if body_len < 0x100 else 3 if body_len < 0x10000 else 5
    return 1 + hdr + body_len + 2 + 64


def check_envelope(tx: Transaction, chain_id: str, timestamp_ms: int) -> None:
    """Chain-level checks against a block: chain id and validity window (then signature)."""
    if tx.chain_id != chain_id:
        raise TxError("chain_id", f"is {tx.chain_id!r}, this chain is {chain_id!r}")
    if timestamp_ms < tx.valid_from_ms:
        raise TxError("valid_from_ms", "not yet valid at the block timestamp")
    if timestamp_ms > tx.valid_until_ms:
        raise TxError("valid_until_ms", "expired at the block timestamp")
    tx.verify()
