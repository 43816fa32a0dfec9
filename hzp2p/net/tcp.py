"""TcpTransport: the real Transport over TCP on Trio (listener, dialers, discovery, sessions).

One connection per peer pair: both sides dial a member they are not
connected to; if two sessions to the same peer come up, both ends keep the
one dialled by the lower node id (a session replacing a silent one dialled
by the same side also wins, so a restarted peer is accepted at once).
Failed dials back off exponentially with jitter from an injected
random.Random, capped at `backoff_max_s` (1 s: a consortium has a handful of
voters, so redialling each once a second costs nothing), each attempt giving
up after `connect_timeout_s` so a SYN lost in a partition is re-sent from a
fresh socket rather than after the kernel's growing SYN back-off.

Recovering from partitions (issue 22). A partition made of silently dropped
packets leaves both ends with a half-open connection that TCP keeps retrying
with exponentially growing retransmission intervals, so after the heal a link
can stay dead for many seconds; an election needing that link is slow although
a healthy majority is connected. Two rules bound this: (1) a connected peer
silent for more than two keep-alive intervals gets a replacement dial while
the old session still stands (the new session replaces the silent one at both
ends, see `_register`), repeated every keep-alive interval until one gets
through; (2) when any peer link comes up, every dial loop sleeping in back-off
retries at once (a heal usually heals more than one link).

Each peer has a bounded send queue that survives reconnects;
when it is full the newest message is dropped and counted (Raft retransmits).
Every connection-level failure is contained here: it is logged with the
peer's identity, counted, and ends only that connection.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from hzp2p.net.codec import MessageRegistry
from hzp2p.net.connection import (
    FRAME_OVERHEAD_BYTES,
    Connection,
    PeerGone,
    SendQueue,
    Signal,
    handshake_initiator,
    handshake_responder,
)
from hzp2p.net.discovery import Address, AddressBook, Verdict, make_record
from hzp2p.net.errors import LocalProtocolError, NetError, RemoteProtocolError
from hzp2p.net.handshake import ChainParams
from hzp2p.net.inbound import Inbound, InboundQueue
from hzp2p.net.schemas import MAX_PEER_RECORDS, PeerRecords, default_registry
from hzp2p.net.stats import TransportStatistics
from hzp2p.net.transport import MembershipProvider, NodeIdentity
from hzp2p.raft.types import NodeId


@dataclass(frozen=True, slots=True)
class TcpConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    """0 = any free port (see `TcpTransport.listen_address` once started)."""
    advertise_host: str | None = None
    """The host put in our peer record; defaults to listen_host."""
    seeds: tuple[Address, ...] = ()
    peer_hints: tuple[tuple[NodeId, Address], ...] = ()
    """Known (node id, address) pairs from config, used until a signed record arrives."""
    peer_overrides: tuple[tuple[NodeId, Address], ...] = ()
    """(node id, address) pairs dialled instead of any record or hint (node config
    [net.peer_addresses]; the live simulation's fault-injecting relay)."""
    max_frame_bytes: int = 8 << 20
    max_batch_bytes: int = 1 << 20
    handshake_timeout_s: float = 5.0
    connect_timeout_s: float = 1.0
    keepalive_interval_s: float = 1.0
    read_timeout_s: float = 3.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    send_queue_max_msgs: int = 16384
    send_queue_max_bytes: int = 64 << 20
    inbound_queue_max_msgs: int = 16384
    max_pending_handshakes: int = 64
    """Inbound connections still in the handshake; more are closed at once (counted)."""
    record_seq: int | None = None
    """Sequence number of our peer record; default: wall-clock microseconds (grows across restarts)."""

    def __post_init__(self) -> None:
        if self.max_batch_bytes + FRAME_OVERHEAD_BYTES > self.max_frame_bytes:
            raise ValueError("max_batch_bytes must leave room for frame overhead")
        if self.read_timeout_s <= self.keepalive_interval_s:
            raise ValueError("read_timeout_s must exceed keepalive_interval_s")


class _Peer:
    __slots__ = ("conn", "dial_scope", "ever_connected", "node_id", "queue", "replacing")

    def __init__(self, node_id: NodeId, cfg: TcpConfig) -> None:
        self.node_id = node_id
        self.queue = SendQueue(cfg.send_queue_max_msgs, cfg.send_queue_max_bytes)
        self.conn: Connection | None = None
        self.dial_scope: trio.CancelScope | None = None
        self.ever_connected = False
        self.replacing = False
        """A replacement dial for a silent connection is connecting or handshaking."""


class TcpTransport:
    """The TCP implementation of hzp2p.net.transport.Transport (see its contract)."""

    def __init__(
        self,
        identity: NodeIdentity,
        chain: ChainParams,
        membership: MembershipProvider,
        config: TcpConfig | None = None,
        *,
        registry: MessageRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._me = identity
        self._chain = chain
        self._membership = membership
        self.config = config or TcpConfig()
        self.registry = registry or default_registry()
        self._rng = rng or random.Random()
        self._stats = TransportStatistics()
        self._peers: dict[NodeId, _Peer] = {}
        self._book = AddressBook(identity, chain, membership)
        for nid, addr in self.config.peer_hints:
            self._book.add_hint(nid, addr)
        self._overrides: dict[NodeId, Address] = dict(self.config.peer_overrides)
        self._changed = Signal()
        self._link_up = trio.Event()
        """Set (and replaced) whenever a peer session comes up: wakes dial loops in back-off."""
        self._inbound = InboundQueue(self.config.inbound_queue_max_msgs)
        self._nursery: trio.Nursery | None = None
        self._listen: Address | None = None
        self._log = structlog.get_logger("hzp2p.net", node_id=identity.node_id)
        self._pending_handshakes = 0
        self._max_msg_bytes = self.config.max_frame_bytes - FRAME_OVERHEAD_BYTES - 8

    # --- the Transport interface ---------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._me.node_id

    @property
    def listen_address(self) -> Address:
        if self._listen is None:
            raise LocalProtocolError("transport not started")
        return self._listen

    @property
    def address_book(self) -> AddressBook:
        return self._book

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listeners = await trio.open_tcp_listeners(cfg.listen_port, host=cfg.listen_host)
            port = listeners[0].socket.getsockname()[1]
            self._listen = (cfg.listen_host, port)
            seq = cfg.record_seq if cfg.record_seq is not None else time.time_ns() // 1000
            host = cfg.advertise_host or cfg.listen_host
            self._book.set_own(make_record(self._me, self._chain, host, port, seq))
            await nursery.start(trio.serve_listeners, self._on_accept, listeners)
            for addr in cfg.seeds:
                nursery.start_soon(self._seed_loop, addr)
            nursery.start_soon(self._maintain)
            self._log.info("net.listening", host=cfg.listen_host, port=port)
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def send_nowait(self, dst: NodeId, msg: Any) -> bool:
        peer = self._peers.get(dst) or self._ensure_peer(dst)
        if peer is None:
            self._stats.messages_dropped += 1
            return False
        if getattr(msg, "dst", dst) != dst:
            raise LocalProtocolError(f"message dst {msg.dst} != {dst}")
        data = self.registry.encode_message(msg)
        if len(data) > self._max_msg_bytes:
            raise LocalProtocolError(f"message of {len(data)} bytes exceeds the frame limit")
        if peer.queue.push(data):
            return True
        self._stats.messages_dropped += 1
        return False

    async def receive(self) -> Inbound:
        return await self._inbound.receive()

    @property
    def inbound(self) -> InboundQueue:
        return self._inbound

    def peer_addresses(self) -> dict[NodeId, Address]:
        """Best known address of every other member (signed records first, then config hints)."""
        return self._book.addresses()

    def connected_peers(self) -> frozenset[NodeId]:
        return frozenset(n for n, p in self._peers.items() if p.conn is not None)

    def statistics(self) -> TransportStatistics:
        s = self._stats.snapshot()
        s.connections_current = len(self.connected_peers())
        return s

    def set_identity(self, identity: NodeIdentity) -> None:
        """Present another node key from now on (a key rotation, hzp2p.node.rotation): new
        handshakes and the signed address record use it; open connections stay (they were
        authenticated with the key in force when they opened)."""
        assert identity.node_id == self._me.node_id, "a node keeps its id"
        self._me = identity
        self._book._me = identity
        own = self._book.own()
        if own is not None:
            self._book.set_own(make_record(identity, self._chain, own.host, own.port, own.seq + 1))
        self._changed.set()

    def membership_changed(self) -> None:
        members = self._membership.members()
        for nid, peer in list(self._peers.items()):
            if nid not in members or (peer.conn is not None and peer.conn.peer_key != members[nid]):
                self._forget(nid)
        for nid in self._book.prune():
            self._log.info("net.peer_forgotten", peer=nid)
        self._changed.set()

    # --- peers and dialling --------------------------------------------------------------

    def _ensure_peer(self, nid: NodeId) -> _Peer | None:
        if nid == self._me.node_id or self._membership.node_key(nid) is None:
            return None
        peer = self._peers.get(nid)
        if peer is None:
            peer = self._peers[nid] = _Peer(nid, self.config)
            self._changed.set()
        return peer

    def _forget(self, nid: NodeId) -> None:
        peer = self._peers.pop(nid, None)
        if peer is None:
            return
        if peer.conn is not None:
            peer.conn.close()
        if peer.dial_scope is not None:
            peer.dial_scope.cancel()
        self._stats.messages_dropped += peer.queue.clear()
        self._log.info("net.peer_removed", peer=nid)

    async def _maintain(self) -> None:
        """Start a dial loop for every member we know an address for; re-check periodically."""
        while True:
            for nid in self._membership.members():
                peer = self._ensure_peer(nid)
                if peer is not None and peer.dial_scope is None and self._nursery is not None:
                    peer.dial_scope = trio.CancelScope()
                    self._nursery.start_soon(self._dial_loop, peer, peer.dial_scope)
            for nid in [n for n in self._peers if self._membership.node_key(n) is None]:
                self._forget(nid)
            self._book.prune()
            self._replace_silent()
            with trio.move_on_after(self.config.keepalive_interval_s):
                await self._changed.wait()

    def _replace_silent(self) -> None:
        """Start a replacement dial for every connected peer silent for two keep-alives."""
        now, nursery = trio.current_time(), self._nursery
        silent_s = 2 * self.config.keepalive_interval_s
        for peer in self._peers.values():
            conn = peer.conn
            if (
                conn is not None and nursery is not None and not peer.replacing
                and now - conn.last_recv_s > silent_s
            ):
                peer.replacing = True
                self._stats.stale_replacements += 1
                nursery.start_soon(self._replace, peer)

    async def _replace(self, peer: _Peer) -> None:
        try:
            addr = self._overrides.get(peer.node_id) or self._book.address_of(peer.node_id)
            if addr is None:
                return
            self._log.info("net.replacing_silent_connection", peer=peer.node_id)
            session = await self._connect(addr, peer.node_id)
        finally:
            peer.replacing = False
        if session is not None:
            await self._serve(*session, self._me.node_id, f"{addr[0]}:{addr[1]}")

    def _backoff_s(self, attempt: int) -> float:
        cfg = self.config
        base = min(cfg.backoff_max_s, cfg.backoff_initial_s * math.pow(2.0, min(attempt, 30)))
        return base * (0.5 + 0.5 * self._rng.random())

    async def _dial_loop(self, peer: _Peer, scope: trio.CancelScope) -> None:
        attempt = 0
        with scope:
            while self._peers.get(peer.node_id) is peer:
                if peer.conn is not None:
                    await peer.conn.closed.wait()
                    attempt = 0
                    await trio.sleep(self._backoff_s(0))
                    continue
                addr = self._overrides.get(peer.node_id) or self._book.address_of(peer.node_id)
                if addr is None:
                    with trio.move_on_after(self.config.keepalive_interval_s):
                        await self._changed.wait()
                    continue
                if peer.node_id < self._me.node_id and attempt == 0:
                    # The lower id's dial is the one both ends keep: give it a head start
                    # so simultaneous dials (and the churn of resolving them) are rare.
                    await trio.sleep(self._backoff_s(2))
                    if (
                        self._peers.get(peer.node_id) is not peer
                        or peer.node_id in self.connected_peers()
                    ):
                        continue
                if not await self._dial(addr, peer.node_id):
                    link_up = self._link_up
                    with trio.move_on_after(self._backoff_s(attempt)):
                        await link_up.wait()
                    if link_up.is_set():  # another link came up: a heal; retry at once
                        self._stats.backoff_resets += 1
                        attempt = 0
                    else:
                        attempt += 1
                else:
                    attempt = 0

    async def _seed_loop(self, addr: Address) -> None:
        """Dial a seed (id unknown) until some member's known address is this one."""
        attempt = 0
        own = self._book.own()
        if addr == self._listen or (own is not None and addr == (own.host, own.port)):
            return  # configs may list every node, this one included
        while not self._book.knows_address(addr):
            if await self._dial(addr, None):
                return
            await trio.sleep(self._backoff_s(attempt))
            attempt += 1

    async def _dial(self, addr: Address, expected: NodeId | None) -> bool:
        """Connect, handshake and serve one session; False if we never got a session."""
        session = await self._connect(addr, expected)
        if session is None:
            return False
        await self._serve(*session, self._me.node_id, f"{addr[0]}:{addr[1]}")
        return True

    async def _connect(
        self, addr: Address, expected: NodeId | None
    ) -> tuple[trio.SocketStream, Any, bytes] | None:
        """Connect and handshake; (stream, result, leftover bytes), or None (counted, logged)."""
        cfg = self.config
        try:
            with trio.fail_after(cfg.connect_timeout_s):
                stream = await trio.open_tcp_stream(*addr)
        except (OSError, trio.TooSlowError) as exc:
            self._stats.dial_failures += 1
            self._log.debug("net.dial_failed", peer=expected, address=addr, error=str(exc))
            return None
        try:
            with trio.fail_after(cfg.handshake_timeout_s):
                result, rest = await handshake_initiator(
                    stream, self._me, self._chain, self._membership, expected
                )
        except BaseException as exc:
            handled = self._handshake_failed(exc, addr, expected)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            if not handled:
                raise
            return None
        if expected is None:
            self._book.add_hint(result.peer_id, addr)
        return stream, result, rest

    async def _on_accept(self, stream: trio.SocketStream) -> None:
        try:
            host, port = stream.socket.getpeername()[:2]
            address = f"{host}:{port}"
        except OSError:
            address = "?"
        if self._pending_handshakes >= self.config.max_pending_handshakes:
            self._stats.handshakes_refused += 1
            self._log.warning("net.handshake_refused", address=address, reason="too_many_pending")
            await trio.aclose_forcefully(stream)
            return
        self._pending_handshakes += 1
        try:
            with trio.fail_after(self.config.handshake_timeout_s):
                result, rest = await handshake_responder(
                    stream, self._me, self._chain, self._membership
                )
        except BaseException as exc:
            handled = self._handshake_failed(exc, address, None)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            if not handled:
                raise
            return
        finally:
            self._pending_handshakes -= 1
        await self._serve(stream, result, rest, result.peer_id, address)

    def _handshake_failed(self, exc: BaseException, address: object, peer: NodeId | None) -> bool:
        """Count and log a failed handshake; False if `exc` must propagate (Cancelled, ^C)."""
        if isinstance(exc, trio.TooSlowError):
            reason = "handshake_timeout"
        elif isinstance(exc, RemoteProtocolError):
            reason = exc.reason
        elif isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
            reason = "connection_lost"
        elif isinstance(exc, Exception):  # a bug must cost one connection, never the node
            reason = "internal_error"
            self._log.error("net.handshake_internal_error", address=address, exc_info=exc)
        else:
            return False
        self._stats.handshakes_refused += 1
        self._log.warning(
            "net.handshake_refused", peer=peer, address=address, reason=reason, detail=str(exc)
        )
        return True

    # --- sessions ------------------------------------------------------------------------

    def _register(self, conn: Connection) -> bool:
        peer = self._ensure_peer(conn.peer_id)
        if peer is None:
            return False
        old = peer.conn
        if old is not None:
            winner = min(self._me.node_id, conn.peer_id)
            stale = trio.current_time() - old.last_recv_s > 2 * self.config.keepalive_interval_s
            if (
                old.dialer == conn.dialer
                or (conn.dialer == winner and old.dialer != winner)
                or stale
            ):
                old.close()
            else:
                self._stats.duplicate_connections_closed += 1
                return False
        peer.conn = conn
        if peer.ever_connected:
            self._stats.reconnects += 1
        peer.ever_connected = True
        self._link_up.set()
        self._link_up = trio.Event()
        return True

    async def _serve(
        self, stream: trio.SocketStream, result: Any, rest: bytes, dialer: NodeId, address: str
    ) -> None:
        peer = self._ensure_peer(result.peer_id)
        if peer is None:  # membership changed during the handshake
            await trio.aclose_forcefully(stream)
            return
        self._stats.handshakes_ok += 1
        cfg = self.config
        conn = Connection(
            stream=stream,
            result=result,
            leftover=rest,
            me=self._me.node_id,
            dialer=dialer,
            address=address,
            registry=self.registry,
            stats=self._stats,
            queue=peer.queue,
            deliver=self._deliver,
            max_frame_bytes=cfg.max_frame_bytes,
            max_batch_bytes=cfg.max_batch_bytes,
            keepalive_interval_s=cfg.keepalive_interval_s,
            read_timeout_s=cfg.read_timeout_s,
        )
        if not self._register(conn):
            await trio.aclose_forcefully(stream)
            return
        self._stats.connections_opened += 1
        plog = structlog.get_logger(
            "hzp2p.net", node_id=self._me.node_id, peer=conn.peer_id, address=address
        )
        plog.info("net.connected", dialer=dialer)
        self._gossip_to(conn.peer_id, self._book.records())
        reason = "closed"
        try:
            await conn.run()
        except RemoteProtocolError as exc:
            self._stats.frames_refused += 1
            reason = exc.reason
            plog.warning("net.frame_refused", reason=exc.reason, detail=exc.detail)
        except PeerGone as exc:
            reason = str(exc)
        except NetError as exc:  # LocalProtocolError while sealing: our bug, contained
            reason = "local_error"
            plog.error("net.local_error", error=str(exc))
        except Exception:  # a bug must cost one connection, never the node
            reason = "internal_error"
            plog.exception("net.internal_error")
        finally:
            self._stats.connections_closed += 1
            if peer.conn is conn:
                peer.conn = None
            self._changed.set()
        plog.info("net.disconnected", reason=reason)

    async def _deliver(self, src: NodeId, msgs: list[Any]) -> None:
        for msg in msgs:
            if type(msg) is PeerRecords:
                self._on_records(src, msg)
                msgs = [m for m in msgs if type(m) is not PeerRecords]
                break
        if msgs:
            await self._inbound.put_batch(src, msgs)

    # --- discovery -----------------------------------------------------------------------

    def _gossip_to(self, nid: NodeId, records: list[Any]) -> None:
        for i in range(0, len(records), MAX_PEER_RECORDS):
            self.send_nowait(nid, PeerRecords(tuple(records[i : i + MAX_PEER_RECORDS])))

    def _on_records(self, src: NodeId, msg: PeerRecords) -> None:
        fresh = []
        for rec in msg.records:
            verdict = self._book.learn(rec)
            if verdict is Verdict.ACCEPTED:
                self._stats.peer_records_accepted += 1
                fresh.append(rec)
                self._log.info(
                    "net.peer_record",
                    peer=rec.node_id,
                    host=rec.host,
                    port=rec.port,
                    seq=rec.seq,
                    via=src,
                )
            elif verdict is Verdict.REJECTED:
                self._stats.peer_records_rejected += 1
                self._log.warning("net.peer_record_rejected", peer=rec.node_id, via=src)
        if fresh:
            self._changed.set()
            for nid, peer in self._peers.items():
                if nid != src and peer.conn is not None:
                    self._gossip_to(nid, fresh)
