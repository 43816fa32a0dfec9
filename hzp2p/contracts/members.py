"""Membership governance: the institution registry and the authorities' votes that change it.

The vote is the consortium's one decision mechanism: a kind of proposal registers
(`proposal_kind`: how to check it, what to do once approved) and is opened with
`open_proposal`; member.vote decides every kind. Membership changes (member.propose)
are the kinds registered here; rule versions (rules.propose) are registered by
hzp2p.contracts.rulebook.

State layout (owned here; other modules use the functions, never the keys):
  mem/i/<inst_id:010>       an institution (Institution fields, canonical map)
  mem/k/<signing key>       signing key -> inst_id (kept after removal: ids never reused)
  mem/n/<node key>          node key -> inst_id
  mem/next_id               the next institution id to hand out
  mem/p/<proposal_id:010>   a proposal: action, params, electorate, votes, status
  mem/o/<target>            the open proposal for a target ("i<id>" or "k<signing key hex>")
  mem/next_prop             the next proposal id
  mem/log/<seq:010>         committed changes a Raft ConfChange must follow, in order

Rules (version 1 of rule "membership"): only active authorities propose and
vote; the electorate is the active authorities when the proposal is made; a
strict majority of it decides (the proposer's own yes counts); a proposal not
decided within PROPOSAL_TTL_MS of its creation expires; one open proposal per
target; the consortium always keeps at least one active authority and one
voter. Admitted institutions join as learners with a fresh, never reused id.

Key rotation (`rotate_keys`, issue 19) is decided the same way: an institution's
signing and node keys are replaced from the block that approves it on (each new
key unused by anyone before, or the target's current one to rotate only the other; the old ones stay recorded under mem/k and mem/n,
never reusable, so `key_owner` still names who signed an old transaction, while
`institution_by_key` accepts current keys only). The change is logged as kind
`rotate` (with the new signing key and the old keys; no Raft ConfChange follows):
hzp2p.contracts.certify follows it as a change of the voter set, so certificates
and receipts verify across it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hzp2p.contracts.api import (
    ROLES,
    Institution,
    StateView,
    TxContext,
    TxRejected,
    decode_value,
    encode_value,
    valid_address,
)
from hzp2p.contracts.registry import contract, rules
from hzp2p.contracts.schema import Bool, Choice, Int, Key32, Problem, Schema, key32, one_of
from hzp2p.contracts.state import Readable

PROPOSAL_TTL_MS = 7 * 24 * 3600 * 1000
rules("membership", {1: {"proposal_ttl_ms": PROPOSAL_TTL_MS}})
ACTIONS = ("admit", "remove", "set_roles", "promote", "demote", "rotate_keys")
def _ROLES(v: Any, path: str) -> list[Problem]:
    if type(v) is not list or not v:
        return [Problem(path, "must be a non-empty list")]
    if any(type(r) is not str or r not in ROLES for r in v) or len(set(v)) != len(v):
        return [Problem(path, f"must be distinct, from {sorted(ROLES)}")]
    return []
_INST = Int(1, 2**63 - 1)


def _address(v: Any, path: str) -> list[Problem]:
    return [] if valid_address(v) else [Problem(path, "must be host:port")]


def _name(v: Any, path: str) -> list[Problem]:
    if type(v) is not str or not 0 < len(v) <= 128:
        return [Problem(path, "must be 1..128 characters")]
    return []


def _action(name: str) -> Any:
    return Choice(name)


PROPOSE_SCHEMA = one_of(
    "action",
    {
        "admit": Schema(
            {
                "action": _action("admit"),
                "name": _name,
                "roles": _ROLES,
                "signing_key": Key32(),
                "node_key": Key32(),
                "address": _address,
            }
        ),
        "remove": Schema({"action": _action("remove"), "inst_id": _INST}),
        "set_roles": Schema({"action": _action("set_roles"), "inst_id": _INST, "roles": _ROLES}),
        "promote": Schema({"action": _action("promote"), "inst_id": _INST}),
        "demote": Schema({"action": _action("demote"), "inst_id": _INST}),
        "rotate_keys": Schema({"action": _action("rotate_keys"), "inst_id": _INST,
                               "signing_key": Key32(), "node_key": Key32()}),
    },
)
VOTE_SCHEMA = Schema({"proposal_id": Int(0, 2**63 - 1), "approve": Bool()})


@dataclass(frozen=True, slots=True)
class ProposalKind:
    """What one kind of proposal (its `action`) checks and does once approved."""

    prefix: str
    """The transaction type that proposes it; prefixes its refusals (stripped from notes)."""
    validate: Callable[[TxContext, Mapping[str, Any]], str]
    """Check the change against the current state (at proposal and again at approval);
    returns the target tag (one open proposal per target). Raises TxRejected."""
    apply: Callable[[TxContext, dict[str, Any]], None]
    """Carry out an approved proposal (may add to prop["params"])."""


PROPOSAL_KINDS: dict[str, ProposalKind] = {}


def proposal_kind(action: str, kind: ProposalKind) -> None:
    """Register a kind of proposal decided by the consortium's vote (each action once)."""
    old = PROPOSAL_KINDS.get(action)
    assert old is None or old.prefix == kind.prefix, f"duplicate proposal kind {action!r}"
    PROPOSAL_KINDS[action] = kind


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A committed change the daemon must turn into a Raft ConfChange (in `seq` order)."""

    seq: int
    kind: str  # add_learner | remove | promote | demote | rotate (no ConfChange)
    inst_id: int
    address: str
    node_key: bytes
    height: int
    proposal_id: int
    # rotate only (key rotation): the new signing key, the keys it replaced, the block's time
    signing_key: bytes = b""
    old_signing_key: bytes = b""
    old_node_key: bytes = b""
    at_ms: int = 0


# ---------------------------------------------------------------- layout and access


def k_inst(inst_id: int) -> bytes:
    return b"mem/i/%010d" % inst_id


def k_sigkey(key: bytes) -> bytes:
    return b"mem/k/" + key


def k_nodekey(key: bytes) -> bytes:
    return b"mem/n/" + key


def k_proposal(pid: int) -> bytes:
    return b"mem/p/%010d" % pid


K_NEXT_ID = b"mem/next_id"
K_NEXT_PROP = b"mem/next_prop"
K_LOG = b"mem/log/"
K_NEXT_LOG = b"mem/next_log"


def inst_record(inst: Institution) -> dict[str, Any]:
    return {
        "active": inst.active,
        "address": inst.address,
        "inst_id": inst.inst_id,
        "name": inst.name,
        "node_key": inst.node_key,
        "roles": sorted(inst.roles),
        "signing_key": inst.signing_key,
        "voter": inst.voter,
    }


def inst_from_record(r: Mapping[str, Any]) -> Institution:
    return Institution(
        inst_id=r["inst_id"],
        name=r["name"],
        roles=frozenset(r["roles"]),
        signing_key=r["signing_key"],
        node_key=r["node_key"],
        address=r["address"],
        voter=r["voter"],
        active=r["active"],
    )


def institution_writes(inst: Institution) -> dict[bytes, bytes]:
    """The state entries recording `inst` (used by genesis and by admission)."""
    return {
        k_inst(inst.inst_id): encode_value(inst_record(inst)),
        k_sigkey(inst.signing_key): encode_value(inst.inst_id),
        k_nodekey(inst.node_key): encode_value(inst.inst_id),
    }


def get_institution(state: Readable, inst_id: int) -> Institution | None:
    raw = state.get(k_inst(inst_id))
    return None if raw is None else _inst_from_raw(raw)


@functools.lru_cache(maxsize=1024)
def _inst_from_raw(raw: bytes) -> Institution:
    """A stored institution record -> Institution. A pure function of the bytes and the
    result is immutable, so it is shared: admission pre-checks every submitted transaction's
    signer, and decoding the record each time cost ~2 us of it."""
    return inst_from_record(decode_value(raw))


def institution_by_key(state: Readable, signing_key: bytes) -> Institution | None:
    """The institution whose *current* signing key this is (a key rotated away signs no
    more; `key_owner` still names its institution)."""
    raw = state.get(k_sigkey(signing_key))
    if raw is None:
        return None
    inst = get_institution(state, decode_value(raw))
    return inst if inst is not None and inst.signing_key == signing_key else None


def key_owner(state: Readable, signing_key: bytes) -> Institution | None:
    """The institution a signing key belongs or belonged to (removed members and rotated
    keys included): who signed an old transaction."""
    raw = state.get(k_sigkey(signing_key))
    return None if raw is None else get_institution(state, decode_value(raw))


def institutions(state: Readable) -> list[Institution]:
    return [inst_from_record(decode_value(v)) for _, v in state.scan(b"mem/i/")]


def _put_inst(state: StateView, inst: Institution) -> None:
    state.put(k_inst(inst.inst_id), encode_value(inst_record(inst)))


def _counter(state: StateView, key: bytes, default: int = 1) -> int:
    raw = state.get(key)
    n: int = default if raw is None else decode_value(raw)
    state.put(key, encode_value(n + 1))
    return n


def next_change_seq(state: Readable) -> int:
    raw = state.get(K_NEXT_LOG)
    return 0 if raw is None else int(decode_value(raw))


def changes_between(state: Readable, start: int, end: int) -> list[MembershipChange]:
    """Committed membership changes with start <= seq < end, in order."""
    out = []
    for seq in range(start, end):
        raw = state.get(K_LOG + b"%010d" % seq)
        assert raw is not None, f"membership log entry {seq} missing"
        out.append(MembershipChange(**decode_value(raw)))
    return out


def membership_log(state: Readable) -> list[MembershipChange]:
    return [MembershipChange(**decode_value(v)) for _, v in state.scan(K_LOG)]


# ---------------------------------------------------------------- payload checks


def _inst_id_field(state: StateView, p: Mapping[str, Any]) -> Institution:
    iid = p["inst_id"]
    inst = get_institution(state, iid)
    if inst is None or not inst.active:
        raise TxRejected(f"member.propose: institution {iid} is not an active member")
    return inst


def _active(state: Readable) -> list[Institution]:
    return [i for i in institutions(state) if i.active]


def _validate(state: StateView, action: str, params: Mapping[str, Any]) -> str:
    """Check the change against the current state; returns the target tag. Raises TxRejected."""
    if action in ("admit", "rotate_keys"):
        # a rotation may keep one of the target's *current* keys (rotating only the other)
        keep = get_institution(state, params["inst_id"]) if action == "rotate_keys" else None
        if keep is not None and (keep.signing_key, keep.node_key) == (
                params["signing_key"], params["node_key"]):
            raise TxRejected("member.propose: the rotation changes neither key")
        if state.get(k_sigkey(params["signing_key"])) is not None and (
                keep is None or keep.signing_key != params["signing_key"]):
            raise TxRejected("member.propose: signing_key already belongs to an institution")
        if state.get(k_nodekey(params["node_key"])) is not None and (
                keep is None or keep.node_key != params["node_key"]):
            raise TxRejected("member.propose: node_key already belongs to an institution")
    if action == "admit":
        return "k" + bytes(params["signing_key"]).hex()
    target = get_institution(state, params["inst_id"])
    if target is None or not target.active:
        raise TxRejected(f"member.propose: institution {params['inst_id']} is not an active member")
    active = _active(state)
    authorities = [i for i in active if "authority" in i.roles]
    voters = [i for i in active if i.voter]
    if action == "remove":
        if authorities == [target]:
            raise TxRejected("member.propose: cannot remove the last authority")
        if voters == [target]:
            raise TxRejected("member.propose: cannot remove the last voter")
    elif action == "set_roles":
        if authorities == [target] and "authority" not in params["roles"]:
            raise TxRejected("member.propose: cannot take the authority role from the last authority")
    elif action == "promote":
        if target.voter:
            raise TxRejected(f"member.propose: institution {target.inst_id} is already a voter")
    elif action == "demote":
        if not target.voter:
            raise TxRejected(f"member.propose: institution {target.inst_id} is not a voter")
        if voters == [target]:
            raise TxRejected("member.propose: cannot demote the last voter")
    return f"i{target.inst_id}"


def _params(ctx: TxContext) -> tuple[str, dict[str, Any]]:
    """The proposal's parameters from a payload that passed PROPOSE_SCHEMA."""
    st, p = ctx.state, ctx.payload
    action = p["action"]
    if action == "admit":
        return action, {
            "address": p["address"],
            "name": p["name"],
            "node_key": key32(p["node_key"]),
            "roles": sorted(p["roles"]),
            "signing_key": key32(p["signing_key"]),
        }
    if action == "set_roles":
        return action, {"inst_id": _inst_id_field(st, p).inst_id, "roles": sorted(p["roles"])}
    if action == "rotate_keys":
        return action, {"inst_id": _inst_id_field(st, p).inst_id,
                        "node_key": key32(p["node_key"]), "signing_key": key32(p["signing_key"])}
    return action, {"inst_id": _inst_id_field(st, p).inst_id}


# ---------------------------------------------------------------- handlers


def _open_key(target: str) -> bytes:
    return b"mem/o/" + target.encode()


def _load_proposal(state: Readable, pid: int) -> dict[str, Any] | None:
    raw = state.get(k_proposal(pid))
    return None if raw is None else dict(decode_value(raw))


def _close(state: StateView, prop: dict[str, Any], status: str, height: int, note: str) -> None:
    prop["status"] = status
    prop["decided_height"] = height
    prop["note"] = note
    state.put(k_proposal(prop["id"]), encode_value(dict(sorted(prop.items()))))
    state.delete(_open_key(prop["target"]))


@contract("member.propose", schema=PROPOSE_SCHEMA)
def propose(ctx: TxContext) -> None:
    me = ctx.require_member("authority")
    action, params = _params(ctx)
    open_proposal(ctx, me, action, params)


def open_proposal(
    ctx: TxContext, proposer: Institution, action: str, params: dict[str, Any]
) -> int:
    """Open a proposal of a registered kind (`proposal_kind`) and count the proposer's yes;
    returns its id. The one voting mechanism of the consortium: membership changes
    (member.propose) and rule versions (rules.propose, hzp2p.contracts.rulebook) both
    open proposals here and are decided by member.vote. Raises TxRejected."""
    st = ctx.state
    kind = PROPOSAL_KINDS[action]
    target = kind.validate(ctx, params)
    open_raw = st.get(_open_key(target))
    if open_raw is not None:
        other = _load_proposal(st, decode_value(open_raw))
        assert other is not None and other["status"] == "open"
        if ctx.timestamp_ms <= other["expires_ms"]:
            raise TxRejected(f"{kind.prefix}: proposal {other['id']} on this target is still open")
        _close(st, other, "expired", ctx.height, "not decided in time")
    electorate = sorted(i.inst_id for i in _active(st) if "authority" in i.roles)
    if ctx.rules.get("membership", 1) != 1:
        raise TxRejected(f"{kind.prefix}: unsupported membership rule version")
    ttl = PROPOSAL_TTL_MS
    pid = _counter(st, K_NEXT_PROP)
    prop = {
        "action": action,
        "created_ms": ctx.timestamp_ms,
        "decided_height": 0,
        "electorate": electorate,
        "expires_ms": ctx.timestamp_ms + ttl,
        "id": pid,
        "no": [],
        "note": "",
        "params": params,
        "proposed_height": ctx.height,
        "proposer": proposer.inst_id,
        "status": "open",
        "target": target,
        "threshold": len(electorate) // 2 + 1,
        "tx_hash": ctx.tx_hash,
        "yes": [proposer.inst_id],
    }
    st.put(_open_key(target), encode_value(pid))
    _decide(ctx, prop)
    return pid


@contract("member.vote", schema=VOTE_SCHEMA)
def vote(ctx: TxContext) -> None:
    me = ctx.require_member("authority")
    st = ctx.state
    pid, approve = ctx.payload["proposal_id"], ctx.payload["approve"]
    prop = _load_proposal(st, pid)
    if prop is None:
        raise TxRejected(f"member.vote: no proposal {pid}")
    if prop["status"] != "open":
        raise TxRejected(f"member.vote: proposal {pid} is already {prop['status']}")
    if ctx.timestamp_ms > prop["expires_ms"]:
        raise TxRejected(f"member.vote: proposal {pid} has expired")
    if me.inst_id not in prop["electorate"]:
        raise TxRejected(f"member.vote: {me.name!r} is not in proposal {pid}'s electorate")
    if me.inst_id in prop["yes"] or me.inst_id in prop["no"]:
        raise TxRejected(f"member.vote: {me.name!r} already voted on proposal {pid}")
    side = "yes" if approve else "no"
    prop[side] = sorted([*prop[side], me.inst_id])
    _decide(ctx, prop)


def _decide(ctx: TxContext, prop: dict[str, Any]) -> None:
    st = ctx.state
    yes, no = len(prop["yes"]), len(prop["no"])
    n, need = len(prop["electorate"]), prop["threshold"]
    if yes >= need:
        kind = PROPOSAL_KINDS[prop["action"]]
        try:
            kind.validate(ctx, prop["params"])
        except TxRejected as e:  # the world changed since the proposal; record why it failed
            _close(st, prop, "failed", ctx.height, e.reason.removeprefix(kind.prefix + ": "))
            return
        kind.apply(ctx, prop)
        _close(st, prop, "approved", ctx.height, "")
    elif no > n - need:
        _close(st, prop, "rejected", ctx.height, "a majority can no longer approve")
    else:
        st.put(k_proposal(prop["id"]), encode_value(dict(sorted(prop.items()))))


def _log(ctx: TxContext, kind: str, inst: Institution, pid: int,
         extra: Mapping[str, Any] | None = None) -> None:
    seq = _counter(ctx.state, K_NEXT_LOG, 0)
    rec = {
        **(extra or {}),
        "address": inst.address,
        "height": ctx.height,
        "inst_id": inst.inst_id,
        "kind": kind,
        "node_key": inst.node_key,
        "proposal_id": pid,
        "seq": seq,
    }
    ctx.state.put(K_LOG + b"%010d" % seq, encode_value(rec))


def _apply(ctx: TxContext, prop: dict[str, Any]) -> None:
    st, a, p, pid = ctx.state, prop["action"], prop["params"], prop["id"]
    if a == "admit":
        iid = _counter(st, K_NEXT_ID)
        inst = Institution(
            iid, p["name"], frozenset(p["roles"]), p["signing_key"], p["node_key"], p["address"], False
        )
        for k, v in institution_writes(inst).items():
            st.put(k, v)
        prop["params"] = {**p, "inst_id": iid}
        _log(ctx, "add_learner", inst, pid)
        return
    old = get_institution(st, p["inst_id"])
    assert old is not None
    if a == "remove":
        new = Institution(
            old.inst_id, old.name, old.roles, old.signing_key, old.node_key, old.address, False, False
        )
        _log(ctx, "remove", old, pid)
    elif a == "rotate_keys":
        new = Institution(old.inst_id, old.name, old.roles, p["signing_key"], p["node_key"],
                          old.address, old.voter)
        # the old keys' entries stay: they name who signed before, and are never reused
        st.put(k_sigkey(new.signing_key), encode_value(new.inst_id))
        st.put(k_nodekey(new.node_key), encode_value(new.inst_id))
        _log(ctx, "rotate", new, pid, {"signing_key": new.signing_key,
                                       "old_signing_key": old.signing_key,
                                       "old_node_key": old.node_key, "at_ms": ctx.timestamp_ms})
    elif a == "set_roles":
        new = Institution(
            old.inst_id, old.name, frozenset(p["roles"]), old.signing_key, old.node_key,
            old.address, old.voter,
        )
    else:
        new = Institution(
            old.inst_id, old.name, old.roles, old.signing_key, old.node_key, old.address,
            a == "promote",
        )
        _log(ctx, a, old, pid)
    _put_inst(st, new)


def _member_kind(action: str) -> ProposalKind:
    return ProposalKind(
        "member.propose", lambda ctx, params: _validate(ctx.state, action, params), _apply
    )


for _membership_action in ACTIONS:
    proposal_kind(_membership_action, _member_kind(_membership_action))
