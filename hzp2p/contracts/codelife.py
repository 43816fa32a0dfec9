"""A health code's life: its versioned rules, the effective colour, and the queries on it.

Pure functions only (no handlers): the contracts (hzp2p.contracts.healthcode,
exposure, appeals) and the queries use the same ones, so what a node shows is what
a contract would decide.

Rules (`HEALTHCODE_RULES`, rule name "healthcode"; the version in force at a height
comes from genesis or governance, hzp2p.contracts.domain_queries.rules_at):
- version 1: `green_after_days`. Lab results only: a positive turns the code red, a
  negative sampled `green_after_days` after the last positive turns a lab red green;
  authorities set any colour. No exposure, recovery or appeal.
- version 2, the whole life: green -> yellow (a declared, published exposure, for
  `quarantine_days` after the exposure window ends; or an authority) -> red (a positive
  result; or an authority); yellow -> green when the quarantine period ends with no
  positive, or on a negative sampled after the exposure window; red -> green after
  `red_negatives` negatives sampled after the last positive, the first at least
  `green_after_days` after it and each at least `negative_interval_hours` after the
  previous counted one, or after a hospital's `recovery.record`. Colours set by an
  authority (or by an appeal's correction) are changed only by an authority, except that
  a positive result always turns a code red. Appeals open longer than
  `appeal_limit_days` are overdue; `credential_valid_hours` is how long a code shown
  to a third party (a gateway credential) stays valid.

Nothing runs on a timer, so the one time-driven change (a quarantine ending) is not
written when it happens: the *effective* code at a block time is `effective_code(stored
code, time)`, a pure function. Queries show the effective code at the head's timestamp;
a contract touching the code first writes the effective change into state and history
("quarantine.end", caused by the declaration's transaction) and then applies its own.

Layout (subjects are 32 hex digits, ids [A-Za-z0-9._:-]{1,64}):
  hc/a/<subject>/<appeal_id>             an appeal and its outcome
  hc/o/<opened_ms:015>/<subject>/<appeal_id>   open appeals, oldest first
  hc/x/<subject>/<exposure_id>           a subject's declaration of a published exposure
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hzp2p.contracts.api import decode_value
from hzp2p.contracts.domain_queries import (
    DAY_MS,
    RulesInForce,
    StateReader,
    genesis_rule_versions,
    head_of,
    k_code_hist,
    load,
    rules_at,
    values,
)

HOUR_MS = 3_600_000
HEALTHCODE_RULES: dict[int, dict[str, int]] = {
    1: {"green_after_days": 14},
    2: {
        "green_after_days": 7,
        "red_negatives": 2,
        "negative_interval_hours": 24,
        "quarantine_days": 14,
        "appeal_limit_days": 3,
        "credential_valid_hours": 24,
    },
}
LIFECYCLE = 2
"""The first rules version (base) with exposures, recoveries and appeals."""
COLOURS = ("green", "yellow", "red")
AUTHORITY_SOURCES = ("authority", "appeal")
MAX_NEGATIVES = 32
"""Negatives kept per code (those sampled after the last positive; the newest)."""


def check_params(params: Mapping[str, int]) -> list[str]:
    """What is wrong with a proposed version-2-shaped parameter set (governance)."""
    out = []
    if params.get("red_negatives", 1) < 1:
        out.append("red_negatives must be at least 1")
    for name in ("quarantine_days", "appeal_limit_days", "credential_valid_hours"):
        if name in params and params[name] < 1:
            out.append(f"{name} must be at least 1")
    return out


# ---------------------------------------------------------------- keys


def k_appeal(subject: str, appeal_id: str = "") -> bytes:
    return f"hc/a/{subject}/{appeal_id}".encode()


def k_open_appeal(opened_ms: int, subject: str, appeal_id: str) -> bytes:
    return f"hc/o/{opened_ms:015d}/{subject}/{appeal_id}".encode()


K_OPEN_APPEALS = b"hc/o/"


def k_declared(subject: str, exposure_id: str) -> bytes:
    return f"hc/x/{subject}/{exposure_id}".encode()


# ---------------------------------------------------------------- the rules


def default_code(subject: str) -> dict[str, Any]:
    """The code of a subject nothing was ever recorded for."""
    return {
        "subject": subject,
        "colour": "green",
        "source": "default",
        "reason": "",
        "since_ms": 0,
        "last_positive_ms": None,
        "last_negative_ms": None,
    }


def counted_negatives(
    last_positive_ms: int | None, negatives: list[int], params: Mapping[str, int]
) -> int:
    """How many of `negatives` count towards lifting a lab red (version 2): sampled at
    least `green_after_days` after the last positive, each at least
    `negative_interval_hours` after the previous one counted."""
    if last_positive_ms is None:
        return 0
    start = last_positive_ms + params["green_after_days"] * DAY_MS
    gap = params["negative_interval_hours"] * HOUR_MS
    count, prev = 0, None
    for n in sorted(negatives):
        if n >= start and (prev is None or n >= prev + gap):
            count, prev = count + 1, n
    return count


def lab_says_red(code: Mapping[str, Any], params: Mapping[str, int]) -> bool:
    """Version 2: a positive on record and not yet the negatives that lift it."""
    last = code.get("last_positive_ms")
    if last is None:
        return False
    recovered = code.get("recovered_ms")
    if recovered is not None and recovered >= last:
        return False
    return counted_negatives(last, code.get("negatives", []), params) < params["red_negatives"]


def quarantine_over(code: Mapping[str, Any], now_ms: int) -> bool:
    """A yellow from a declared exposure whose quarantine period ended by `now_ms`."""
    exp = code.get("exposure")
    return (
        code["colour"] == "yellow"
        and code["source"] == "exposure"
        and exp is not None
        and now_ms >= exp["until_ms"]
    )


def effective_code(code: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """The code in force at block time `now_ms`, from the stored code (pure).

    The stored code is what the last transaction touching it left; the only change
    time alone makes is the end of a quarantine, which this applies: a yellow from
    a declared exposure is green from `until_ms` on, with its reason and cause (the
    declaration's transaction)."""
    if not quarantine_over(code, now_ms):
        return dict(code)
    exp = code["exposure"]
    return {
        **code,
        "colour": "green",
        "source": "rule",
        "reason": (
            f"quarantine after exposure {exp['exposure_id']} ended "
            f"({exp['quarantine_days']} days) with no positive result"
        ),
        "since_ms": exp["until_ms"],
        "cause_tx": exp["declared_tx"],
        "exposure": None,
    }


# ---------------------------------------------------------------- queries


def healthcode_rules(state: StateReader, height: int | None = None) -> RulesInForce:
    """The health-code rules in force at `height` (default: the head's)."""
    if height is None:
        height = head_of(state)[0]
    genesis = genesis_rule_versions(state).get("healthcode", 1)
    r = rules_at(state, height, genesis, "healthcode", HEALTHCODE_RULES)
    assert r is not None, f"unknown healthcode rules version {genesis}"
    return r


def effective_health_code(
    state: StateReader, subject: str, now_ms: int | None = None
) -> dict[str, Any]:
    """A subject's code in force at `now_ms` (default: the head block's timestamp), with
    the colour's reason, source and causing transaction."""
    if now_ms is None:
        now_ms = head_of(state)[1]
    code: dict[str, Any] | None = load(state, f"hc/c/{subject}".encode())
    return effective_code(code if code is not None else default_code(subject), now_ms)


def code_history(
    state: StateReader, subject: str, now_ms: int | None = None
) -> list[dict[str, Any]]:
    """Every change and event of a subject's code, oldest first, each with its `seq` (what
    an appeal names), reason and transaction; a change due by `now_ms` (default: head time) but not yet written
    (a quarantine that ended) is appended with `derived: True`."""
    if now_ms is None:
        now_ms = head_of(state)[1]
    prefix = k_code_hist(subject)
    hist = [
        {**decode_value(v), "seq": int(k[len(prefix) :])} for k, v in state.scan(prefix)
    ]
    code: dict[str, Any] | None = load(state, f"hc/c/{subject}".encode())
    if code is not None and quarantine_over(code, now_ms):
        eff = effective_code(code, now_ms)
        hist.append(quarantine_end_event(code, eff) | {"derived": True})
    return hist


def quarantine_end_event(code: Mapping[str, Any], eff: Mapping[str, Any]) -> dict[str, Any]:
    """The history entry of a quarantine's end (written or derived)."""
    return {
        "event": "quarantine.end",
        "by": "rule",
        "reason": eff["reason"],
        "cause_tx": eff["cause_tx"],
        "effective_ms": eff["since_ms"],
        "exposure_id": code["exposure"]["exposure_id"],
        "changed": True,
        "colour": eff["colour"],
        "rules_version": code.get("rules_version", LIFECYCLE),
    }


def appeals(state: StateReader, subject: str) -> list[dict[str, Any]]:
    """A subject's appeals (open and resolved), by appeal id."""
    return values(state, k_appeal(subject))


def overdue_appeals(state: StateReader, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Open appeals older than the rules' `appeal_limit_days` at `now_ms` (default: head
    time), oldest first: what `admin watch` and the metrics report."""
    height, head_ms = head_of(state)
    now = head_ms if now_ms is None else now_ms
    r = healthcode_rules(state, height)
    if r.base < LIFECYCLE:
        return []
    cutoff = now - r.params["appeal_limit_days"] * DAY_MS
    out = []
    for k, _ in state.scan(K_OPEN_APPEALS):
        opened_ms, subject, appeal_id = k[len(K_OPEN_APPEALS) :].decode().split("/")
        if int(opened_ms) >= cutoff:
            break
        rec: dict[str, Any] | None = load(state, k_appeal(subject, appeal_id))
        assert rec is not None and rec["status"] == "open", "open-appeal index is stale"
        out.append({**rec, "open_ms": now - int(opened_ms)})
    return out
