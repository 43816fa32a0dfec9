"""The transport contract the daemon and tests code against, plus identity and membership.

`Transport` is implemented by `TcpTransport` (hzp2p.net.tcp) and `SimTransport`
(hzp2p.net.simnet); one contract test suite runs against both. Its docstrings
are the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import nacl.signing
import trio

from hzp2p.net.inbound import Inbound, InboundQueue
from hzp2p.net.stats import TransportStatistics
from hzp2p.raft.types import NodeId

__all__ = [
    "Inbound",
    "InboundQueue",
    "MembershipProvider",
    "NodeIdentity",
    "StaticMembership",
    "Transport",
    "verify_signature",
]


@runtime_checkable
class Transport(Protocol):
    """Best-effort, authenticated, per-peer-FIFO message delivery between consortium members.

    Contract:
    * `run` serves until cancelled; it calls `task_status.started()` once the
      transport accepts `send_nowait` (and, for TCP, once the listener is bound).
      Cancelling it closes every connection; it never swallows trio.Cancelled.
    * `send_nowait(dst, msg)` never blocks. It returns True if the message was
      queued for `dst`, False if it was dropped (per-peer queue full: the
      *newest* message is dropped and counted in `messages_dropped`; or `dst`
      is not a member). A True return is not a delivery promise: messages can
      still be lost when a connection breaks. Raft tolerates loss (it
      retransmits on heartbeat/append timeouts), so nothing retries here.
      Sending an unregistered or oversized message raises LocalProtocolError.
    * Messages from one sender to one receiver arrive in the order sent,
      at most once, never corrupted; a routed message (with src/dst) always has
      `msg.src == sender` and `msg.dst == this node` (anything else is refused).
    * `receive()` returns the next (sender, message) — Inbound, the sender
      being the authenticated peer; `inbound` is the same bounded queue
      (InboundQueue: `receive_nowait()` / `receive_batch_nowait(n)` drain a
      burst without a checkpoint per message). When it is full, TCP applies
      back-pressure to the sending peer and the simulator drops.
    * Messages of the transport's own kinds (PeerRecords) are consumed by the
      transport and never delivered.
    * `connected_peers()` is the set of member ids we can currently exchange
      messages with; `statistics()` is a snapshot of the counters.
    * `membership_changed()` tells the transport the provider's member set
      changed: peers no longer members (or whose key changed) are disconnected
      and forgotten, new members become reachable.
    """

    @property
    def node_id(self) -> NodeId: ...

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    def send_nowait(self, dst: NodeId, msg: Any) -> bool: ...

    async def receive(self) -> Inbound: ...

    @property
    def inbound(self) -> InboundQueue: ...

    def connected_peers(self) -> frozenset[NodeId]: ...

    def statistics(self) -> TransportStatistics: ...

    def membership_changed(self) -> None: ...


class MembershipProvider(Protocol):
    """Node id -> Ed25519 node key of every current member (genesis plus committed changes).

    Supplied by the daemon and updated as membership changes; the transport
    reads it on every handshake and discovery record, and re-reads it when
    told `membership_changed()`.
    """

    def node_key(self, node_id: NodeId) -> bytes | None: ...

    def members(self) -> Mapping[NodeId, bytes]: ...


class StaticMembership:
    """A MembershipProvider backed by a dict; `set_members` replaces it (tests, genesis-only use)."""

    def __init__(self, members: Mapping[NodeId, bytes]) -> None:
        self._members: dict[NodeId, bytes] = dict(members)

    def node_key(self, node_id: NodeId) -> bytes | None:
        return self._members.get(node_id)

    def members(self) -> Mapping[NodeId, bytes]:
        return dict(self._members)

    def set_members(self, members: Mapping[NodeId, bytes]) -> None:
        self._members = dict(members)


@dataclass(frozen=True)
class NodeIdentity:
    """A node id and its Ed25519 signing key (the node key is its verify key, 32 bytes)."""

    node_id: NodeId
    signing_key: nacl.signing.SigningKey

    @classmethod
    def generate(cls, node_id: NodeId) -> NodeIdentity:
        return cls(node_id, nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, node_id: NodeId, seed: bytes) -> NodeIdentity:
        return cls(node_id, nacl.signing.SigningKey(seed))

    @property
    def node_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def sign(self, data: bytes) -> bytes:
        return bytes(self.signing_key.sign(data).signature)

    def __repr__(self) -> str:  # never print the key
        return f"NodeIdentity(node_id={self.node_id}, node_key={self.node_key.hex()[:16]}...)"


def verify_signature(node_key: bytes, data: bytes, signature: bytes) -> bool:
    """True iff `signature` is node_key's Ed25519 signature of `data` (never raises)."""
    try:
        nacl.signing.VerifyKey(node_key).verify(data, signature)
    except Exception:
        return False
    return True
