"""One established, encrypted connection to one peer: handshake driver, reader and writer.

The handshake runs over the raw stream under a timeout; afterwards the writer
drains the *peer's* bounded send queue (it outlives connections) into frames
of up to `max_batch_bytes` (many messages, one frame, one AEAD, one write) and
sends an empty frame as keep-alive when idle, and the reader refuses any
frame that does not decrypt, decode and validate, and gives up on a peer
silent for `read_timeout_s`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from hzp2p.net.codec import MessageRegistry
from hzp2p.net.errors import HandshakeRefused, NetError, RemoteProtocolError
from hzp2p.net.framing import HEADER_BYTES, FrameDecoder, encode_frame, frame_header
from hzp2p.net.handshake import (
    MAX_HANDSHAKE_FRAME_BYTES,
    ChainParams,
    HandshakeResult,
    Initiator,
    Responder,
)
from hzp2p.net.session import TAG_BYTES
from hzp2p.net.stats import TransportStatistics
from hzp2p.net.transport import MembershipProvider, NodeIdentity
from hzp2p.raft.types import NodeId

RECV_BYTES = 256 * 1024
FRAME_OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES + 8  # length, tag, version byte + array header


class PeerGone(Exception):
    """The connection ended for a non-protocol reason (EOF, read timeout, reset)."""


class Signal:
    """A reusable wake-up: `set()` from sync code, `await wait()` from one task."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class SendQueue:
    """A peer's bounded outbox of encoded messages. Policy: when full, the NEWEST is dropped."""

    __slots__ = ("items", "max_bytes", "max_msgs", "queued_bytes", "signal")

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self.items: deque[bytes] = deque()
        self.queued_bytes = 0
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.signal = Signal()

    def push(self, data: bytes) -> bool:
        if len(self.items) >= self.max_msgs or self.queued_bytes + len(data) > self.max_bytes:
            return False
        self.items.append(data)
        self.queued_bytes += len(data)
        if len(self.items) == 1:
            self.signal.set()
        return True

    def pop_batch(self, max_batch_bytes: int) -> list[bytes]:
        items = self.items
        if self.queued_bytes <= max_batch_bytes:  # common case: take everything
            out = list(items)
            items.clear()
            self.queued_bytes = 0
            return out
        out = [items.popleft()]
        size = len(out[0])
        while items and size + len(items[0]) <= max_batch_bytes:
            d = items.popleft()
            size += len(d)
            out.append(d)
        self.queued_bytes -= size
        return out

    def clear(self) -> int:
        n = len(self.items)
        self.items.clear()
        self.queued_bytes = 0
        return n


async def _read_frame(stream: trio.abc.Stream, decoder: FrameDecoder) -> bytes:
    while (body := decoder.next_frame()) is None:
        data = await stream.receive_some(4096)
        if not data:
            raise HandshakeRefused("eof", "peer closed during handshake")
        decoder.feed(data)
    return body


async def handshake_initiator(
    stream: trio.abc.Stream,
    me: NodeIdentity,
    chain: ChainParams,
    membership: MembershipProvider,
    expected_peer: NodeId | None,
) -> tuple[HandshakeResult, bytes]:
    """Run the dialling side; returns the result and any bytes read past the handshake."""
    ini = Initiator(me, chain, membership, expected_peer)
    dec = FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES)
    await stream.send_all(encode_frame(ini.hello_frame(), MAX_HANDSHAKE_FRAME_BYTES))
    finish, result = ini.on_reply(await _read_frame(stream, dec))
    await stream.send_all(encode_frame(finish, MAX_HANDSHAKE_FRAME_BYTES))
    return result, dec.take_remaining()


async def handshake_responder(
    stream: trio.abc.Stream, me: NodeIdentity, chain: ChainParams, membership: MembershipProvider
) -> tuple[HandshakeResult, bytes]:
    """Run the accepting side; returns the result and any bytes read past the handshake."""
    resp = Responder(me, chain, membership)
    dec = FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES)
    reply = resp.on_hello(await _read_frame(stream, dec))
    await stream.send_all(encode_frame(reply, MAX_HANDSHAKE_FRAME_BYTES))
    result = resp.on_finish(await _read_frame(stream, dec))
    return result, dec.take_remaining()


Deliver = Callable[[NodeId, list[Any]], Awaitable[None]]


class Connection:
    """An authenticated session with `peer_id`; `run()` until EOF, timeout, refusal or cancel."""

    def __init__(
        self,
        *,
        stream: trio.abc.Stream,
        result: HandshakeResult,
        leftover: bytes,
        me: NodeId,
        dialer: NodeId,
        address: str,
        registry: MessageRegistry,
        stats: TransportStatistics,
        queue: SendQueue,
        deliver: Deliver,
        max_frame_bytes: int,
        max_batch_bytes: int,
        keepalive_interval_s: float,
        read_timeout_s: float,
    ) -> None:
        self.stream = stream
        self.peer_id = result.peer_id
        self.peer_key = result.peer_key
        self.cipher = result.cipher
        self.me = me
        self.dialer = dialer
        self.address = address
        self.registry = registry
        self.stats = stats
        self.queue = queue
        self.deliver = deliver
        self.max_frame_bytes = max_frame_bytes
        self.max_batch_bytes = max_batch_bytes
        self.keepalive_interval_s = keepalive_interval_s
        self.read_timeout_s = read_timeout_s
        self.decoder = FrameDecoder(max_frame_bytes)
        self.decoder.feed(leftover)
        self.cancel_scope = trio.CancelScope()
        self.closed = trio.Event()
        self.last_recv_s = trio.current_time()
        self.error: NetError | PeerGone | None = None

    def close(self) -> None:
        self.cancel_scope.cancel()

    async def run(self) -> None:
        """Serve the connection; raises RemoteProtocolError / PeerGone, returns when closed."""
        try:
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._writer)
                    await self._guard(self._reader)
            if self.error is not None:
                raise self.error
        finally:
            self.closed.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _guard(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run reader or writer; the first error ends both and is re-raised by `run` unwrapped."""
        try:
            await fn()
        except (NetError, PeerGone) as exc:
            if self.error is None:
                self.error = exc
            self.cancel_scope.cancel()

    async def _reader(self) -> None:
        stream, dec, stats = self.stream, self.decoder, self.stats
        cipher, registry, peer, me = self.cipher, self.registry, self.peer_id, self.me
        while True:
            while (body := dec.next_frame()) is not None:
                plaintext = cipher.open(body)
                msgs = registry.decode_batch(plaintext, src=peer, dst=me)
                stats.frames_received += 1
                stats.bytes_received += len(body) + HEADER_BYTES
                if msgs:
                    stats.messages_received += len(msgs)
                    await self.deliver(peer, msgs)
            data: bytes | bytearray = b""
            with trio.move_on_after(self.read_timeout_s):
                try:
                    data = await stream.receive_some(RECV_BYTES)
                except (trio.BrokenResourceError, OSError) as exc:
                    raise PeerGone(f"connection broken: {exc}") from None
                if not data:
                    raise PeerGone("eof")
            if not data:
                stats.read_timeouts += 1
                raise PeerGone(f"read timeout after {self.read_timeout_s}s")
            self.last_recv_s = trio.current_time()
            dec.feed(data)

    async def _writer(self) -> None:
        queue, cipher, stream, stats = self.queue, self.cipher, self.stream, self.stats
        join = MessageRegistry.join_batch
        budget = self.max_batch_bytes
        while True:
            if not queue.items:
                with trio.move_on_after(self.keepalive_interval_s):
                    while not queue.items:  # a stale wake-up is not a reason to send
                        await queue.signal.wait()
            parts = queue.pop_batch(budget) if queue.items else []
            body = cipher.seal(join(parts))
            try:
                if len(body) < 65536:
                    await stream.send_all(encode_frame(body, self.max_frame_bytes))
                else:  # large frame: two writes beat copying the body behind its header
                    await stream.send_all(frame_header(body, self.max_frame_bytes))
                    await stream.send_all(body)
            except (trio.BrokenResourceError, OSError) as exc:
                raise PeerGone(f"send failed: {exc}") from None
            stats.frames_sent += 1
            stats.bytes_sent += len(body) + HEADER_BYTES
            stats.messages_sent += len(parts)


__all__ = [
    "FRAME_OVERHEAD_BYTES",
    "Connection",
    "PeerGone",
    "RemoteProtocolError",
    "SendQueue",
    "Signal",
    "handshake_initiator",
    "handshake_responder",
]
