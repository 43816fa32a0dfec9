"""Health codes: lab results drive a subject's colour; authorities set it explicitly.

Rules are versioned (ctx.rules["healthcode"], version 1 if absent) in
HEALTHCODE_RULES. Version 1:
- `lab.result` positive: the code turns red (source "lab").
- `lab.result` negative: if the code is red *because of a lab result* and this
  negative was sampled at least `green_after_days` after the last positive
  sample, the code returns to green automatically (source "lab"). A red set by
  an authority is only lifted by an authority.
- `healthcode.set` (authorities): any colour with a reason; setting green
  while the lab rule still says red (a positive and no qualifying negative) is
  refused unless `override` is true, and the override is recorded.
Every lab result and every change appends to the subject's history. Subjects
without any entry are green by default.
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts import privacy
from hzp2p.contracts.api import TxContext
from hzp2p.contracts.domain_queries import (
    DAY_MS,
    append_event,
    fail,
    k_code,
    k_code_hist,
    k_lab_test,
    load,
    rule_version,
    store,
)
from hzp2p.contracts.registry import contract, payload_generator, rules
from hzp2p.contracts.schema import Bool, Choice, Id, Int, Schema, Subject, Text

HEALTHCODE_RULES: dict[int, dict[str, int]] = {
    1: {"green_after_days": 14},
}
rules("healthcode", HEALTHCODE_RULES)
COLOURS = ("green", "yellow", "red")
RESULTS = ("positive", "negative")
LAB_SCHEMA = Schema(
    {"subject": Subject(), "test_id": Id(), "result": Choice(*RESULTS), "sample_ms": Int(0, 2**62)},
    {"record": privacy.ENVELOPE_SCHEMA.nested()},
)
SET_SCHEMA = Schema(
    {"subject": Subject(), "colour": Choice(*COLOURS), "reason": Text()},
    {"override": Bool()},
)


def lab_colour(last_pos: int | None, last_neg: int | None, period_ms: int) -> str | None:
    """What the lab rule alone says: None (no positive ever), "red" or "green"."""
    if last_pos is None:
        return None
    if last_neg is not None and last_neg >= last_pos + period_ms:
        return "green"
    return "red"


def _current(ctx: TxContext, subject: str) -> dict[str, Any]:
    code: dict[str, Any] | None = load(ctx.state, k_code(subject))
    if code is None:
        return {
            "subject": subject,
            "colour": "green",
            "source": "default",
            "reason": "",
            "since_ms": 0,
            "last_positive_ms": None,
            "last_negative_ms": None,
        }
    return code


def _write(ctx: TxContext, code: dict[str, Any], event: dict[str, Any]) -> None:
    assert code["colour"] in COLOURS
    subject = code["subject"]
    store(ctx.state, k_code(subject), code)
    append_event(ctx, k_code_hist(subject), {**event, "colour": code["colour"]})


@contract("lab.result", schema=LAB_SCHEMA)
def lab_result(ctx: TxContext) -> None:
    """A lab's test result; payload: subject, test_id, result, sample_ms [, record]."""
    lab = ctx.require_member("lab")
    p = ctx.payload
    subject, test_id, result, sample = p["subject"], p["test_id"], p["result"], p["sample_ms"]
    if sample > ctx.timestamp_ms:
        fail(ctx, "sample_ms must be an integer time not after the block timestamp")
    version, rules = rule_version(ctx, "healthcode", HEALTHCODE_RULES)
    period = rules["green_after_days"] * DAY_MS
    tkey = k_lab_test(lab.inst_id, test_id)
    if ctx.state.get(tkey) is not None:
        fail(ctx, f"test {test_id!r} of lab {lab.inst_id} already recorded")
    store(
        ctx.state,
        tkey,
        {"subject": subject, "result": result, "sample_ms": sample, "height": ctx.height},
    )
    if "record" in ctx.payload:  # optional encrypted personal fields of the result
        privacy.store_record(ctx, lab, subject, "lab_result")

    code = _current(ctx, subject)
    if result == "positive":
        prev = code["last_positive_ms"]
        code["last_positive_ms"] = sample if prev is None else max(prev, sample)
    else:
        prev = code["last_negative_ms"]
        code["last_negative_ms"] = sample if prev is None else max(prev, sample)
    verdict = lab_colour(code["last_positive_ms"], code["last_negative_ms"], period)
    before = code["colour"]
    if result == "positive" and verdict == "red" and before != "red":
        code.update(
            colour="red",
            source="lab",
            reason=f"positive test {test_id}",
            since_ms=ctx.timestamp_ms,
            rules_version=version,
        )
    elif (
        result == "negative" and verdict == "green" and before == "red" and code["source"] == "lab"
    ):
        code.update(
            colour="green",
            source="lab",
            reason=f"negative test {test_id} {rules['green_after_days']} days after last positive",
            since_ms=ctx.timestamp_ms,
            rules_version=version,
        )
    _write(
        ctx,
        code,
        {
            "event": "lab.result",
            "by": lab.inst_id,
            "test_id": test_id,
            "result": result,
            "sample_ms": sample,
            "changed": code["colour"] != before,
            "rules_version": version,
        },
    )


@contract("healthcode.set", schema=SET_SCHEMA)
def healthcode_set(ctx: TxContext) -> None:
    """An authority sets a colour; payload: subject, colour, reason [, override]."""
    authority = ctx.require_member("authority")
    p = ctx.payload
    subject, colour, reason = p["subject"], p["colour"], p["reason"]
    override = p.get("override", False)
    version, rules = rule_version(ctx, "healthcode", HEALTHCODE_RULES)
    period = rules["green_after_days"] * DAY_MS
    code = _current(ctx, subject)
    if (
        colour == "green"
        and not override
        and lab_colour(code["last_positive_ms"], code["last_negative_ms"], period) == "red"
    ):
        fail(
            ctx,
            f"subject has a positive result and no negative sampled "
            f"{rules['green_after_days']} days after it (set override to clear anyway)",
        )
    before = code["colour"]
    code.update(
        colour=colour,
        source="authority",
        reason=reason,
        since_ms=ctx.timestamp_ms,
        rules_version=version,
    )
    _write(
        ctx,
        code,
        {
            "event": "healthcode.set",
            "by": authority.inst_id,
            "reason": reason,
            "override": override,
            "changed": colour != before,
            "rules_version": version,
        },
    )


@payload_generator("lab.result", "lab")
def _gen_lab(i: int) -> dict[str, Any]:
    return {
        "result": ("negative", "positive")[i % 2],
        "sample_ms": 0,
        "subject": f"{i % 4096:032x}",
        "test_id": f"bench-{i}",
    }


@payload_generator("healthcode.set", "authority")
def _gen_code(i: int) -> dict[str, Any]:
    return {"colour": "yellow", "reason": "benchmark", "subject": f"{i % 4096:032x}"}
