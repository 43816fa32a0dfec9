"""Key rotation in a running daemon: where the next keys wait, and switching to them.

An institution rotates its keys by a governed transaction (`member.propose` action
`rotate_keys`, hzp2p.contracts.members) naming the new *public* keys. The daemon
must hold the private halves before that transaction commits, so they wait next to
the configured key files:

    signing.key       the keys in force            signing.key.next   the next ones
    node.key                                        node.key.next

(`hzp2p admin rotate-keys --prepare` writes the `.next` files, mode 0600, and prints
the public keys to propose.) `KeyRing` holds every key pair the daemon knows — the
current ones, the pending ones, and the ones they replaced (`.old`, kept so the node
can still attest blocks from before the rotation after a restart) — by public key.

When a block applies that rotates *this* node's institution (`on_changes`), the
daemon switches: transactions and attestations of later heights are signed with the
new signing key (hzp2p.node.attest picks the key of the voter set in force at each
height), blocks it proposes after the rotation with the new node key
(hzp2p.node.producer picks it from the state the block executes on), new transport
handshakes present the new node key (peers accept the old one for a grace period
while they catch up, hzp2p.node.membership), and the files move: the current key is
copied to `.old`, then `.next` atomically replaces the current file. A crash between
the two leaves `.next` in place; at start-up `sync_with_state` finds the state
naming the `.next` keys and finishes the move. Nothing restarts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nacl.signing
import structlog

from hzp2p.client import Client
from hzp2p.contracts.members import MembershipChange
from hzp2p.net.tcp import TcpTransport
from hzp2p.net.transport import NodeIdentity
from hzp2p.node.keys import KeyFileError, load_signing_key, write_key_file
from hzp2p.node.stack import NodeStack
from hzp2p.raft.errors import NotLeader

log = structlog.get_logger("hzp2p.node.rotation")

NEXT_SUFFIX = ".next"
OLD_SUFFIX = ".old"


def next_path(p: Path) -> Path:
    return p.with_name(p.name + NEXT_SUFFIX)


def old_path(p: Path) -> Path:
    return p.with_name(p.name + OLD_SUFFIX)


def _pub(k: nacl.signing.SigningKey) -> bytes:
    return bytes(k.verify_key)


def _maybe_load(p: Path) -> nacl.signing.SigningKey | None:
    if not p.exists():
        return None
    return load_signing_key(p)


@dataclass
class KeyRing:
    """This daemon's key pairs across rotations (see the module docstring)."""

    signing_path: Path
    node_path: Path
    signing: nacl.signing.SigningKey
    node: nacl.signing.SigningKey
    known: dict[bytes, nacl.signing.SigningKey] = field(default_factory=dict)

    @classmethod
    def load(cls, signing_path: Path, node_path: Path) -> KeyRing:
        """The configured keys plus any `.next` and `.old` files (KeyFileError if bad)."""
        ring = cls(signing_path, node_path, load_signing_key(signing_path),
                   load_signing_key(node_path))
        for p in (signing_path, node_path):
            for extra in (next_path(p), old_path(p)):
                k = _maybe_load(extra)
                if k is not None:
                    ring.known[_pub(k)] = k
        ring.known[_pub(ring.signing)] = ring.signing
        ring.known[_pub(ring.node)] = ring.node
        return ring

    def get(self, public: bytes) -> nacl.signing.SigningKey | None:
        return self.known.get(public)

    def old_signing(self) -> nacl.signing.SigningKey | None:
        """The signing key used before the last rotation (its `.old` file), if kept."""
        return _maybe_load(old_path(self.signing_path))

    def sync_with_state(self, signing_pub: bytes, node_pub: bytes) -> bool:
        """The committed state names these as this institution's keys: switch to them if
        they are the pending ones (finishing an interrupted move). True if it switched.
        Raises KeyFileError if the state names keys this daemon does not hold."""
        if (signing_pub, node_pub) == (_pub(self.signing), _pub(self.node)):
            return False
        new_s, new_n = self.known.get(signing_pub), self.known.get(node_pub)
        if new_s is None or new_n is None:
            raise KeyFileError(
                f"the chain names keys for this institution that {self.signing_path.name}/"
                f"{self.node_path.name} (and their {NEXT_SUFFIX} files) do not hold: was it "
                "rotated with keys prepared elsewhere? (docs/certificates.md, key rotation)")
        self._switch(new_s, new_n)
        return True

    def on_changes(self, node_id: int, changes: Iterable[MembershipChange]) -> bool:
        """Follow an applied block's membership changes; True if this node's keys rotated."""
        for c in changes:
            if c.kind == "rotate" and c.inst_id == node_id:
                if (c.signing_key, c.node_key) == (_pub(self.signing), _pub(self.node)):
                    return False  # switched already (at start-up or by the membership loop)
                new_s, new_n = self.known.get(c.signing_key), self.known.get(c.node_key)
                if new_s is None or new_n is None:
                    log.error("rotated_keys_missing", inst_id=node_id,
                              hint=f"put the private keys in {next_path(self.signing_path)} "
                                   f"and {next_path(self.node_path)} and restart")
                    return False
                self._switch(new_s, new_n)
                return True
        return False

    def _switch(self, new_s: nacl.signing.SigningKey, new_n: nacl.signing.SigningKey) -> None:
        for path, cur, new in ((self.signing_path, self.signing, new_s),
                               (self.node_path, self.node, new_n)):
            if _pub(cur) == _pub(new):
                continue
            try:
                write_key_file(old_path(path), cur, overwrite=True)
                nxt = next_path(path)
                if nxt.exists():
                    os.replace(nxt, path)
                else:  # the pending key came from elsewhere (.old of an earlier run)
                    write_key_file(path, new, overwrite=True)
            except OSError as exc:  # the switch in memory stands; the files say why not
                log.warning("key_files_not_moved", path=str(path), error=str(exc))
        self.signing, self.node = new_s, new_n
        log.info("keys_rotated", signing_key=_pub(new_s).hex(), node_key=_pub(new_n).hex())


def hand_out(ring: KeyRing, node_id: int, chain_id: str, stack: NodeStack,
             transport: TcpTransport) -> None:
    """Give the ring's current keys to every part of a running node that signs: the
    submit path, the record hand-over, the producer (blocks), the transport (handshakes).
    The attestation service asks the ring per height (`AttestService.key_for`)."""
    stack.signing_key, stack.node_key = ring.signing, ring.node
    stack.producer.node_key, stack.producer.node_pub = ring.node, None
    stack.submit.key = stack.submit.signer.key = ring.signing
    stack.handover.client = Client(ring.signing, chain_id, node_id)
    stack.enc_keys.follow_signing_key(ring.signing)  # what was sealed to the old key still opens
    transport.set_identity(NodeIdentity(node_id, ring.node))


def wire(ring: KeyRing, stack: NodeStack) -> None:
    """At start-up: the attestation service and the producer look keys up in the ring."""
    if stack.attest is not None:
        stack.attest.key_for = ring.get
    stack.producer.node_key_for = ring.get


def missing_rotation(ring: KeyRing, node_id: int, changes: Iterable[MembershipChange],
                     stack: NodeStack) -> None:
    """A rotation of this node to keys it does not hold: its blocks would be refused, so
    its producer stops proposing and, if it leads, it hands leadership to another voter
    until the keys are put in place (and the daemon restarted)."""
    for c in changes:
        if c.kind == "rotate" and c.inst_id == node_id and c.node_key != _pub(ring.node):
            stack.producer.node_pub = c.node_key
            core = stack.driver.core
            others = sorted(core.conf.voters - {node_id})
            if stack.driver.is_leader() and others:
                try:
                    stack.driver.transfer_leadership(others[0])
                except (NotLeader, ValueError) as exc:
                    log.warning("leadership_not_handed_over", reason=str(exc))


def prepare(ring: KeyRing) -> tuple[bytes, bytes]:
    """The next keys' public halves: generated into the `.next` files (mode 0600) unless
    they are there already, and held by the ring from now on (no restart needed)."""
    out = []
    for p in (ring.signing_path, ring.node_path):
        nxt = next_path(p)
        k = _maybe_load(nxt)
        if k is None:
            k = nacl.signing.SigningKey.generate()
            write_key_file(nxt, k)
        ring.known[_pub(k)] = k
        out.append(_pub(k))
    return out[0], out[1]
