"""Health codes: lab results, authorities' decisions and hospitals' recoveries drive a
subject's colour, by the rules in force (hzp2p.contracts.codelife has the rules, the
effective-colour derivation and the queries).

Rules version 1 (exactly as before the lifecycle existed):
- `lab.result` positive: the code turns red (source "lab").
- `lab.result` negative: if the code is red *because of a lab result* and this
  negative was sampled at least `green_after_days` after the last positive
  sample, the code returns to green automatically (source "lab"). A red set by
  an authority is only lifted by an authority.
- `healthcode.set` (authorities): any colour with a reason; setting green
  while the lab rule still says red (a positive and no qualifying negative) is
  refused unless `override` is true, and the override is recorded.
Version 2 (and governed versions based on it) adds the whole life (codelife): the
lab rule counts `red_negatives` negatives at an interval, a negative sampled after a
declared exposure ends its yellow, `recovery.record` lifts a lab red, and every change
stores its reason and causing transaction (`cause_tx`). Every lab result and every
change appends to the subject's history. Subjects without any entry are green.
"""

from __future__ import annotations

from typing import Any

from hzp2p.contracts import privacy
from hzp2p.contracts.api import TxContext
from hzp2p.contracts.codelife import (
    AUTHORITY_SOURCES,
    COLOURS,
    HEALTHCODE_RULES,
    LIFECYCLE,
    MAX_NEGATIVES,
    counted_negatives,
    default_code,
    effective_code,
    lab_says_red,
    quarantine_end_event,
    quarantine_over,
)
from hzp2p.contracts.domain_queries import (
    DAY_MS,
    RulesInForce,
    append_event,
    fail,
    k_code,
    k_code_hist,
    k_lab_test,
    load,
    rules_in_force,
    store,
)
from hzp2p.contracts.registry import contract, payload_generator, rules
from hzp2p.contracts.schema import Bool, Choice, Id, Int, Schema, Subject, Text

__all__ = ["COLOURS", "HEALTHCODE_RULES", "current_code", "lifecycle_rules", "write_code"]
rules("healthcode", HEALTHCODE_RULES)
RESULTS = ("positive", "negative")
LAB_SCHEMA = Schema(
    {"subject": Subject(), "test_id": Id(), "result": Choice(*RESULTS), "sample_ms": Int(0, 2**62)},
    {"record": privacy.ENVELOPE_SCHEMA.nested()},
)
SET_SCHEMA = Schema(
    {"subject": Subject(), "colour": Choice(*COLOURS), "reason": Text()},
    {"override": Bool()},
)
RECOVERY_SCHEMA = Schema(
    {"subject": Subject(), "recovered_ms": Int(0, 2**62), "reason": Text()},
    {"record": privacy.ENVELOPE_SCHEMA.nested()},
)


def lab_colour(last_pos: int | None, last_neg: int | None, period_ms: int) -> str | None:
    """What the version-1 lab rule alone says: None (no positive ever), "red" or "green"."""
    if last_pos is None:
        return None
    if last_neg is not None and last_neg >= last_pos + period_ms:
        return "green"
    return "red"


def _current(ctx: TxContext, subject: str) -> dict[str, Any]:
    code: dict[str, Any] | None = load(ctx.state, k_code(subject))
    return default_code(subject) if code is None else code


def _write(ctx: TxContext, code: dict[str, Any], event: dict[str, Any]) -> None:
    assert code["colour"] in COLOURS
    subject = code["subject"]
    store(ctx.state, k_code(subject), code)
    append_event(ctx, k_code_hist(subject), {**event, "colour": code["colour"]})


write_code = _write


def lifecycle_rules(ctx: TxContext) -> RulesInForce:
    """The health-code rules in force, which must have the whole life (version 2 on)."""
    r = rules_in_force(ctx, "healthcode", HEALTHCODE_RULES)
    if r.base < LIFECYCLE:
        fail(ctx, f"healthcode rules version {r.version} has no exposures, recoveries or appeals")
    return r


def current_code(ctx: TxContext, subject: str) -> dict[str, Any]:
    """The subject's code as in force at this block's time (version 2): a quarantine that
    ended since the code was last written is written first, into state and history,
    caused by its declaration's transaction."""
    code = _current(ctx, subject)
    if quarantine_over(code, ctx.timestamp_ms):
        eff = effective_code(code, ctx.timestamp_ms)
        _write(ctx, eff, quarantine_end_event(code, eff))
        return eff
    return code


def _change(
    ctx: TxContext, code: dict[str, Any], r: RulesInForce, colour: str, source: str, reason: str
) -> None:
    """Version 2: set the colour with its source, reason and causing transaction."""
    code.update(
        colour=colour,
        source=source,
        reason=reason,
        since_ms=ctx.timestamp_ms,
        rules_version=r.version,
        cause_tx=ctx.tx_hash,
    )
    if colour != "yellow" or source != "exposure":
        code["exposure"] = None


@contract("lab.result", schema=LAB_SCHEMA)
def lab_result(ctx: TxContext) -> None:
    """A lab's test result; payload: subject, test_id, result, sample_ms [, record]."""
    lab = ctx.require_member("lab")
    p = ctx.payload
    subject, test_id, result, sample = p["subject"], p["test_id"], p["result"], p["sample_ms"]
    if sample > ctx.timestamp_ms:
        fail(ctx, "sample_ms must be an integer time not after the block timestamp")
    r = rules_in_force(ctx, "healthcode", HEALTHCODE_RULES)
    version, rules = r.version, r.params
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
    if r.base >= LIFECYCLE:
        _lab_v2(ctx, r, lab.inst_id)
        return
    period = rules["green_after_days"] * DAY_MS

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
    r = rules_in_force(ctx, "healthcode", HEALTHCODE_RULES)
    version, rules = r.version, r.params
    if r.base >= LIFECYCLE:
        _set_v2(ctx, r, authority.inst_id)
        return
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


def _lab_v2(ctx: TxContext, r: RulesInForce, lab_id: int) -> None:
    p = ctx.payload
    test_id, result, sample = p["test_id"], p["result"], p["sample_ms"]
    code = current_code(ctx, p["subject"])
    before = code["colour"]
    negatives: list[int] = list(code.get("negatives", []))
    last_pos = code["last_positive_ms"]
    if result == "positive":
        last_pos = sample if last_pos is None else max(last_pos, sample)
        code["last_positive_ms"] = last_pos
        code["negatives"] = [n for n in negatives if n > last_pos]
        # (a late-arriving positive sampled before negatives that already lift it: no red)
        if before != "red" and lab_says_red(code, r.params):
            _change(ctx, code, r, "red", "lab", f"positive test {test_id}")
    else:
        prev = code["last_negative_ms"]
        code["last_negative_ms"] = sample if prev is None else max(prev, sample)
        if last_pos is None or sample > last_pos:  # kept for a positive arriving later
            code["negatives"] = sorted({*negatives, sample})[-MAX_NEGATIVES:]
        exp = code.get("exposure")
        if before == "red" and code["source"] == "lab" and not lab_says_red(code, r.params):
            n = counted_negatives(last_pos, code["negatives"], r.params)
            _change(
                ctx,
                code,
                r,
                "green",
                "lab",
                f"{n} negative tests (last {test_id}) at least "
                f"{r.params['negative_interval_hours']} h apart, from "
                f"{r.params['green_after_days']} days after the last positive",
            )
        elif (
            before == "yellow"
            and code["source"] == "exposure"
            and exp is not None
            and sample > exp["to_ms"]
        ):
            _change(
                ctx,
                code,
                r,
                "green",
                "lab",
                f"negative test {test_id} sampled after exposure {exp['exposure_id']}",
            )
    _write(
        ctx,
        code,
        {
            "event": "lab.result",
            "by": lab_id,
            "test_id": test_id,
            "result": result,
            "sample_ms": sample,
            "changed": code["colour"] != before,
            "reason": code["reason"] if code["colour"] != before else "",
            "rules_version": r.version,
        },
    )


def _set_v2(ctx: TxContext, r: RulesInForce, authority_id: int) -> None:
    p = ctx.payload
    colour, reason, override = p["colour"], p["reason"], p.get("override", False)
    code = current_code(ctx, p["subject"])
    if colour == "green" and not override and lab_says_red(code, r.params):
        fail(
            ctx,
            f"subject has a positive result and not {r.params['red_negatives']} negatives "
            f"after it (set override to clear anyway)",
        )
    before = code["colour"]
    _change(ctx, code, r, colour, "authority", reason)
    _write(
        ctx,
        code,
        {
            "event": "healthcode.set",
            "by": authority_id,
            "reason": reason,
            "override": override,
            "changed": colour != before,
            "rules_version": r.version,
        },
    )


@contract("recovery.record", schema=RECOVERY_SCHEMA)
def recovery_record(ctx: TxContext) -> None:
    """A hospital records a recovery: subject, recovered_ms, reason [, record (diagnosis)].
    Lifts a red from positive results (version 2); a red set by an authority is refused."""
    hospital = ctx.require_member("hospital")
    r = lifecycle_rules(ctx)
    p = ctx.payload
    subject, recovered = p["subject"], p["recovered_ms"]
    if recovered > ctx.timestamp_ms:
        fail(ctx, "recovered_ms must not be after the block timestamp")
    code = current_code(ctx, subject)
    if code["colour"] != "red":
        fail(ctx, f"the subject's code is {code['colour']}, not red")
    if code["source"] in AUTHORITY_SOURCES:
        fail(ctx, "the red was set by an authority; only an authority lifts it")
    last_pos = code["last_positive_ms"]
    if last_pos is not None and recovered < last_pos:
        fail(ctx, "recovered_ms is before the last positive sample")
    if "record" in p:
        privacy.store_record(ctx, hospital, subject, "diagnosis")
    _change(ctx, code, r, "green", "recovery", f"recovery recorded: {p['reason']}")
    code["negatives"] = []
    code["recovered_ms"] = recovered
    _write(
        ctx,
        code,
        {
            "event": "recovery.record",
            "by": hospital.inst_id,
            "reason": p["reason"],
            "recovered_ms": recovered,
            "changed": True,
            "rules_version": r.version,
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
