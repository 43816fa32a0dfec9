"""Data-set content: chunked encryption under a data-set key, and the content hash.

Owned here (beside record encryption, whose key sealing it reuses) because the
publisher's node encrypts, every node's content store checks chunks against the
hash, and the fetching institution decrypts: one definition of the format.

Format (docs/datasets.md):
- The plaintext is cut into `PLAIN_CHUNK` byte pieces. A restricted data set
  encrypts piece i with XChaCha20-Poly1305 under a fresh 32-byte data-set key,
  nonce = i (8 bytes big-endian, zero-padded to 24: the key encrypts one content
  only) and associated data `AAD_PREFIX + i`, so pieces cannot be reordered. A
  public data set stores the pieces as they are. The stored blob is the
  concatenation of the (encrypted) pieces; its chunks are the unit of transfer.
- Chunk hash = SHA-256("hzp2p.chunk.v1\\0" + chunk). The manifest is (blob size, chunk
  size, chunk hashes); the content hash on chain is SHA-256("hzp2p.content.v1\\0" +
  the encoded manifest). So a fetcher that
  holds the content hash checks the manifest, then every chunk as it arrives.
- The data-set key is sealed to each holder with `records.seal_key_to` and
  committed with `records.key_commitment`; restricted metadata is an encrypted
  record (`records.encrypt_record`) under the same key, bound to the id and version.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import nacl.bindings
import nacl.exceptions

from hzp2p.crypto.records import (
    KEY_BYTES,
    RecordCryptoError,
    decrypt_record,
    encrypt_record,
    new_record_key,
)

PLAIN_CHUNK = 256 * 1024
MAC_BYTES = 16
MAX_CHUNK_BYTES = PLAIN_CHUNK + MAC_BYTES
MAX_CHUNKS = 1 << 20  # 256 GiB of content: far beyond what one data set should be
HASH_BYTES = 32
AAD_PREFIX = b"hzp2p.dataset.chunk.v1"
_MANIFEST_HEAD = struct.Struct(">QI")
METADATA_SUBJECT = "dataset"
METADATA_TYPE = "dataset.metadata"


class ContentError(Exception):
    """Content does not match its hash, or does not open with the key."""


def chunk_hash(chunk: bytes | memoryview) -> bytes:
    h = hashlib.sha256(b"hzp2p.chunk.v1\x00")  # SHA-256: SHA-NI makes it ~2x blake2b here
    h.update(chunk)
    return h.digest()


def _content_hash(manifest: bytes) -> bytes:
    h = hashlib.sha256(b"hzp2p.content.v1\x00")
    h.update(manifest)
    return h.digest()


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a content hash names: the blob's size, its chunk size and each chunk's hash."""

    size: int
    chunk_size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        assert self.chunk_size > 0 and self.size >= 0
        assert len(self.hashes) == chunk_count(self.size, self.chunk_size)

    def encode(self) -> bytes:
        return _MANIFEST_HEAD.pack(self.size, self.chunk_size) + b"".join(self.hashes)

    @property
    def content_hash(self) -> bytes:
        return _content_hash(self.encode())

    @property
    def count(self) -> int:
        return len(self.hashes)

    def chunk_len(self, index: int) -> int:
        assert 0 <= index < self.count
        return min(self.chunk_size, self.size - index * self.chunk_size)

    @classmethod
    def decode(cls, data: bytes, content_hash: bytes) -> Manifest:
        """The manifest in `data`, checked against `content_hash` (ContentError otherwise)."""
        if _content_hash(data) != content_hash:
            raise ContentError("manifest does not match the content hash")
        if len(data) < _MANIFEST_HEAD.size:
            raise ContentError("manifest too short")
        size, chunk_size = _MANIFEST_HEAD.unpack_from(data)
        body = data[_MANIFEST_HEAD.size:]
        if not 0 < chunk_size <= MAX_CHUNK_BYTES or len(body) % HASH_BYTES:
            raise ContentError("manifest malformed")
        hashes = tuple(body[i:i + HASH_BYTES] for i in range(0, len(body), HASH_BYTES))
        if len(hashes) != chunk_count(size, chunk_size) or len(hashes) > MAX_CHUNKS:
            raise ContentError("manifest malformed")
        return cls(size, chunk_size, hashes)


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def new_dataset_key() -> bytes:
    return new_record_key()


def _nonce(index: int) -> bytes:
    return index.to_bytes(8, "big") + bytes(16)


def encrypt_chunk(key: bytes, index: int, plain: bytes) -> bytes:
    assert len(key) == KEY_BYTES
    aad = AAD_PREFIX + index.to_bytes(8, "big")
    return bytes(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, aad, _nonce(index), key))


def decrypt_chunk(key: bytes, index: int, chunk: bytes) -> bytes:
    aad = AAD_PREFIX + index.to_bytes(8, "big")
    try:
        return bytes(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(chunk, aad, _nonce(index), key))
    except nacl.exceptions.CryptoError as exc:
        raise ContentError(f"chunk {index} does not open with this data-set key") from exc


def _pieces(src: BinaryIO) -> Iterator[bytes]:
    while True:
        piece = src.read(PLAIN_CHUNK)
        if not piece:
            return
        yield piece


def seal_file(src: Path, dst: Path, key: bytes | None) -> tuple[Manifest, int]:
    """Write `src` as a content blob to `dst` (encrypted under `key`, or as is when None);
    returns the blob's manifest and the plaintext size."""
    hashes: list[bytes] = []
    size = plain = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        for i, piece in enumerate(_pieces(fin)):
            plain += len(piece)
            chunk = piece if key is None else encrypt_chunk(key, i, piece)
            hashes.append(chunk_hash(chunk))
            fout.write(chunk)
            size += len(chunk)
    chunk_size = PLAIN_CHUNK if key is None else MAX_CHUNK_BYTES
    return Manifest(size, chunk_size, tuple(hashes)), plain


def open_blob(blob: Path, dst: Path, key: bytes | None, manifest: Manifest) -> int:
    """Write the plaintext of `blob` to `dst`, checking every chunk's hash (and MAC); returns
    the plaintext size. Raises ContentError on any mismatch (dst is then incomplete)."""
    out = 0
    with blob.open("rb") as fin, dst.open("wb") as fout:
        for i in range(manifest.count):
            chunk = fin.read(manifest.chunk_len(i))
            if chunk_hash(chunk) != manifest.hashes[i]:
                raise ContentError(f"chunk {i} does not match the manifest")
            plain = chunk if key is None else decrypt_chunk(key, i, chunk)
            fout.write(plain)
            out += len(plain)
        if fin.read(1):
            raise ContentError("blob longer than its manifest")
    return out


def open_bytes(blob: bytes, key: bytes | None, content_hash: bytes) -> bytes:
    """The plaintext of a whole blob held in memory (e.g. downloaded through the gateway),
    checked against `content_hash` first (ContentError otherwise)."""
    chunk_size = PLAIN_CHUNK if key is None else MAX_CHUNK_BYTES
    view = memoryview(blob)
    hashes = tuple(chunk_hash(view[i:i + chunk_size]) for i in range(0, len(blob), chunk_size))
    if Manifest(len(blob), chunk_size, hashes).content_hash != content_hash:
        raise ContentError("content does not match its hash")
    if key is None:
        return blob
    return b"".join(decrypt_chunk(key, n, bytes(view[i:i + chunk_size]))
                    for n, i in enumerate(range(0, len(blob), chunk_size)))


def _meta_id(dataset_id: str, version: int) -> str:
    return f"{dataset_id}@{version}"


def seal_metadata(key: bytes, dataset_id: str, version: int, metadata: dict[str, Any]) -> bytes:
    """Restricted metadata as a ciphertext under the data-set key, bound to id and version."""
    env = encrypt_record(_meta_id(dataset_id, version), METADATA_SUBJECT, METADATA_TYPE,
                         metadata, {}, record_key=key)
    return env.ciphertext


def open_metadata(key: bytes, ciphertext: bytes, dataset_id: str, version: int) -> dict[str, Any]:
    try:
        return decrypt_record(key, ciphertext, _meta_id(dataset_id, version), METADATA_SUBJECT,
                              METADATA_TYPE)
    except RecordCryptoError as exc:
        raise ContentError(str(exc)) from exc
