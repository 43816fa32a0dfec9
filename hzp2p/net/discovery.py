"""Peer discovery: member-signed peer records and the address book built from them.

A peer record says "member N (node key K) listens at host:port, version seq",
signed by K over the chain id and genesis hash too (so it cannot be replayed on
another chain). A record is accepted only if N is a current member whose key
is K, the signature verifies, and seq is higher than the record we hold for N:
so a node learns the addresses of members it was never configured with from
any peer, a member's newer record replaces its old one, and nobody can
redirect traffic for a member without that member's key. Records of removed
members (or members whose key changed) are forgotten by `prune()`. Seed
addresses from the config are unsigned hints, used only until a signed
record for that member arrives.
"""

from __future__ import annotations

import enum

import msgpack

from hzp2p.net.handshake import ChainParams
from hzp2p.net.schemas import PeerRecord
from hzp2p.net.transport import MembershipProvider, NodeIdentity, verify_signature
from hzp2p.raft.types import NodeId

Address = tuple[str, int]
_LABEL = "hzp2p/peer-record/v1"


def record_signing_bytes(
    chain: ChainParams, node_id: NodeId, node_key: bytes, host: str, port: int, seq: int
) -> bytes:
    return msgpack.packb(  # type: ignore[no-any-return]
        [_LABEL, chain.chain_id, chain.genesis_hash, node_id, node_key, host, port, seq],
        use_bin_type=True,
    )


def make_record(
    identity: NodeIdentity, chain: ChainParams, host: str, port: int, seq: int
) -> PeerRecord:
    """This node's own record, signed with its node key."""
    sig = identity.sign(
        record_signing_bytes(chain, identity.node_id, identity.node_key, host, port, seq)
    )
    return PeerRecord(identity.node_id, identity.node_key, host, port, seq, sig)


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    STALE = "stale"  # valid, but not newer than what we hold (or our own id)
    REJECTED = "rejected"  # not a member, wrong key, or bad signature


class AddressBook:
    """Where each member listens: signed records first, config hints second."""

    def __init__(
        self, me: NodeIdentity, chain: ChainParams, membership: MembershipProvider
    ) -> None:
        self._me = me
        self._chain = chain
        self._membership = membership
        self._records: dict[NodeId, PeerRecord] = {}
        self._hints: dict[NodeId, Address] = {}
        self.version = 0
        """Bumped whenever an address may have changed (dial loops wait on it)."""

    def set_own(self, record: PeerRecord) -> None:
        self._records[self._me.node_id] = record
        self.version += 1

    def own(self) -> PeerRecord | None:
        return self._records.get(self._me.node_id)

    def add_hint(self, node_id: NodeId, address: Address) -> None:
        if node_id != self._me.node_id and self._hints.get(node_id) != address:
            self._hints[node_id] = address
            self.version += 1

    def verify(self, rec: PeerRecord) -> bool:
        key = self._membership.node_key(rec.node_id)
        if key is None or key != rec.node_key:
            return False
        data = record_signing_bytes(
            self._chain, rec.node_id, rec.node_key, rec.host, rec.port, rec.seq
        )
        return verify_signature(rec.node_key, data, rec.signature)

    def learn(self, rec: PeerRecord) -> Verdict:
        if rec.node_id == self._me.node_id:
            return Verdict.STALE
        old = self._records.get(rec.node_id)
        if old is not None and old.node_key == rec.node_key and rec.seq <= old.seq:
            return Verdict.STALE
        if not self.verify(rec):
            return Verdict.REJECTED
        self._records[rec.node_id] = rec
        self.version += 1
        return Verdict.ACCEPTED

    def address_of(self, node_id: NodeId) -> Address | None:
        rec = self._records.get(node_id)
        if rec is not None:
            return (rec.host, rec.port)
        return self._hints.get(node_id)

    def knows_address(self, address: Address) -> bool:
        return any((r.host, r.port) == address for r in self._records.values()) or (
            address in self._hints.values()
        )

    def records(self) -> list[PeerRecord]:
        """Every signed record we hold (ours included), for gossip."""
        return list(self._records.values())

    def addresses(self) -> dict[NodeId, Address]:
        out = dict(self._hints)
        out.update({n: (r.host, r.port) for n, r in self._records.items()})
        out.pop(self._me.node_id, None)
        return out

    def prune(self) -> list[NodeId]:
        """Forget records and hints of nodes that are no longer members (or changed key)."""
        members = self._membership.members()
        gone = [
            n
            for n, r in self._records.items()
            if n != self._me.node_id and members.get(n) != r.node_key
        ]
        for n in gone:
            del self._records[n]
        gone_hints = [n for n in self._hints if n not in members]
        for n in gone_hints:
            del self._hints[n]
        if gone or gone_hints:
            self.version += 1
        return sorted(set(gone) | set(gone_hints))
