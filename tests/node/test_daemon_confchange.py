"""next_conf_change: the Raft configuration follows the committed membership log in order."""

from __future__ import annotations

from hzp2p.contracts.members import MembershipChange
from hzp2p.node.membership import next_conf_change
from hzp2p.raft.membership import ConfChange, ConfChangeKind
from hzp2p.raft.types import ConfState

G = ConfState(voters=frozenset({1, 2, 3}), learners=frozenset())


def ch(seq: int, kind: str, nid: int) -> MembershipChange:
    return MembershipChange(seq, kind, nid, "127.0.0.1:1", bytes(32), seq + 1, seq)


def conf(voters: set[int], learners: set[int] | None = None) -> ConfState:
    return ConfState(voters=frozenset(voters), learners=frozenset(learners or ()))


def test_follows_the_log_in_order() -> None:
    log = [ch(0, "add_learner", 4), ch(1, "promote", 4), ch(2, "add_learner", 5)]
    assert next_conf_change(G, log, G) == ConfChange(ConfChangeKind.ADD_LEARNER, 4)
    assert next_conf_change(G, log, conf({1, 2, 3}, {4})) == ConfChange(ConfChangeKind.PROMOTE, 4)
    assert next_conf_change(G, log, conf({1, 2, 3, 4})) == ConfChange(
        ConfChangeKind.ADD_LEARNER, 5)
    assert next_conf_change(G, log, conf({1, 2, 3, 4}, {5})) is None
    assert next_conf_change(G, [], G) is None


def test_a_removed_member_is_not_added_back() -> None:
    log = [ch(0, "add_learner", 4), ch(1, "remove", 4), ch(2, "add_learner", 5)]
    # After add 4 + remove 4 the configuration equals the genesis one: the longer prefix wins.
    assert next_conf_change(G, log, G) == ConfChange(ConfChangeKind.ADD_LEARNER, 5)
    assert next_conf_change(G, log, conf({1, 2, 3}, {5})) is None


def test_demote_and_remove_a_voter() -> None:
    log = [ch(0, "demote", 3), ch(1, "remove", 3)]
    assert next_conf_change(G, log, G) == ConfChange(ConfChangeKind.DEMOTE, 3)
    assert next_conf_change(G, log, conf({1, 2}, {3})) == ConfChange(ConfChangeKind.REMOVE, 3)
    assert next_conf_change(G, log, conf({1, 2})) is None


def test_an_unrelated_configuration_proposes_nothing() -> None:
    assert next_conf_change(G, [ch(0, "add_learner", 4)], conf({7})) is None
