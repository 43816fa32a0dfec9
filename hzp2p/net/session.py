"""Per-direction AEAD of frames after the handshake (ChaCha20-Poly1305 IETF, counter nonces).

Each direction has its own 32-byte key and a 64-bit counter that starts at 0
and advances by one per frame; the nonce is never sent. A replayed, reordered,
dropped-then-continued, truncated or tampered frame therefore fails
authentication, and the connection is refused (RemoteProtocolError).
"""

from __future__ import annotations

import nacl.bindings as nb
import nacl.exceptions

from hzp2p.net.errors import LocalProtocolError, RemoteProtocolError

TAG_BYTES = nb.crypto_aead_chacha20poly1305_ietf_ABYTES
_MAX_COUNTER = (1 << 64) - 1
_encrypt = nb.crypto_aead_chacha20poly1305_ietf_encrypt
_decrypt = nb.crypto_aead_chacha20poly1305_ietf_decrypt


class SessionCipher:
    """Seals outgoing frame bodies and opens incoming ones, each with its own counter."""

    __slots__ = ("_recv_ctr", "_recv_key", "_send_ctr", "_send_key")

    def __init__(self, send_key: bytes, recv_key: bytes) -> None:
        if len(send_key) != 32 or len(recv_key) != 32 or send_key == recv_key:
            raise LocalProtocolError("need two distinct 32-byte keys")
        self._send_key = send_key
        self._recv_key = recv_key
        self._send_ctr = 0
        self._recv_ctr = 0

    def seal(self, plaintext: bytes) -> bytes:
        ctr = self._send_ctr
        if ctr >= _MAX_COUNTER:
            raise LocalProtocolError("send counter exhausted; reconnect")
        self._send_ctr = ctr + 1
        return _encrypt(plaintext, None, b"\0\0\0\0" + ctr.to_bytes(8, "little"), self._send_key)

    def open(self, ciphertext: bytes) -> bytes:
        ctr = self._recv_ctr
        if len(ciphertext) < TAG_BYTES:
            raise RemoteProtocolError("bad_frame", "frame shorter than the AEAD tag")
        if ctr >= _MAX_COUNTER:
            raise RemoteProtocolError("bad_frame", "receive counter exhausted")
        try:
            pt = _decrypt(ciphertext, None, b"\0\0\0\0" + ctr.to_bytes(8, "little"), self._recv_key)
        except nacl.exceptions.CryptoError:
            raise RemoteProtocolError(
                "bad_frame", "authentication failed (tampered, replayed or reordered)"
            ) from None
        self._recv_ctr = ctr + 1
        return pt
