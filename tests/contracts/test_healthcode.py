"""Health-code contract: lab results drive the colour; authorities set it; versioned rules."""

from __future__ import annotations

import pytest
from domain_helpers import DAY, World
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.client import health_code, healthcode_set_payload, lab_result_payload
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts.healthcode import HEALTHCODE_RULES

SUBJ = "0123456789abcdef0123456789abcdef"


class Lab:
    def __init__(self, rules: dict[str, int] | None = None) -> None:
        w = self.w = World(rules)
        self.lab = w.member("lab", 1, "lab")
        self.cdc = w.member("cdc", 2, "authority")
        self.hospital = w.member("hospital", 3, "hospital")
        self.n = 0

    def result(self, result: str, sample_ms: int) -> None:
        self.n += 1
        p = lab_result_payload(SUBJ, f"T{self.n}", result, sample_ms)
        self.w.apply(self.lab.tx("lab.result", p, self.w.now))

    def colour(self) -> str:
        return health_code(self.w.state, SUBJ)


@pytest.fixture
def h() -> Lab:
    return Lab()


def test_default_green_and_positive_turns_red(h: Lab) -> None:
    assert h.colour() == "green"
    h.result("negative", h.w.now - DAY)
    assert h.colour() == "green"
    h.result("positive", h.w.now)
    assert h.colour() == "red"
    hist = dq.health_code_history(h.w.state, SUBJ)
    assert [(e["result"], e["colour"], e["changed"]) for e in hist] == [
        ("negative", "green", False),
        ("positive", "red", True),
    ]


def test_negative_returns_green_only_after_the_period(h: Lab) -> None:
    days = HEALTHCODE_RULES[1]["green_after_days"]
    t_pos = h.w.now
    h.result("positive", t_pos)
    h.w.now += 30 * DAY
    h.result("negative", t_pos + (days - 1) * DAY)
    assert h.colour() == "red"
    h.result("negative", t_pos + days * DAY)
    assert h.colour() == "green"
    code = dq.health_code(h.w.state, SUBJ)
    assert code is not None and code["source"] == "lab" and code["rules_version"] == 1
    # A new positive turns it red again.
    h.result("positive", t_pos + 20 * DAY)
    assert h.colour() == "red"


def test_lab_result_refusals(h: Lab) -> None:
    now = h.w.now
    p = lab_result_payload(SUBJ, "T1", "positive", now)
    h.w.refused(h.hospital.tx("lab.result", p, now), "lacks role lab")
    h.w.refused(h.lab.tx("lab.result", dict(p, result="maybe"), now), "result must be one of")
    h.w.refused(h.lab.tx("lab.result", dict(p, sample_ms=now + 1), now), "sample_ms")
    h.w.refused(h.lab.tx("lab.result", dict(p, subject="alice"), now), "pseudonym")
    h.w.apply(h.lab.tx("lab.result", p, now))
    h.w.refused(h.lab.tx("lab.result", p, now), "already recorded")


def test_authority_sets_code(h: Lab) -> None:
    now = h.w.now
    h.w.apply(
        h.cdc.tx("healthcode.set", healthcode_set_payload(SUBJ, "yellow", "close contact"), now)
    )
    assert h.colour() == "yellow"
    h.w.refused(
        h.lab.tx("healthcode.set", healthcode_set_payload(SUBJ, "green", "x"), now),
        "lacks role authority",
    )
    h.w.refused(
        h.cdc.tx("healthcode.set", healthcode_set_payload(SUBJ, "blue", "x"), now), "colour"
    )
    h.w.refused(h.cdc.tx("healthcode.set", healthcode_set_payload(SUBJ, "red", ""), now), "reason")
    hist = dq.health_code_history(h.w.state, SUBJ)
    assert hist[-1]["event"] == "healthcode.set" and hist[-1]["by"] == 2


def test_authority_green_within_period_needs_override(h: Lab) -> None:
    h.result("positive", h.w.now)
    green = healthcode_set_payload(SUBJ, "green", "recovered")
    h.w.refused(h.cdc.tx("healthcode.set", green, h.w.now), "set override")
    h.w.apply(h.cdc.tx("healthcode.set", dict(green, override=True), h.w.now))
    assert h.colour() == "green"
    assert dq.health_code_history(h.w.state, SUBJ)[-1]["override"] is True


def test_authority_red_is_not_lifted_by_a_negative(h: Lab) -> None:
    red = healthcode_set_payload(SUBJ, "red", "travel quarantine")
    h.w.apply(h.cdc.tx("healthcode.set", red, h.w.now))
    h.result("negative", h.w.now)
    assert h.colour() == "red"


def test_unknown_rules_version_refused() -> None:
    h = Lab({"healthcode": 99})
    p = lab_result_payload(SUBJ, "T1", "positive", h.w.now)
    h.w.refused(h.lab.tx("lab.result", p, h.w.now), "unknown healthcode rules version 99")


@settings(max_examples=60)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 60)), min_size=1, max_size=12))
def test_lab_only_colour_follows_the_rule(results: list[tuple[bool, int]]) -> None:
    """With lab results only, in any arrival order, the code is red exactly when the
    latest positive has no negative sampled at least the rule's period after it."""
    h = Lab()
    period = HEALTHCODE_RULES[1]["green_after_days"] * DAY
    base = h.w.now
    h.w.now = base + 61 * DAY
    for positive, day in results:
        h.result("positive" if positive else "negative", base + day * DAY)
    pos = [base + d * DAY for p, d in results if p]
    neg = [base + d * DAY for p, d in results if not p]
    cleared = not pos or (bool(neg) and max(neg) >= max(pos) + period)
    assert h.colour() == ("green" if cleared else "red")
    assert len(dq.health_code_history(h.w.state, SUBJ)) == len(results)
