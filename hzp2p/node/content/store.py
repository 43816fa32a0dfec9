"""The content store: data-set blobs in a node's data directory, addressed by content hash.

Layout under `<data_dir>/content/<content hash hex>/`:
  manifest    the encoded manifest (hzp2p.crypto.datasets.Manifest), checked on write
  blob        the complete blob, every chunk checked against the manifest
  blob.part   a blob being fetched: chunks are written at their offsets as they arrive;
              on (re)start the chunks already there are found by checking each against
              the manifest, which is what makes a fetch resumable across a broken
              connection or a restart of the daemon.
A blob is only renamed to `blob` after the whole of it matched; readers serve `blob` only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hzp2p.crypto.datasets import ContentError, Manifest, chunk_hash

MANIFEST = "manifest"
BLOB = "blob"
PART = "blob.part"


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._manifests: dict[bytes, Manifest] = {}

    def dir(self, content_hash: bytes) -> Path:
        assert len(content_hash) == 32
        return self.root / content_hash.hex()

    def blob_path(self, content_hash: bytes) -> Path:
        return self.dir(content_hash) / BLOB

    def has(self, content_hash: bytes) -> bool:
        return self.blob_path(content_hash).is_file()

    def manifest_bytes(self, content_hash: bytes) -> bytes | None:
        try:
            return (self.dir(content_hash) / MANIFEST).read_bytes()
        except FileNotFoundError:
            return None

    def manifest(self, content_hash: bytes) -> Manifest | None:
        m = self._manifests.get(content_hash)
        if m is None:
            raw = self.manifest_bytes(content_hash)
            if raw is None:
                return None
            m = Manifest.decode(raw, content_hash)
            self._manifests[content_hash] = m
        return m

    def read_chunks(self, content_hash: bytes, first: int, count: int) -> list[bytes]:
        """Chunks first..first+count-1 of a complete blob (blocking: run in a thread)."""
        m = self.manifest(content_hash)
        assert m is not None and self.has(content_hash)
        out = []
        with self.blob_path(content_hash).open("rb") as f:
            f.seek(first * m.chunk_size)
            for i in range(first, min(first + count, m.count)):
                out.append(f.read(m.chunk_len(i)))
        return out

    def add_blob(self, blob: Path, manifest: Manifest) -> bytes:
        """Move a freshly written blob (e.g. a publication) into the store; returns its hash."""
        h = manifest.content_hash
        d = self.dir(h)
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(d / MANIFEST, manifest.encode())
        os.replace(blob, d / BLOB)
        self._manifests[h] = manifest
        return h

    def begin(self, content_hash: bytes, manifest_raw: bytes) -> Partial:
        """Start (or resume) fetching content whose manifest is `manifest_raw`."""
        m = Manifest.decode(manifest_raw, content_hash)
        d = self.dir(content_hash)
        d.mkdir(parents=True, exist_ok=True)
        if self.manifest_bytes(content_hash) is None:
            _write_atomic(d / MANIFEST, manifest_raw)
        self._manifests[content_hash] = m
        return Partial(d / PART, d / BLOB, m)

    def remove(self, content_hash: bytes) -> None:
        shutil.rmtree(self.dir(content_hash), ignore_errors=True)
        self._manifests.pop(content_hash, None)


class Partial:
    """A blob being fetched (see the module docstring)."""

    def __init__(self, path: Path, final: Path, manifest: Manifest) -> None:
        self.path, self.final, self.manifest = path, final, manifest
        self.have: set[int] = set()
        exists = path.exists()
        self._f = path.open("r+b" if exists else "w+b")
        if exists:
            self._scan()

    def _scan(self) -> None:
        m = self.manifest
        self._f.seek(0)
        for i in range(m.count):
            data = self._f.read(m.chunk_len(i))
            if len(data) == m.chunk_len(i) and chunk_hash(data) == m.hashes[i]:
                self.have.add(i)

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.manifest.count) if i not in self.have]

    def write(self, index: int, data: bytes) -> None:
        """Write a chunk already checked against the manifest."""
        self._f.seek(index * self.manifest.chunk_size)
        self._f.write(data)
        self.have.add(index)

    def finish(self) -> Path:
        """Check the whole blob once more and make it the store's copy."""
        assert len(self.have) == self.manifest.count
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.truncate(self.manifest.size)
        self._f.close()
        self.have = set()
        with self.path.open("rb") as f:
            for i in range(self.manifest.count):
                if chunk_hash(f.read(self.manifest.chunk_len(i))) != self.manifest.hashes[i]:
                    raise ContentError(f"chunk {i} changed on disk")
        os.replace(self.path, self.final)
        return self.final

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._f.close()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
