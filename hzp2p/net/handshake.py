"""The authenticated key exchange that opens every connection (sans-IO).

Three messages, each one length-prefixed frame of msgpack, in the clear:

1. initiator -> responder  HELLO  [magic, version, chain_id, genesis_hash,
                                   node_id, node_key, eph_pk, nonce]
2. responder -> initiator  REPLY  [the same fields for the responder, signature]
3. initiator -> responder  FINISH [signature]

Both signatures are Ed25519 by the node key over a role label and the
transcript hash H = BLAKE2b(chain_id, genesis_hash, both node ids, both node
keys, both ephemeral X25519 keys, both 32-byte nonces), so a signature can
neither be replayed into another session nor another chain, nor reflected.
Each side refuses a wrong chain id / genesis hash, a node key that is not a
member, a key that does not belong to the claimed node id, a bad signature,
or (initiator) a responder other than the node it dialled. Session keys are
BLAKE2b(X25519(eph_sk, peer_eph_pk)) keyed by H, with a distinct
personalisation per direction. Every refusal is a HandshakeRefused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import nacl.bindings as nb

from hzp2p.net.codec import MAX_INT, PROTOCOL_VERSION
from hzp2p.net.errors import HandshakeRefused, LocalProtocolError
from hzp2p.net.session import SessionCipher
from hzp2p.net.transport import MembershipProvider, NodeIdentity, verify_signature
from hzp2p.raft.types import NodeId

MAGIC: Final = "hzp2p-hs"
NONCE_BYTES: Final = 32
MAX_HANDSHAKE_FRAME_BYTES: Final = 1024
_LABEL_RESPONDER: Final = b"hzp2p/handshake/v1/responder"
_LABEL_INITIATOR: Final = b"hzp2p/handshake/v1/initiator"


@dataclass(frozen=True, slots=True)
class ChainParams:
    """What both ends must agree on to talk at all."""

    chain_id: str
    genesis_hash: bytes

    def __post_init__(self) -> None:
        if not self.chain_id or len(self.chain_id) > 128 or not 0 < len(self.genesis_hash) <= 64:
            raise ValueError("chain_id must be 1..128 chars, genesis_hash 1..64 bytes")


@dataclass(frozen=True, slots=True)
class _Hello:
    chain_id: str
    genesis_hash: bytes
    node_id: NodeId
    node_key: bytes
    eph_pk: bytes
    nonce: bytes


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    peer_id: NodeId
    peer_key: bytes
    cipher: SessionCipher
    initiator: bool


def _refuse(reason: str, detail: str = "") -> HandshakeRefused:
    return HandshakeRefused(reason, detail)


def _unpack(body: bytes) -> list[Any]:
    if len(body) > MAX_HANDSHAKE_FRAME_BYTES:
        raise _refuse("malformed", "handshake frame too large")
    try:
        v = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception:
        raise _refuse("malformed", "handshake frame is not msgpack") from None
    if type(v) is not list:
        raise _refuse("malformed", "handshake frame is not an array")
    return v


def _bytes(v: Any, n: int) -> bytes:
    if type(v) is not bytes or len(v) != n:
        raise _refuse("malformed", f"expected {n} bytes")
    return v


def _parse_hello(fields: list[Any]) -> _Hello:
    if len(fields) != 8 or fields[0] != MAGIC:
        raise _refuse("malformed", "not an hzp2p handshake")
    if type(fields[1]) is not int or fields[1] != PROTOCOL_VERSION:
        raise _refuse("bad_version", f"protocol version {fields[1]!r}"[:64])
    chain_id, genesis, node_id = fields[2], fields[3], fields[4]
    if type(chain_id) is not str or len(chain_id) > 128:
        raise _refuse("malformed", "chain_id")
    if type(genesis) is not bytes or len(genesis) > 64:
        raise _refuse("malformed", "genesis_hash")
    if type(node_id) is not int or not 0 < node_id <= MAX_INT:
        raise _refuse("malformed", "node_id")
    return _Hello(
        chain_id,
        genesis,
        node_id,
        _bytes(fields[5], 32),
        _bytes(fields[6], 32),
        _bytes(fields[7], NONCE_BYTES),
    )


def _hello_fields(h: _Hello) -> list[Any]:
    return [
        MAGIC,
        PROTOCOL_VERSION,
        h.chain_id,
        h.genesis_hash,
        h.node_id,
        h.node_key,
        h.eph_pk,
        h.nonce,
    ]


def _transcript(chain: ChainParams, ini: _Hello, resp: _Hello) -> bytes:
    data = msgpack.packb(
        [
            chain.chain_id,
            chain.genesis_hash,
            ini.node_id,
            ini.node_key,
            ini.eph_pk,
            ini.nonce,
            resp.node_id,
            resp.node_key,
            resp.eph_pk,
            resp.nonce,
        ],
        use_bin_type=True,
    )
    return hashlib.blake2b(data, digest_size=32, person=b"hzp2p-hs-v1").digest()


def _session_keys(eph_sk: bytes, peer_eph_pk: bytes, th: bytes) -> tuple[bytes, bytes]:
    """(initiator->responder key, responder->initiator key)."""
    try:
        shared = nb.crypto_scalarmult(eph_sk, peer_eph_pk)
    except Exception:
        raise _refuse("bad_key", "invalid ephemeral key") from None
    if shared == bytes(32):
        raise _refuse("bad_key", "low-order ephemeral key")
    i2r = hashlib.blake2b(shared, digest_size=32, key=th, person=b"hzp2p-i2r-v1").digest()
    r2i = hashlib.blake2b(shared, digest_size=32, key=th, person=b"hzp2p-r2i-v1").digest()
    return i2r, r2i


def _check_peer(
    hello: _Hello, chain: ChainParams, me: NodeIdentity, membership: MembershipProvider
) -> None:
    if hello.chain_id != chain.chain_id or hello.genesis_hash != chain.genesis_hash:
        raise _refuse("wrong_chain", f"peer chain {hello.chain_id!r}"[:80])
    if hello.node_id == me.node_id:
        raise _refuse("self_connection", "peer claims our own node id")
    expected = membership.node_key(hello.node_id)
    if expected == hello.node_key:
        return
    previous = getattr(membership, "previous_node_key", None)  # optional (key rotation)
    if previous is not None and previous(hello.node_id) == hello.node_key:
        return  # a node that has not applied its own key rotation yet (a grace period)
    if hello.node_key in set(membership.members().values()):
        raise _refuse("id_mismatch", f"key does not belong to node {hello.node_id}")
    raise _refuse("unknown_key", f"node {hello.node_id}'s key is not a member key")


class _Side:
    def __init__(
        self, me: NodeIdentity, chain: ChainParams, membership: MembershipProvider
    ) -> None:
        self.me = me
        self.chain = chain
        self.membership = membership
        self._eph_pk, self._eph_sk = nb.crypto_box_keypair()
        self.hello = _Hello(
            chain.chain_id,
            chain.genesis_hash,
            me.node_id,
            me.node_key,
            self._eph_pk,
            os.urandom(NONCE_BYTES),
        )


class Initiator(_Side):
    """Dialling side: `hello()` -> send; `on_reply(body)` -> (FINISH body, result)."""

    def __init__(
        self,
        me: NodeIdentity,
        chain: ChainParams,
        membership: MembershipProvider,
        expected_peer: NodeId | None = None,
    ) -> None:
        super().__init__(me, chain, membership)
        self.expected_peer = expected_peer

    def hello_frame(self) -> bytes:
        return msgpack.packb(_hello_fields(self.hello), use_bin_type=True)  # type: ignore[no-any-return]

    def on_reply(self, body: bytes) -> tuple[bytes, HandshakeResult]:
        fields = _unpack(body)
        if len(fields) != 9:
            raise _refuse("malformed", "reply has wrong field count")
        resp = _parse_hello(fields[:8])
        sig = _bytes(fields[8], 64)
        _check_peer(resp, self.chain, self.me, self.membership)
        if self.expected_peer is not None and resp.node_id != self.expected_peer:
            raise _refuse("unexpected_peer", f"dialled {self.expected_peer}, got {resp.node_id}")
        th = _transcript(self.chain, self.hello, resp)
        if not verify_signature(resp.node_key, _LABEL_RESPONDER + th, sig):
            raise _refuse("bad_signature", f"responder {resp.node_id}")
        i2r, r2i = _session_keys(self._eph_sk, resp.eph_pk, th)
        finish = msgpack.packb([self.me.sign(_LABEL_INITIATOR + th)], use_bin_type=True)
        return finish, HandshakeResult(resp.node_id, resp.node_key, SessionCipher(i2r, r2i), True)


class Responder(_Side):
    """Accepting side: `on_hello(body)` -> REPLY body; `on_finish(body)` -> result."""

    def __init__(
        self, me: NodeIdentity, chain: ChainParams, membership: MembershipProvider
    ) -> None:
        super().__init__(me, chain, membership)
        self._peer: _Hello | None = None
        self._th = b""

    def on_hello(self, body: bytes) -> bytes:
        peer = _parse_hello(_unpack(body))
        _check_peer(peer, self.chain, self.me, self.membership)
        self._peer = peer
        self._th = _transcript(self.chain, peer, self.hello)
        sig = self.me.sign(_LABEL_RESPONDER + self._th)
        return msgpack.packb([*_hello_fields(self.hello), sig], use_bin_type=True)  # type: ignore[no-any-return]

    def on_finish(self, body: bytes) -> HandshakeResult:
        peer = self._peer
        if peer is None:
            raise LocalProtocolError("on_finish before on_hello")
        fields = _unpack(body)
        if len(fields) != 1:
            raise _refuse("malformed", "finish has wrong field count")
        sig = _bytes(fields[0], 64)
        if not verify_signature(peer.node_key, _LABEL_INITIATOR + self._th, sig):
            raise _refuse("bad_signature", f"initiator {peer.node_id}")
        # Re-check membership: it may have changed while we waited for FINISH.
        _check_peer(peer, self.chain, self.me, self.membership)
        i2r, r2i = _session_keys(self._eph_sk, peer.eph_pk, self._th)
        return HandshakeResult(peer.node_id, peer.node_key, SessionCipher(r2i, i2r), False)
