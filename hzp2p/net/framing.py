"""Length-prefixed frames, sans-IO (bytes in, frames out), h11 style: the one framing of
the peer connections (hzp2p.net.connection) and of the admin socket (hzp2p.admin.protocol).

A frame on the wire is a 4-byte big-endian length followed by that many
bytes. The decoder refuses a declared length above `max_frame_bytes` as soon
as the 4-byte header is seen (before buffering the body), so a peer cannot
make us allocate more than one maximum frame.
"""

from __future__ import annotations

from hzp2p.net.errors import LocalProtocolError, OversizedFrame

HEADER_BYTES = 4
ABSOLUTE_MAX_FRAME_BYTES = (1 << 32) - 1


def encode_frame(payload: bytes, max_frame_bytes: int) -> bytes:
    """Prefix `payload` with its length; refuses (our own) frames above the limit."""
    n = len(payload)
    if n > max_frame_bytes:
        raise LocalProtocolError(f"frame of {n} bytes exceeds max_frame_bytes={max_frame_bytes}")
    return n.to_bytes(HEADER_BYTES, "big") + payload


def frame_header(payload: bytes, max_frame_bytes: int) -> bytes:
    """Just the length prefix of `payload` (to send header and body as two writes)."""
    n = len(payload)
    if n > max_frame_bytes:
        raise LocalProtocolError(f"frame of {n} bytes exceeds max_frame_bytes={max_frame_bytes}")
    return n.to_bytes(HEADER_BYTES, "big")


class FrameDecoder:
    """Accumulates received bytes and yields complete frame bodies in order.

    `feed(data)` appends bytes; `next_frame()` returns the next complete body or
    None if more bytes are needed. Raises OversizedFrame (a RemoteProtocolError,
    reason "oversized_frame") for a declared length above `max_frame_bytes`;
    after an error the decoder is poisoned and keeps raising.
    """

    __slots__ = ("_buf", "_error", "_pos", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        if not 0 < max_frame_bytes <= ABSOLUTE_MAX_FRAME_BYTES:
            raise ValueError("max_frame_bytes out of range")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0
        self._error: OversizedFrame | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < HEADER_BYTES:
            return None
        n = int.from_bytes(buf[pos : pos + HEADER_BYTES], "big")
        if n > self.max_frame_bytes:
            self._error = OversizedFrame(n, self.max_frame_bytes)
            raise self._error
        if avail < HEADER_BYTES + n:
            return None
        start = pos + HEADER_BYTES
        with memoryview(buf) as view:  # one copy, and the export ends before any resize
            body = bytes(view[start : start + n])
        self._pos = start + n
        if self._pos > 1 << 20 and self._pos * 2 > len(buf):
            del buf[: self._pos]
            self._pos = 0
        return body

    def frames(self) -> list[bytes]:
        """All complete frames currently buffered."""
        out: list[bytes] = []
        while (f := self.next_frame()) is not None:
            out.append(f)
        return out

    def take_remaining(self) -> bytes:
        """Hand over unparsed bytes (after the handshake, to the session's decoder)."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest
