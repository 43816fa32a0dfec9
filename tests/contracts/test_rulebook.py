"""Rule versions changed by the consortium's vote (rules.propose, decided by member.vote)."""

from __future__ import annotations

import dataclasses
from typing import Any

import nacl.signing
import pytest

from hzp2p.client import (
    exposure_publish_payload,
    health_code_history,
    rule_history,
    rules_propose_payload,
    venue_register_payload,
)
from hzp2p.contracts import queries
from hzp2p.contracts.codelife import HEALTHCODE_RULES, healthcode_rules
from hzp2p.contracts.engine import read_head
from hzp2p.crypto.records import pseudonym
from hzp2p.ledger.genesis import make_local_genesis
from hzp2p.tools.testkit import DAY_MS, LocalChain

V2 = HEALTHCODE_RULES[2]
ALICE = nacl.signing.SigningKey(b"\x21" * 32)
BOB = nacl.signing.SigningKey(b"\x22" * 32)


@pytest.fixture
def c() -> LocalChain:
    return LocalChain(n_voters=3, n_learners=6, seed=31)  # authorities: 1 and 2


def do(c: LocalChain, signer: Any, tx_type: str, payload: dict[str, Any]) -> tuple[bool, str]:
    """One transaction in its own block, valid at the chain's current time."""
    v = c.run([c.tx(signer, tx_type, payload, valid_from_ms=max(0, c.now_ms - 1000))]).verdicts[0]
    return v.applied, v.reason


def height(c: LocalChain) -> int:
    return read_head(c.state).height


def propose(c: LocalChain, params: dict[str, int], act: int, who: int = 1,
            rule: str = "healthcode") -> tuple[bool, str]:
    return do(c, who, "rules.propose", rules_propose_payload(rule, params, act))


def vote(c: LocalChain, pid: int, approve: bool = True, who: int = 2) -> tuple[bool, str]:
    return do(c, who, "member.vote", {"proposal_id": pid, "approve": approve})


def seven_days() -> dict[str, int]:
    return {**V2, "quarantine_days": 7}


def test_approved_version_activates_at_its_height(c: LocalChain) -> None:
    act = height(c) + 6
    assert propose(c, seven_days(), act) == (True, "")
    st = queries.proposal_status(c.state, 1)
    assert st is not None and st["status"] == "open" and st["action"] == "rules"
    assert [v["status"] for v in rule_history(c.state, "healthcode")] == ["in force"]
    assert vote(c, 1) == (True, "")
    assert queries.proposal_status(c.state, 1)["status"] == "approved"  # type: ignore[index]
    hist = rule_history(c.state, "healthcode")
    assert [(v["version"], v["status"]) for v in hist] == [(2, "in force"), (3, "scheduled")]
    assert hist[1]["activation_height"] == act and hist[1]["base"] == 2
    assert hist[1]["params"]["quarantine_days"] == 7 and hist[1]["proposal_id"] == 1
    # every node derives the same version for every height from the same state
    assert healthcode_rules(c.state, act - 1).version == 2
    assert healthcode_rules(c.state, act).version == 3
    while height(c) < act:
        c.run([])
    assert [v["status"] for v in rule_history(c.state, "healthcode")] == ["superseded", "in force"]


def test_a_transaction_is_judged_by_the_rules_at_its_height(c: LocalChain) -> None:
    assert c.run_one(1, "venue.register", venue_register_payload("cafe", b"\x01" * 32))[0]
    c.now_ms = 10 * DAY_MS
    publish = exposure_publish_payload("E1", "cafe", c.now_ms - 2000, c.now_ms - 1000, "high")
    assert do(c, 1, "exposure.publish", publish) == (True, "")
    act = height(c) + 4
    assert propose(c, seven_days(), act)[0] and vote(c, 1)[0]
    assert height(c) < act
    # before the activation height: version 2's 14 days
    assert do(c, ALICE, "exposure.declare", {"exposure_id": "E1"}) == (True, "")
    while height(c) < act - 1:
        c.run([])
    # from it on: version 3's 7 days; 10 days after the exposure it has expired
    c.now_ms += 10 * DAY_MS
    ok, why = do(c, BOB, "exposure.declare", {"exposure_id": "E1"})
    assert not ok and "its 7-day quarantine period is over" in why
    assert height(c) == act
    (decl,) = health_code_history(c.state, pseudonym(bytes(ALICE.verify_key)))[:1]
    assert decl["rules_version"] == 2 and decl["until_ms"] == publish["to_ms"] + 14 * DAY_MS


def test_rule_change_without_a_majority_changes_nothing(c: LocalChain) -> None:
    assert propose(c, seven_days(), height(c) + 3)[0]
    while height(c) < 6:
        c.run([])
    assert healthcode_rules(c.state).version == 2  # one yes of the two needed: not adopted
    assert vote(c, 1, approve=False) == (True, "")
    st = queries.proposal_status(c.state, 1)
    assert st is not None and st["status"] == "rejected"
    assert [v["version"] for v in rule_history(c.state, "healthcode")] == [2]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"rule": "healthcode", "params": {"green_after_days": 1}, "activation_height": 99},
         "parameters must be exactly"),
        ({"rule": "healthcode", "params": {**V2, "red_negatives": 0}, "activation_height": 99},
         "red_negatives must be at least 1"),
        ({"rule": "healthcode", "params": {**V2, "quarantine_days": -1}, "activation_height": 99},
         "out of range"),
        ({"rule": "healthcode", "params": V2, "activation_height": 1}, "must be after the current"),
        ({"rule": "vaccination", "params": {"max_dose": 3}, "activation_height": 99}, "rule must"),
        ({"rule": "privacy", "params": {"emergency_window_ms": 1, "max_grant_days": 1,
                                        "max_grant_types": 1}, "activation_height": 99},
         "emergency_window_ms must be at least"),
    ],
)
def test_proposal_refusals(c: LocalChain, payload: dict[str, Any], reason: str) -> None:
    c.run([])
    ok, why = c.run_one(1, "rules.propose", payload)
    assert not ok and reason in why, why


def test_only_authorities_propose_and_one_open_proposal_per_rule(c: LocalChain) -> None:
    ok, why = propose(c, seven_days(), 99, who=3)
    assert not ok and "lacks role authority" in why
    assert propose(c, seven_days(), 99)[0]
    ok, why = propose(c, V2, 99, who=2)
    assert not ok and "still open" in why
    assert propose(c, {"emergency_window_ms": DAY_MS, "max_grant_days": 30,
                       "max_grant_types": 2}, 99, rule="privacy")[0]


def test_approval_after_the_activation_height_fails(c: LocalChain) -> None:
    act = height(c) + 3
    assert propose(c, seven_days(), act)[0]
    while height(c) < act:
        c.run([])
    assert vote(c, 1) == (True, "")
    st = queries.proposal_status(c.state, 1)
    assert st is not None and st["status"] == "failed" and "activation_height" in st["note"]
    assert healthcode_rules(c.state).version == 2


def test_governed_privacy_rules_bind_consent(c: LocalChain) -> None:
    act = height(c) + 3
    params = {"emergency_window_ms": DAY_MS, "max_grant_days": 1, "max_grant_types": 8}
    assert propose(c, params, act, rule="privacy")[0] and vote(c, 1)[0]
    while height(c) < act - 1:
        c.run([])
    grant = {"grant_id": "G1", "grantee": 4, "record_types": ["diagnosis"], "purpose": "care",
             "expiry_ms": c.now_ms + 2 * DAY_MS}
    ok, why = c.run_one(ALICE, "consent.grant", grant)
    assert not ok and "expiry_ms out of range" in why


def test_a_version_1_consortium_votes_itself_the_whole_lifecycle() -> None:
    g, secrets = make_local_genesis(3, 6, seed=31)
    g = dataclasses.replace(g, rules={**g.rules, "healthcode": 1})
    c = LocalChain(genesis=(g, secrets))
    assert c.run_one(1, "venue.register", venue_register_payload("cafe", b"\x01" * 32))[0]
    c.now_ms = 10 * DAY_MS
    publish = exposure_publish_payload("E1", "cafe", c.now_ms - 2000, c.now_ms - 1000, "high")
    assert do(c, 1, "exposure.publish", publish)[0]
    ok, why = do(c, ALICE, "exposure.declare", {"exposure_id": "E1"})
    assert not ok and "version 1 has no exposures" in why
    act = height(c) + 3
    assert propose(c, V2, act)[0] and vote(c, 1)[0]
    while height(c) < act - 1:
        c.run([])
    assert do(c, ALICE, "exposure.declare", {"exposure_id": "E1"}) == (True, "")
    assert healthcode_rules(c.state).version == 3 and healthcode_rules(c.state).base == 2
