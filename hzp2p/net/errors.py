"""Typed errors of the transport: the only exceptions that leave hzp2p.net.

Everything a remote peer can get wrong (garbage bytes, oversized or tampered
frames, unknown message kinds, ill-typed fields, a failed handshake) raises
`RemoteProtocolError` at the edge; the connection is dropped and counted, and
nothing reaches the Raft core. Our own misuse (sending an unregistered or
oversized message) raises `LocalProtocolError`. Both derive from `NetError`.
"""

from __future__ import annotations


class NetError(Exception):
    """Base class of every error raised by hzp2p.net."""


class RemoteProtocolError(NetError):
    """The peer sent something we refuse; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class OversizedFrame(RemoteProtocolError):
    """A frame header declared more bytes than the receiver accepts (reason "oversized_frame")."""

    def __init__(self, declared_bytes: int, max_frame_bytes: int) -> None:
        self.declared_bytes = declared_bytes
        self.max_frame_bytes = max_frame_bytes
        super().__init__(
            "oversized_frame", f"declared {declared_bytes} bytes > max_frame_bytes={max_frame_bytes}"
        )


class HandshakeRefused(RemoteProtocolError):
    """The handshake failed: wrong chain, unknown key, id mismatch, bad signature, timeout."""


class LocalProtocolError(NetError):
    """We tried to do something the protocol forbids (unregistered kind, oversized message)."""
