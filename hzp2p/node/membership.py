"""Membership for the daemon: who the transport talks to, and which ConfChange comes next.

It owns two views of the committed governance state (hzp2p.contracts.members):
`ChainMembership`, the transport's MembershipProvider (node keys of the active
institutions), and `next_conf_change`, which tells the leader the next
committed membership change the Raft configuration does not reflect yet.

The Raft configuration follows the contracts' membership log in order, one
change at a time. Which prefix of the log is already in force is not stored,
so it is recomputed: fold the log from the genesis configuration and find the
last prefix whose result equals the configuration in force (ids are never
reused, so a later match means a longer applied prefix); the change after it
is next. Re-deriving it this way survives restarts and leader changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from hzp2p.contracts import members as members_contract
from hzp2p.contracts.members import MembershipChange
from hzp2p.ledger.genesis import Genesis
from hzp2p.raft.confchange import apply_to_conf
from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.types import ConfState, NodeId
from hzp2p.storage import AsyncStorage

ROTATION_GRACE_MS = 10 * 60 * 1000
"""How long after a key rotation peers still accept the rotated node's old node key."""

CONF_KINDS: Mapping[str, ConfChangeKind] = {
    "add_learner": ConfChangeKind.ADD_LEARNER,
    "promote": ConfChangeKind.PROMOTE,
    "remove": ConfChangeKind.REMOVE,
    "demote": ConfChangeKind.DEMOTE,
}


def genesis_conf(genesis: Genesis) -> ConfState:
    return ConfState(voters=frozenset(genesis.voters), learners=frozenset(genesis.learners))


def next_conf_change(
    initial: ConfState, log: Sequence[MembershipChange], current: ConfState
) -> ConfChange | None:
    """The next change of `log` to propose given the configuration `current` (None: up to
    date, or `current` is not any prefix's result, which the caller should report)."""
    changes = [ConfChange(CONF_KINDS[c.kind], c.inst_id) for c in log if c.kind in CONF_KINDS]
    conf, applied = initial, 0 if initial == current else -1
    for i, change in enumerate(changes, start=1):
        conf = apply_to_conf(conf, change)
        if conf == current:
            applied = i
    if applied < 0 or applied == len(changes):
        return None
    return changes[applied]


class ChainMembership:
    """The transport's MembershipProvider: active institutions' node keys from committed state."""

    def __init__(self, genesis: Genesis) -> None:
        self._keys: dict[NodeId, bytes] = {i.inst_id: i.node_key for i in genesis.institutions}
        self._addrs: dict[NodeId, str] = {i.inst_id: i.address for i in genesis.institutions}
        self._previous: dict[NodeId, tuple[bytes, int]] = {}  # key rotation: old key, until
        self.now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000

    def previous_node_key(self, node_id: NodeId) -> bytes | None:
        """The node key a rotation replaced, accepted in handshakes for ROTATION_GRACE_MS
        after the rotating block's time: the rotated node may not have applied that block
        yet, and it can only learn it over a connection its old key opens."""
        prev = self._previous.get(node_id)
        if prev is None or self.now_ms() > prev[1]:
            return None
        return prev[0]

    def node_key(self, node_id: NodeId) -> bytes | None:
        return self._keys.get(node_id)

    def members(self) -> Mapping[NodeId, bytes]:
        return dict(self._keys)

    def addresses(self) -> dict[NodeId, str]:
        return dict(self._addrs)

    async def refresh(self, storage: AsyncStorage) -> bool:
        """Re-read committed state; True if the member set or a key changed."""
        insts, log = await storage.call(
            lambda s: (members_contract.institutions(s), members_contract.membership_log(s)))
        self._previous = {c.inst_id: (c.old_node_key, c.at_ms + ROTATION_GRACE_MS)
                          for c in log if c.kind == "rotate"}
        keys = {i.inst_id: i.node_key for i in insts if i.active}
        addrs = {i.inst_id: i.address for i in insts if i.active}
        changed = keys != self._keys
        self._keys, self._addrs = keys, addrs
        return changed
