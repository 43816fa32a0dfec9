"""Appeals against a health code (GB/T 38963 correction): open, resolve, overdue."""

from __future__ import annotations

import json
from typing import Any

import nacl.signing
import pytest
from domain_helpers import DAY, World

from hzp2p.client import appeal_payload, health_code, lab_result_payload, resolve_payload
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts import queries
from hzp2p.contracts.codelife import HEALTHCODE_RULES, appeals, code_history, overdue_appeals
from hzp2p.contracts.events import block_events
from hzp2p.crypto.records import pseudonym
from hzp2p.tools.testkit import LocalChain


class Appeals:
    def __init__(self) -> None:
        w = self.w = World({"healthcode": 2, "privacy": 1})
        self.lab = w.member("lab", 1, "lab")
        self.cdc = w.member("cdc", 2, "authority")
        self.hospital = w.member("hospital", 3, "hospital")
        self.alice = w.citizen("alice")
        self.bob = w.citizen("bob")
        p = lab_result_payload(self.alice.pseudonym, "T1", "positive", w.now)
        w.apply(self.lab.tx("lab.result", p, w.now))  # event 0 of her history: red

    def appeal(self, appeal_id: str = "A1", event: int = 0) -> None:
        self.w.apply(self.alice.appeal(self.w.now, appeal_id=appeal_id, event=event,
                                       reason="not_my_sample",
                                       evidence_hash=b"\x01" * 32))

    def resolve(self, outcome: str, colour: str | None = None, appeal_id: str = "A1") -> None:
        p = resolve_payload(self.alice.pseudonym, appeal_id, outcome, "checked the lab's log",
                            colour)
        self.w.apply(self.cdc.tx("healthcode.resolve", p, self.w.now))


@pytest.fixture
def a() -> Appeals:
    return Appeals()


def test_appeal_opens_and_shows_in_history_and_access_log(a: Appeals) -> None:
    a.appeal()
    (rec,) = appeals(a.w.state, a.alice.pseudonym)
    assert rec["status"] == "open" and rec["event"] == 0 and rec["evidence_hash"] == b"\x01" * 32
    hist = code_history(a.w.state, a.alice.pseudonym)
    assert hist[-1]["event"] == "healthcode.appeal" and hist[-1]["changed"] is False
    assert rec["event_tx"] == hist[0]["tx_hash"]
    assert [e["seq"] for e in hist] == list(range(len(hist)))  # what an appeal names
    log = a.alice.my_access_log(a.w.state)
    assert [(e["kind"], e["by"], e["appeal_id"]) for e in log] == [("appeal", "subject", "A1")]
    assert health_code(a.w.state, a.alice.pseudonym) == "red"  # an appeal changes nothing yet


def test_appeal_refusals(a: Appeals) -> None:
    w, now = a.w, a.w.now
    theirs = appeal_payload(a.alice.pseudonym, "A1", 0, "not_my_sample")
    w.refused(a.bob.tx("healthcode.appeal", theirs, now), "only her own code")
    w.refused(a.cdc.tx("healthcode.appeal", theirs, now), "subject's own key")
    w.refused(a.alice.appeal(now, appeal_id="A1", event=7, reason="other"), "no event 7")
    w.refused(a.alice.tx("healthcode.appeal", dict(theirs, reason="I am Zhang San"), now), "reason must be one of")
    w.refused(a.alice.tx("healthcode.appeal", dict(theirs, evidence_hash=b"x"), now),
              "evidence_hash")
    a.appeal()
    w.refused(a.alice.appeal(now, appeal_id="A1", event=0, reason="wrong_result"), "already exists")
    w.refused(a.alice.appeal(now, appeal_id="A2", event=0, reason="wrong_result"), "still open")


def test_upheld_keeps_the_code(a: Appeals) -> None:
    a.appeal()
    a.resolve("upheld")
    (rec,) = appeals(a.w.state, a.alice.pseudonym)
    assert rec["status"] == "upheld" and rec["resolved_by"] == 2
    assert health_code(a.w.state, a.alice.pseudonym) == "red"
    hist = code_history(a.w.state, a.alice.pseudonym)
    assert (hist[-1]["event"], hist[-1]["outcome"], hist[-1]["changed"]) == (
        "healthcode.resolve", "upheld", False)
    log = a.alice.my_access_log(a.w.state)
    assert [(e["kind"], e["by"]) for e in log] == [("appeal", "subject"), ("appeal.resolve", 2)]
    # once resolved, the same event may be appealed again (new evidence)
    a.appeal("A2")


def test_corrected_changes_the_code_with_reason_and_cause(a: Appeals) -> None:
    a.appeal()
    a.resolve("corrected", "green")
    code = dq.health_code(a.w.state, a.alice.pseudonym)
    assert code is not None and code["colour"] == "green" and code["source"] == "appeal"
    assert "A1 corrected" in code["reason"]
    hist = code_history(a.w.state, a.alice.pseudonym)
    assert hist[-1]["changed"] is True and hist[-1]["tx_hash"] == code["cause_tx"]


def test_resolve_refusals(a: Appeals) -> None:
    w, now = a.w, a.w.now
    p = resolve_payload(a.alice.pseudonym, "A1", "upheld", "checked")
    w.refused(a.cdc.tx("healthcode.resolve", p, now), "no appeal 'A1'")
    a.appeal()
    w.refused(a.hospital.tx("healthcode.resolve", p, now), "lacks role authority")
    w.refused(a.alice.tx("healthcode.resolve", p, now), "not a member")
    w.refused(a.cdc.tx("healthcode.resolve", dict(p, outcome="corrected"), now),
              "needed when the outcome is corrected")
    w.refused(a.cdc.tx("healthcode.resolve", dict(p, colour="green"), now),
              "only with the outcome corrected")
    w.apply(a.cdc.tx("healthcode.resolve", p, now))
    w.refused(a.cdc.tx("healthcode.resolve", p, now), "already upheld")


def test_overdue_appeals_by_the_rules_limit(a: Appeals) -> None:
    limit = HEALTHCODE_RULES[2]["appeal_limit_days"] * DAY
    opened = a.w.now
    a.appeal()
    assert overdue_appeals(a.w.state, opened + limit - 1) == []
    (late,) = overdue_appeals(a.w.state, opened + limit + 1)
    assert late["appeal_id"] == "A1" and late["open_ms"] == limit + 1
    a.w.now = opened + limit + DAY
    a.resolve("upheld")
    assert overdue_appeals(a.w.state, a.w.now + 100 * DAY) == []


def test_admin_queries_answer_in_json(a: Appeals) -> None:
    """What the admin socket would show (hzp2p.contracts.queries): plain JSON values."""
    a.appeal()
    st, subj = a.w.state, a.alice.pseudonym
    code = queries.health_code(st, subj)
    assert code["colour"] == "red" and isinstance(code["cause_tx"], str)
    assert [e["event"] for e in queries.health_code_history(st, subj)] == [
        "lab.result", "healthcode.appeal"]
    assert queries.appeals(st, subj)[0]["status"] == "open"
    assert queries.overdue_appeals(st) == [] and queries.exposures(st) == []
    assert queries.rule_history(st, "healthcode")[0]["status"] == "in force"
    json.dumps([code, queries.health_code_history(st, subj), queries.appeals(st, subj)])


def test_watch_events_show_code_changes_with_reasons_and_appeals() -> None:
    """`admin watch` (hzp2p.contracts.events): each change of a code with its reason, and
    appeals opened and resolved, from the stored blocks and state."""
    c = LocalChain(n_voters=3, n_learners=6, seed=9)  # 1, 2 authorities; 3 lab
    alice = nacl.signing.SigningKey(b"\x31" * 32)
    me = pseudonym(bytes(alice.verify_key))

    def run(signer: Any, tx_type: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        tx = c.tx(signer, tx_type, payload, valid_from_ms=max(0, c.now_ms - 1000))
        res = c.run([tx])
        assert res.verdicts[0].applied, res.verdicts[0].reason
        verdicts = [("committed", "")]
        return [e for e in block_events(c.state, c.blocks[-1], verdicts) if e["type"] != "block"]

    run(1, "venue.register", {"venue_id": "cafe", "verify_key": b"\x01" * 32})
    c.now_ms = 10 * DAY
    run(1, "exposure.publish", {"exposure_id": "E1", "venue_id": "cafe", "from_ms": c.now_ms - 9,
                                "to_ms": c.now_ms - 5, "level": "high"})
    (ev,) = run(alice, "exposure.declare", {"exposure_id": "E1"})
    assert (ev["type"], ev["subject"], ev["colour"], ev["event"]) == (
        "code", me, "yellow", "exposure.declare")
    c.now_ms += 20 * DAY  # the quarantine ended; the next touch writes it, then its own
    evs = run(alice, "healthcode.appeal", appeal_payload(me, "A1", 0, "exposure_not_mine"))
    assert [(e["type"], e.get("event"), e.get("colour")) for e in evs] == [
        ("code", "quarantine.end", "green"), ("appeal", None, None)]
    assert "ended" in evs[0]["reason"] and evs[1]["outcome"] == "open"
    evs = run(2, "healthcode.resolve", resolve_payload(me, "A1", "upheld", "checked"))
    assert [(e["type"], e["outcome"]) for e in evs] == [("appeal", "upheld")]
