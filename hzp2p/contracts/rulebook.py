"""Rule versions changed by the consortium's vote: `rules.propose`, decided by member.vote.

An authority proposes a new parameter set for a governed rule (`GOVERNED`: health
codes and privacy) with an activation height; the proposal is one of the
consortium's proposals (hzp2p.contracts.members: the same electorate of active
authorities, strict majority, expiry, one open proposal per rule) and is decided by
`member.vote`. Once approved, the set becomes the next version of the rule (numbered
after every built-in and earlier governed version), based on the newest built-in
version (whose logic interprets it: the parameter names must be exactly that
version's), and is scheduled at its activation height (`rules/s/<name>`). From that
height on every node judges every transaction by it (domain_queries.rules_at: a pure
function of state and height); before it, by the version in force until then. The
activation height must still be in the future when the proposal is approved, else
the proposal fails. Approving a set for a height that already has one replaces it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hzp2p.contracts import codelife, members, privacy
from hzp2p.contracts.api import TxContext, TxRejected, decode_value
from hzp2p.contracts.domain_queries import (
    StateReader,
    genesis_rule_versions,
    head_of,
    k_rule_schedule,
    k_rule_version,
    load,
    rules_at,
    store,
)
from hzp2p.contracts.registry import contract
from hzp2p.contracts.schema import Choice, Int, MapOf, Match, Schema


def _privacy_params(params: Mapping[str, int]) -> list[str]:
    out = []
    if params["emergency_window_ms"] < 60_000:
        out.append("emergency_window_ms must be at least 60000")
    if not 1 <= params["max_grant_types"] <= privacy.MAX_GRANT_TYPES:
        out.append(f"max_grant_types must be in [1, {privacy.MAX_GRANT_TYPES}]")
    if params["max_grant_days"] < 1:
        out.append("max_grant_days must be at least 1")
    return out


GOVERNED: dict[str, tuple[Mapping[int, Mapping[str, int]], Callable[[Mapping[str, int]], list[str]]]]
GOVERNED = {
    "healthcode": (codelife.HEALTHCODE_RULES, codelife.check_params),
    "privacy": (privacy.PRIVACY_RULES, _privacy_params),
}
"""Rule name -> (built-in versions, check of a proposed parameter set)."""
ACTION = "rules"
PROPOSE_SCHEMA = Schema(
    {
        "rule": Choice(*sorted(GOVERNED)),
        "params": MapOf(Match(r"[a-z_]{1,40}", "[a-z_]{1,40}"), Int(0, 2**40), 16),
        "activation_height": Int(1, 2**62),
    }
)


def _refuse(msg: str) -> TxRejected:
    return TxRejected(f"rules.propose: {msg}")


def _validate(ctx: TxContext, params: Mapping[str, Any]) -> str:
    name = params["rule"]
    table, check = GOVERNED[name]
    want = sorted(table[max(table)])
    if sorted(params["params"]) != want:
        raise _refuse(f"{name} parameters must be exactly {', '.join(want)}")
    problems = check(params["params"])
    if problems:
        raise _refuse("; ".join(problems))
    if params["activation_height"] <= ctx.height:
        raise _refuse(f"activation_height must be after the current height {ctx.height}")
    return f"r{name}"


def _next_version(ctx: TxContext, name: str) -> int:
    table, _ = GOVERNED[name]
    top = max(ctx.rules.get(name, 1), max(table))
    for k, _ in ctx.state.scan(k_rule_version(name, 0)[:-6]):
        top = max(top, int(k.rsplit(b"/", 1)[1]))
    return top + 1


def _apply(ctx: TxContext, prop: dict[str, Any]) -> None:
    p = prop["params"]
    name, act = p["rule"], p["activation_height"]
    table, _ = GOVERNED[name]
    version = _next_version(ctx, name)
    store(
        ctx.state,
        k_rule_version(name, version),
        {
            "name": name,
            "version": version,
            "base": max(table),
            "params": dict(sorted(p["params"].items())),
            "activation_height": act,
            "proposal_id": prop["id"],
            "adopted_height": ctx.height,
            "adopted_tx": ctx.tx_hash,
        },
    )
    sched: list[list[int]] = load(ctx.state, k_rule_schedule(name)) or []
    store(ctx.state, k_rule_schedule(name), sorted([e for e in sched if e[0] != act] + [[act, version]]))
    prop["params"] = {**p, "version": version}


members.proposal_kind(ACTION, members.ProposalKind("rules.propose", _validate, _apply))


@contract("rules.propose", schema=PROPOSE_SCHEMA)
def rules_propose(ctx: TxContext) -> None:
    """An authority proposes rule, params (the full parameter set), activation_height."""
    me = ctx.require_member("authority")
    p = ctx.payload
    params = {
        "rule": p["rule"],
        "params": dict(sorted(p["params"].items())),
        "activation_height": p["activation_height"],
    }
    members.open_proposal(ctx, me, ACTION, params)


# ---------------------------------------------------------------- queries


def rule_history(state: StateReader, name: str) -> list[dict[str, Any]]:
    """Every version of rule `name`: the genesis one, then each governed one (with its
    activation height, proposal and status at the head: in force, scheduled, superseded
    or replaced), in version order."""
    table = GOVERNED[name][0] if name in GOVERNED else {}
    height = head_of(state)[0]
    genesis = genesis_rule_versions(state).get(name, 1)
    now = rules_at(state, height, genesis, name, table)
    sched = {v: act for act, v in (load(state, k_rule_schedule(name)) or [])}
    out: list[dict[str, Any]] = [
        {
            "name": name,
            "version": genesis,
            "base": genesis,
            "params": dict(table.get(genesis, {})),
            "activation_height": 0,
            "status": "in force" if now is not None and now.version == genesis else "superseded",
        }
    ]
    prefix = k_rule_version(name, 0)[:-6]
    for _, raw in state.scan(prefix):
        rec = dict(decode_value(raw))
        v = rec["version"]
        if now is not None and now.version == v:
            rec["status"] = "in force"
        elif v not in sched:
            rec["status"] = "replaced"
        elif sched[v] > height:
            rec["status"] = "scheduled"
        else:
            rec["status"] = "superseded"
        out.append(rec)
    return out
