"""Record encryption: personal fields under a per-record key, sealed to each holder.

Owned here because both the client library (which encrypts and decrypts) and the
contracts (which check envelope shapes and sizes, never contents) need one
definition of the envelope. Contracts never call the randomised functions.

Design (see docs/contracts.md):
- A citizen holds an Ed25519 key pair. Their pseudonym is
  blake2b(public key, 16 bytes, person="hzp2p-subject").hex() (`pseudonym`).
- A citizen's encryption key is derived from their Ed25519 key with libsodium's
  ed25519 -> curve25519 conversion. An institution's is the same derived key
  (key id 0) until it registers its own X25519 key with `enckey.set` (key ids
  1, 2, ...); registered keys can be rotated and the old private key destroyed,
  which is what makes erasure hold against the block history.
- A record's fields are msgpack-encoded together with the record id, subject
  and type (so a ciphertext cannot be replayed under another record), then
  encrypted with a fresh 32-byte SecretBox key. That key is sealed (SealedBox)
  to each holder. `key_commitment` = personalised blake2b of the record key, so a
  holder can check that a key handed to it is the record's real key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
import nacl.utils

from hzp2p.ledger.codec import pack

KEY_BYTES = 32
SEALED_KEY_BYTES = KEY_BYTES + 48  # SealedBox overhead: ephemeral pk (32) + MAC (16)
MIN_CIPHERTEXT_BYTES = 24 + 16 + 1  # nonce + MAC + at least one byte
MAX_CIPHERTEXT_BYTES = 16 * 1024
SUBJECT_HOLDER = "subject"


class RecordCryptoError(Exception):
    """A record cannot be decrypted (wrong key, tampered ciphertext, erased, ...)."""


def pseudonym(subject_verify_key: bytes) -> str:
    """The on-chain name of the citizen owning Ed25519 public key `subject_verify_key`."""
    assert len(subject_verify_key) == 32, "an Ed25519 public key is 32 bytes"
    return hashlib.blake2b(subject_verify_key, digest_size=16, person=b"hzp2p-subject").hexdigest()


def institution_holder(inst_id: int) -> str:
    """Holder name of an institution in a record's sealed-key map."""
    return f"inst:{inst_id}"


def encryption_public_key(verify_key: bytes) -> bytes:
    """Curve25519 public key derived from an Ed25519 verify key (citizen or institution)."""
    return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(verify_key))


def encryption_private_key(signing_key: nacl.signing.SigningKey) -> nacl.public.PrivateKey:
    """Curve25519 private key derived from an Ed25519 signing key."""
    priv: nacl.public.PrivateKey = signing_key.to_curve25519_private_key()
    return priv


def key_commitment(record_key: bytes) -> bytes:
    """A public commitment to a record key (lets a holder verify a key it was handed)."""
    return hashlib.blake2b(record_key, digest_size=32, person=b"hzp2p-reckey").digest()


def seal_key_to(record_key: bytes, holder_public_key: bytes) -> bytes:
    """Seal `record_key` to a holder's X25519 public key."""
    assert len(record_key) == KEY_BYTES and len(holder_public_key) == 32
    box = nacl.public.SealedBox(nacl.public.PublicKey(holder_public_key))
    sealed = bytes(box.encrypt(record_key))
    assert len(sealed) == SEALED_KEY_BYTES
    return sealed


def open_sealed_key(
    sealed: bytes,
    holder_key: nacl.signing.SigningKey | nacl.public.PrivateKey,
    commitment: bytes | None = None,
) -> bytes:
    """The record key inside `sealed`, opened with the holder's private key (an X25519
    private key, or an Ed25519 signing key whose derived key is used).

    If `commitment` is given the key must match it (a wrong or forged share is refused).
    """
    priv = (
        encryption_private_key(holder_key)
        if isinstance(holder_key, nacl.signing.SigningKey)
        else holder_key
    )
    box = nacl.public.SealedBox(priv)
    try:
        key = bytes(box.decrypt(sealed))
    except nacl.exceptions.CryptoError as exc:
        raise RecordCryptoError("sealed key does not open with this holder's key") from exc
    if len(key) != KEY_BYTES:
        raise RecordCryptoError("sealed key has the wrong length")
    if commitment is not None and key_commitment(key) != commitment:
        raise RecordCryptoError("record key does not match the record's key commitment")
    return key


def _plaintext(record_id: str, subject: str, record_type: str, fields: dict[str, Any]) -> bytes:
    return pack(
        {
            "record_id": record_id,
            "subject": subject,
            "type": record_type,
            "fields": {k: fields[k] for k in sorted(fields)},
        }
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """An encrypted record as carried in a transaction payload."""

    ciphertext: bytes
    sealed_keys: dict[str, bytes]  # holder name -> record key sealed to that holder
    key_commitment: bytes

    def to_payload(self) -> dict[str, Any]:
        return {
            "ciphertext": self.ciphertext,
            "key_commitment": self.key_commitment,
            "sealed_keys": {h: self.sealed_keys[h] for h in sorted(self.sealed_keys)},
        }


def new_record_key() -> bytes:
    return bytes(nacl.utils.random(KEY_BYTES))


def encrypt_record(
    record_id: str,
    subject: str,
    record_type: str,
    fields: dict[str, Any],
    holders: dict[str, bytes],
    record_key: bytes | None = None,
) -> Envelope:
    """Encrypt `fields` under a fresh record key sealed to each of `holders`
    (holder name -> X25519 public key)."""
    key = new_record_key() if record_key is None else record_key
    ciphertext = bytes(
        nacl.secret.SecretBox(key).encrypt(_plaintext(record_id, subject, record_type, fields))
    )
    if len(ciphertext) > MAX_CIPHERTEXT_BYTES:
        raise ValueError(f"record too large: {len(ciphertext)} > {MAX_CIPHERTEXT_BYTES} bytes")
    sealed = {name: seal_key_to(key, pk) for name, pk in sorted(holders.items())}
    return Envelope(ciphertext, sealed, key_commitment(key))


def decrypt_record(
    record_key: bytes, ciphertext: bytes, record_id: str, subject: str, record_type: str
) -> dict[str, Any]:
    """The fields of a record, checking they were encrypted for this very record."""
    try:
        plain = bytes(nacl.secret.SecretBox(record_key).decrypt(ciphertext))
    except nacl.exceptions.CryptoError as exc:
        raise RecordCryptoError("ciphertext does not open with this record key") from exc
    body = msgpack.unpackb(plain, raw=False, strict_map_key=False)
    if not isinstance(body, dict) or (
        body.get("record_id"),
        body.get("subject"),
        body.get("type"),
    ) != (record_id, subject, record_type):
        raise RecordCryptoError("ciphertext belongs to a different record")
    fields = body.get("fields")
    if not isinstance(fields, dict):
        raise RecordCryptoError("record body has no fields map")
    return fields
