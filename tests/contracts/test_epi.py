"""Epidemic data: epi.report (any member, report_id once) and data.publish (authorities, versions)."""

from __future__ import annotations

from typing import Any

import pytest

from hzp2p.contracts import queries
from hzp2p.tools.testkit import LocalChain


def report(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"report_id": "2026-11-24/north/1", "region": "north", "metric": "confirmed",
                         "value": 12, "period": "2026-W48"}
    p.update(over)
    return p


def publish(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"dataset_id": "weekly-cases", "metadata": {"format": "csv", "rows": 52},
                         "content_hash": "ab" * 32, "access": "members"}
    p.update(over)
    return p


@pytest.fixture
def c() -> LocalChain:
    return LocalChain(n_voters=3, n_learners=6, seed=41)  # 8 is an observer


@pytest.mark.parametrize("who", [1, 3, 4, 8])
def test_any_member_reports(c: LocalChain, who: int) -> None:
    assert c.run_one(who, "epi.report", report()) == (True, "")
    r = queries.epi_report(c.state, "2026-11-24/north/1")
    assert r is not None and r["reporter"] == who and r["value"] == 12 and r["height"] == 1


def test_report_id_accepted_once(c: LocalChain) -> None:
    assert c.run_one(3, "epi.report", report())[0]
    ok, why = c.run_one(4, "epi.report", report(value=13))
    assert not ok and "already accepted at height 1" in why
    assert queries.epi_report(c.state, "2026-11-24/north/1")["value"] == 12  # type: ignore[index]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (report(value=-1), "value out of range [0, 9007199254740992]"),
        (report(value="12"), "value must be an integer"),
        (report(value=True), "value must be an integer"),
        (report(report_id=""), "report_id must match"),
        (report(region="a/b"), "region must match"),
        # `$` in a regex also matches before a final newline: "r1\n" must not pass as an id
        # distinct from "r1" (that would defeat "a report_id is accepted once")
        (report(report_id="2026-11-24/north/1\n"), "report_id must match"),
        (report(region="north\n"), "region must match"),
        (report(metric="confirmed\n"), "metric must match"),
        (report(period="2026-W48\n"), "period must match"),
        (report(name="Jane Doe"), "unknown payload field(s): name"),
        ({"report_id": "x", "region": "r", "metric": "m", "value": 1}, "missing field(s): period"),
    ],
)
def test_bad_reports(c: LocalChain, payload: dict[str, Any], reason: str) -> None:
    ok, why = c.run_one(3, "epi.report", payload)
    assert not ok and reason in why, why


def test_publish_by_authority_with_versions(c: LocalChain) -> None:
    assert c.run_one(1, "data.publish", publish()) == (True, "")
    d = queries.dataset(c.state, "weekly-cases")
    assert d is not None and d["version"] == 1 and d["content_hash"] == "ab" * 32 and d["access"] == "members"
    ok, why = c.run_one(2, "data.publish", publish())
    assert not ok and "identical" in why
    assert c.run_one(2, "data.publish", publish(content_hash=b"\xcd" * 32, access=["lab", "authority"]))[0]
    d2 = queries.dataset(c.state, "weekly-cases")
    assert d2 is not None and d2["version"] == 2 and d2["access"] == ["authority", "lab"] and d2["publisher"] == 2
    assert queries.dataset(c.state, "weekly-cases", 1)["version"] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("who", "payload", "reason"),
    [
        (3, publish(), "lacks role authority"),
        (1, publish(content_hash="zz"), "not hex"),
        (1, publish(content_hash=b"x"), "32 bytes"),
        (1, publish(access="everyone"), "access must be one of"),
        (1, publish(access=["lab", "lab"]), "access must be one of"),
        (1, publish(metadata="x"), "metadata must be a map"),
        (1, publish(dataset_id="a b"), "dataset_id must match"),
        (1, {"dataset_id": "x"}, "missing field"),
    ],
)
def test_bad_publish(c: LocalChain, who: int, payload: dict[str, Any], reason: str) -> None:
    ok, why = c.run_one(who, "data.publish", payload)
    assert not ok and reason in why, why
