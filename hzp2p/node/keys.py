"""Ed25519 key files: generate, write owner-only, load with clear errors.

It owns the on-disk format and the permission policy of a node's two secret
keys (the institution's signing key and the daemon's transport key), so that
`hzp2p init` writes them and `hzp2p run` reads them the same way.

Format: a text file holding the 32-byte Ed25519 seed as 64 hex digits and a
newline. The public (verify) key is derived from it; `verify_key_hex()` gives
the form used in genesis files and `admin add-learner`.

Permissions policy (chosen: refuse, like OpenSSH): a key file readable or
writable by group or others is refused with KeyFileError telling the operator
to `chmod 600` it. Files are created with os.open(..., O_CREAT | O_EXCL, 0o600)
so they are never world-readable, not even between create and chmod, and an
existing file is never overwritten unless asked (then via an 0600 temp file
and an atomic rename).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from nacl.signing import SigningKey

from hzp2p.crypto.keyfiles import SEED_BYTES, KeyFileError, load_seed_file, load_signing_key

__all__ = ["SEED_BYTES", "KeyFileError", "generate_key_file", "generate_signing_key", "load_seed_file",
           "load_signing_key", "verify_key_hex", "write_key_file", "write_seed_file"]

KEY_FILE_MODE = 0o600


def generate_signing_key() -> SigningKey:
    """A fresh Ed25519 key from the OS's CSPRNG."""
    return SigningKey.generate()


def verify_key_hex(key: SigningKey) -> str:
    """The public key as 64 hex digits."""
    return bytes(key.verify_key).hex()


def write_key_file(path: str | os.PathLike[str], key: SigningKey, *, overwrite: bool = False) -> Path:
    """Write `key` to `path` with mode 0600; refuses to replace an existing file unless asked."""
    return write_seed_file(path, bytes(key), overwrite=overwrite)


def write_seed_file(path: str | os.PathLike[str], seed: bytes, *, overwrite: bool = False) -> Path:
    """Write a 32-byte secret (an Ed25519 seed or an X25519 private key) in the key-file
    format, mode 0600 from the start; refuses to replace an existing file unless asked."""
    assert len(seed) == SEED_BYTES
    target = Path(path)
    content = (seed.hex() + "\n").encode("ascii")
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}") if overwrite else target
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, KEY_FILE_MODE)
    except FileExistsError:
        raise KeyFileError(f"{tmp}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"{tmp}: cannot create key file: {exc.strerror}") from None
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # the umask can only remove bits; be explicit anyway
        os.write(fd, content)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    if overwrite:
        os.replace(tmp, target)
    return target


def generate_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """Generate a key and write it to a new file at `path` (mode 0600)."""
    key = generate_signing_key()
    write_key_file(path, key)
    return key
