"""Membership governance: who may propose and vote, majorities, expiry, safety rules, Raft changes."""

from __future__ import annotations

from typing import Any

import nacl.signing
import pytest

from hzp2p.contracts import queries
from hzp2p.contracts.members import PROPOSAL_TTL_MS, get_institution
from hzp2p.tools.testkit import LocalChain

NEW_SIGN = nacl.signing.SigningKey(b"\x51" * 32)
NEW_NODE = nacl.signing.SigningKey(b"\x52" * 32)


def admit(**over: Any) -> dict[str, Any]:
    p = {
        "action": "admit",
        "name": "City Lab 7",
        "roles": ["lab", "hospital"],
        "signing_key": bytes(NEW_SIGN.verify_key).hex(),
        "node_key": bytes(NEW_NODE.verify_key),
        "address": "10.1.2.3:7200",
    }
    p.update(over)
    return p


def propose(c: LocalChain, who: int, payload: dict[str, Any]) -> tuple[bool, str]:
    return c.run_one(who, "member.propose", payload)


def vote(c: LocalChain, who: int, pid: int, approve: bool = True) -> tuple[bool, str]:
    return c.run_one(who, "member.vote", {"proposal_id": pid, "approve": approve})


@pytest.fixture
def c() -> LocalChain:
    return LocalChain(n_voters=3, n_learners=6, seed=31)  # authorities: 1 and 2


def test_admit_by_majority_emits_add_learner(c: LocalChain) -> None:
    assert propose(c, 1, admit()) == (True, "")
    st = queries.proposal_status(c.state, 1)
    assert st is not None and st["status"] == "open" and st["yes"] == [1] and st["votes_needed"] == 1
    res = c.run([c.tx(2, "member.vote", {"proposal_id": 1, "approve": True})])
    assert res.verdicts[0].applied
    (change,) = res.membership_changes
    assert (change.kind, change.inst_id, change.address) == ("add_learner", 10, "10.1.2.3:7200")
    assert change.node_key == bytes(NEW_NODE.verify_key)
    inst = get_institution(c.state, 10)
    assert inst is not None and inst.active and not inst.voter
    assert inst.roles == frozenset({"lab", "hospital"})
    assert queries.proposal_status(c.state, 1)["status"] == "approved"  # type: ignore[index]
    # the new institution can now write
    assert c.run_one(NEW_SIGN, "epi.report", {"report_id": "x", "region": "r", "metric": "m", "value": 1, "period": "p"}) == (True, "")
    assert queries.membership_log(c.state)[0]["kind"] == "add_learner"


def test_only_authorities_propose_and_vote(c: LocalChain) -> None:
    ok, why = propose(c, 3, admit())
    assert not ok and "lacks role authority" in why
    assert propose(c, 1, admit())[0]
    ok, why = vote(c, 4, 1)
    assert not ok and "lacks role authority" in why


def test_vote_rules(c: LocalChain) -> None:
    assert propose(c, 1, admit())[0]
    ok, why = vote(c, 1, 1)
    assert not ok and "already voted" in why
    ok, why = vote(c, 2, 99)
    assert not ok and "no proposal 99" in why
    assert c.run_one(2, "member.vote", {"proposal_id": 1, "approve": "yes"})[1].endswith("a boolean")
    assert "missing field(s): approve" in c.run_one(2, "member.vote", {"proposal_id": 1})[1]
    assert vote(c, 2, 1)[0]
    ok, why = vote(c, 2, 1)
    assert not ok and "already approved" in why


def test_majority_no_rejects(c: LocalChain) -> None:
    assert propose(c, 1, {"action": "promote", "inst_id": 4})[0]
    res = c.run([c.tx(2, "member.vote", {"proposal_id": 1, "approve": False})])
    assert res.verdicts[0].applied and res.membership_changes == ()
    st = queries.proposal_status(c.state, 1)
    assert st is not None and st["status"] == "rejected" and st["no"] == [2]
    assert not get_institution(c.state, 4).voter  # type: ignore[union-attr]


def test_strict_majority_of_three(c: LocalChain) -> None:
    assert propose(c, 1, {"action": "set_roles", "inst_id": 3, "roles": ["authority", "lab"]})[0]
    assert vote(c, 2, 1)[0]
    assert get_institution(c.state, 3).roles == frozenset({"authority", "lab"})  # type: ignore[union-attr]
    # three authorities now: 2 of 3 decide
    assert propose(c, 3, {"action": "promote", "inst_id": 4})[0]
    assert queries.proposal_status(c.state, 2)["threshold"] == 2  # type: ignore[index]
    res = c.run([c.tx(1, "member.vote", {"proposal_id": 2, "approve": True})])
    assert [ch.kind for ch in res.membership_changes] == ["promote"]
    assert get_institution(c.state, 4).voter  # type: ignore[union-attr]
    # 2 of 3 "no" rejects; the third vote is then refused
    assert propose(c, 1, {"action": "demote", "inst_id": 4})[0]
    assert vote(c, 2, 3, False)[0]
    assert queries.proposal_status(c.state, 3)["status"] == "open"  # type: ignore[index]
    assert vote(c, 3, 3, False)[0]
    assert queries.proposal_status(c.state, 3)["status"] == "rejected"  # type: ignore[index]


def test_electorate_is_fixed_at_proposal_time(c: LocalChain) -> None:
    assert propose(c, 1, {"action": "promote", "inst_id": 5})[0]  # electorate {1, 2}
    assert propose(c, 1, {"action": "set_roles", "inst_id": 4, "roles": ["authority"]})[0]
    assert vote(c, 2, 2)[0]
    ok, why = vote(c, 4, 1)
    assert not ok and "not in proposal 1's electorate" in why


def test_expiry(c: LocalChain) -> None:
    assert propose(c, 1, {"action": "promote", "inst_id": 4})[0]
    created = queries.proposal_status(c.state, 1)["created_ms"]  # type: ignore[index]
    late = created + PROPOSAL_TTL_MS + 1
    c.run([], timestamp_ms=late)
    assert queries.proposal_status(c.state, 1)["status"] == "expired"  # type: ignore[index]
    tx = c.tx(2, "member.vote", {"proposal_id": 1, "approve": True}, valid_from_ms=late)
    v = c.run([tx]).verdicts[0]
    assert not v.applied and "expired" in v.reason
    # a new proposal on the same target closes the expired one
    tx = c.tx(1, "member.propose", {"action": "promote", "inst_id": 4}, valid_from_ms=late)
    assert c.run([tx]).verdicts[0].applied
    assert queries.proposal_status(c.state, 1)["note"] == "not decided in time"  # type: ignore[index]
    assert [p["status"] for p in queries.proposals(c.state)] == ["expired", "open"]


def test_one_open_proposal_per_target(c: LocalChain) -> None:
    assert propose(c, 1, {"action": "promote", "inst_id": 4})[0]
    ok, why = propose(c, 2, {"action": "remove", "inst_id": 4})
    assert not ok and "still open" in why
    assert propose(c, 1, admit())[0]
    ok, why = propose(c, 2, admit(name="again"))
    assert not ok and "still open" in why


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"action": "dissolve"}, "action must be one of"),
        (admit(roles=["king"]), "roles must be distinct"),
        (admit(roles=[]), "non-empty"),
        (admit(address="nowhere"), "host:port"),
        (admit(address="10.1.2.3:7200\n"), "host:port"),
        (admit(address="10.1.2.3:99999"), "host:port"),
        (admit(signing_key="zz"), "not hex"),
        (admit(node_key=b"short"), "node_key must be 32 bytes"),
        (admit(extra=1), "unknown payload field(s): extra"),
        ({"action": "remove", "inst_id": 77}, "not an active member"),
        ({"action": "promote", "inst_id": 2}, "already a voter"),
        ({"action": "demote", "inst_id": 5}, "not a voter"),
        ({"action": "set_roles", "inst_id": 4, "roles": ["observer", "observer"]}, "distinct"),
    ],
)
def test_bad_proposals(c: LocalChain, payload: dict[str, Any], reason: str) -> None:
    ok, why = propose(c, 1, payload)
    assert not ok and reason in why, why


def test_admit_refuses_existing_keys(c: LocalChain) -> None:
    ok, why = propose(c, 1, admit(signing_key=c.genesis.institution(4).signing_key.hex()))
    assert not ok and "signing_key already belongs" in why
    ok, why = propose(c, 1, admit(node_key=c.genesis.institution(4).node_key))
    assert not ok and "node_key already belongs" in why


def test_last_authority_and_last_voter_protected() -> None:
    c = LocalChain(n_voters=1, n_learners=3, seed=32)  # authorities 1 (voter) and 2 (learner)
    ok, why = propose(c, 1, {"action": "demote", "inst_id": 1})
    assert not ok and "last voter" in why
    ok, why = propose(c, 2, {"action": "remove", "inst_id": 1})
    assert not ok and "last voter" in why
    # remove authority 2 (needs both votes), then 1 is the last authority
    assert propose(c, 1, {"action": "remove", "inst_id": 2})[0]
    res = c.run([c.tx(2, "member.vote", {"proposal_id": 1, "approve": True})])
    assert [ch.kind for ch in res.membership_changes] == ["remove"]
    ok, why = propose(c, 1, {"action": "set_roles", "inst_id": 1, "roles": ["lab"]})
    assert not ok and "last authority" in why


def test_decision_revalidated_when_world_changed(c: LocalChain) -> None:
    assert propose(c, 1, {"action": "remove", "inst_id": 2})[0]
    assert propose(c, 2, {"action": "remove", "inst_id": 1})[0]
    assert vote(c, 2, 1)[0]  # 2 is removed
    assert not get_institution(c.state, 2).active  # type: ignore[union-attr]
    assert "last authority" in propose(c, 1, {"action": "remove", "inst_id": 1})[1]
    # removing 1 would now leave no authority: 1's own yes completes the vote, and it fails
    v = vote(c, 1, 2)
    assert v == (True, "")
    st = queries.proposal_status(c.state, 2)
    assert st is not None and st["status"] == "failed" and "last authority" in st["note"]
    assert get_institution(c.state, 1).active  # type: ignore[union-attr]


def test_queries(c: LocalChain) -> None:
    insts = queries.institution_list(c.state)
    assert [i["inst_id"] for i in insts] == list(range(1, 10))
    assert insts[0]["roles"] == ["authority"] and isinstance(insts[0]["signing_key"], str)
    assert queries.institution(c.state, 99) is None
    assert queries.proposal_status(c.state, 1) is None
    assert queries.head(c.state)["height"] == 0


def test_decoded_institution_records_are_shared_but_follow_every_change() -> None:
    """get_institution / institution_by_key decode each distinct record once (a cache keyed
    by the record's bytes); a changed record is a different key, so a role change or a
    removal is seen at once."""
    from hzp2p.contracts.api import Institution
    from hzp2p.contracts.members import institution_by_key, institution_writes
    from hzp2p.contracts.state import DictState

    inst = Institution(7, "lab-7", frozenset({"lab"}), b"s" * 32, b"n" * 32, "h:1", False)
    state = DictState(institution_writes(inst))
    first = get_institution(state, 7)
    assert first == inst and get_institution(state, 7) is first
    assert institution_by_key(state, b"s" * 32) is first
    changed = Institution(7, "lab-7", frozenset({"lab", "hospital"}), b"s" * 32, b"n" * 32, "h:1", False, active=False)
    state.apply(institution_writes(changed))
    again = get_institution(state, 7)
    assert again == changed and again is not first
    assert again is not None and not again.active and again.roles == {"lab", "hospital"}
