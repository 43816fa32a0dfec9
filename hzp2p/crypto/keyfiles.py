"""Reading an Ed25519 key file: the format and the permission check, below every layer that signs.

The node (hzp2p.node.keys writes and generates key files) and the admin CLI (which signs
with an institution's key file for an institution without its own daemon) read them the
same way. Format: the 32-byte seed as 64 hex digits and a newline. A file readable or
writable by group or others is refused (like OpenSSH), telling the operator to `chmod 600`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.signing import SigningKey

SEED_BYTES = 32


class KeyFileError(Exception):
    """A key file is missing, malformed, or too open; str() says which file and why."""


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """Read a key file written by write_key_file; KeyFileError if missing, malformed or too open."""
    return SigningKey(load_seed_file(path, "Ed25519 seed"))


def load_seed_file(path: str | os.PathLike[str], what: str = "32-byte secret") -> bytes:
    """The 32 bytes of a key file (an Ed25519 seed, or an X25519 private key of the node's
    encryption key store); KeyFileError if missing, malformed or readable by group or
    others. The error never quotes the file's content."""
    source = Path(path)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(f"{source}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{source}: cannot open key file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{source}: not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"{source}: permissions {stat.S_IMODE(st.st_mode):04o} are too open "
                f"(group or others can access it); run `chmod 600 {source}`"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii").strip()
        seed = bytes.fromhex(text)
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"{source}: not a hex-encoded {what}") from None
    if len(seed) != SEED_BYTES:
        raise KeyFileError(
            f"{source}: {what} must be {SEED_BYTES} bytes ({2 * SEED_BYTES} hex digits), "
            f"got {len(seed)} bytes"
        )
    return seed
