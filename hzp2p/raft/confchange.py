"""Single-server membership changes as pure functions on ConfState.

`check_conf_change` decides whether a proposed change makes sense against the
configuration in force (the leader refuses nonsense before it reaches the
log); `apply_to_conf` is what applying a committed change does, and is
idempotent, because a restarted node may re-apply changes it already applied.
"""

from __future__ import annotations

from dataclasses import replace

from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.types import ConfState


def check_conf_change(conf: ConfState, change: ConfChange) -> None:
    """Raise ValueError unless `change` is a meaningful single-server change of `conf`."""
    nid, kind = change.node_id, change.kind
    if nid <= 0:
        raise ValueError("node ids are positive")
    if kind is ConfChangeKind.ADD_LEARNER and nid in conf.members:
        raise ValueError(f"node {nid} is already a member")
    if kind is ConfChangeKind.PROMOTE and nid not in conf.learners:
        raise ValueError(f"node {nid} is not a learner")
    if kind is ConfChangeKind.REMOVE and nid not in conf.members:
        raise ValueError(f"node {nid} is not a member")
    if kind is ConfChangeKind.DEMOTE and nid not in conf.voters:
        raise ValueError(f"node {nid} is not a voter")
    if kind in (ConfChangeKind.REMOVE, ConfChangeKind.DEMOTE) and conf.voters == {nid}:
        raise ValueError("cannot remove the last voter")


def apply_to_conf(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after `change`; a change already in force returns `conf` unchanged."""
    nid, kind = change.node_id, change.kind
    voters, learners = set(conf.voters), set(conf.learners)
    if kind is ConfChangeKind.ADD_LEARNER:
        if nid not in voters:
            learners.add(nid)
    elif kind is ConfChangeKind.PROMOTE:
        learners.discard(nid)
        voters.add(nid)
    elif kind is ConfChangeKind.REMOVE:
        if voters == {nid}:
            return conf  # never remove the last voter
        voters.discard(nid)
        learners.discard(nid)
    elif kind is ConfChangeKind.DEMOTE and nid in voters and voters != {nid}:
        voters.discard(nid)
        learners.add(nid)
    return replace(conf, voters=frozenset(voters), learners=frozenset(learners))
