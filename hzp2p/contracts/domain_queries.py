"""State key layout of the domain contracts, their payload readers, and pure queries.

One module owns the byte layout of every domain key (health codes, lots, sensors,
readings, vaccinations, records, grants, access log) so the contracts that write
them and the queries that read them cannot drift apart. Queries take any
StateReader (a committed state or a transaction's StateView) and never write.

Layout (ids are [A-Za-z0-9._:-]{1,64}, so "/" always ends an id; numbers are
zero-padded so a prefix scan returns them in numeric order):
  hc/c/<subject>                      current health code
  hc/h/<subject>/<seq:010>            health-code history (every change, in order)
  hc/t/<lab_id:010>/<test_id>         a lab's test id, accepted once
  lot/m/<lot>                         a lot: product, quantities, range, custody, status
  lot/e/<lot>/<seq:010>               lot events: register, transfer, recall, quarantine, release
  sensor/<sensor_id>                  a sensor's verify key and owning carrier
  cc/r/<lot>/<t_ms:015>/<seq:010>     temperature readings of a lot, by time
  cc/b/<batch hash hex>               a signed readings batch, accepted once
  vax/d/<subject>/<product>/<dose:03> a subject's doses of one product
  vax/l/<lot>/<subject>/<dose:03>     index: the doses given from a lot (a recall's recipients)
  vax/s/<site:010>/<day:08>/<subject>/<product>/<dose:03>
                                      index: a site's doses by UTC day (yyyymmdd)
  rec/r/<record_id>                   an encrypted record and its sealed keys
  rec/s/<subject>/<seq:010>           a subject's records, in order written
  rec/h/<inst_id:010>/<record_id>     records whose key an institution holds
  enc/<inst_id:010>                   an institution's registered encryption key
  grant/<subject>/<grant_id>          consent grants (revoked ones stay, marked)
  emerg/<record_id>/<inst_id:010>     an authority's emergency authorisation
  access/<subject>/<seq:010>          the subject's access log
  seq/<prefix>                        the next sequence number under <prefix>
  rules/s/<name>                      governed rule versions of <name>: [[activation height, version]]
  rules/v/<name>/<version:06>         a governed rule version: base, params, activation, proposal
(health-code lifecycle keys: hzp2p.contracts.codelife; venues, check-ins, exposures:
hzp2p.contracts.exposure.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from hzp2p.contracts.api import (
    Institution,
    StateView,
    TxContext,
    TxRejected,
    decode_value,
    encode_value,
)
from hzp2p.contracts.state import Readable

DAY_MS = 86_400_000


# Read side of contract state (structurally the same as hzp2p.storage.interfaces.StateReader).
StateReader = Readable


# ---------------------------------------------------------------- keys


def k_code(subject: str) -> bytes:
    return f"hc/c/{subject}".encode()


def k_code_hist(subject: str) -> bytes:
    return f"hc/h/{subject}/".encode()


def k_lab_test(lab_id: int, test_id: str) -> bytes:
    return f"hc/t/{lab_id:010d}/{test_id}".encode()


def k_lot(lot_id: str) -> bytes:
    return f"lot/m/{lot_id}".encode()


def k_lot_events(lot_id: str) -> bytes:
    return f"lot/e/{lot_id}/".encode()


def k_sensor(sensor_id: str) -> bytes:
    return f"sensor/{sensor_id}".encode()


def k_readings(lot_id: str) -> bytes:
    return f"cc/r/{lot_id}/".encode()


def k_reading(lot_id: str, t_ms: int, seq: int) -> bytes:
    return f"cc/r/{lot_id}/{t_ms:015d}/{seq:010d}".encode()


def k_batch(batch_hash: bytes) -> bytes:
    return b"cc/b/" + batch_hash.hex().encode()


def k_dose(subject: str, product: str, dose: int) -> bytes:
    return f"vax/d/{subject}/{product}/{dose:03d}".encode()


def k_lot_dose(lot_id: str, subject: str, dose: int) -> bytes:
    return f"vax/l/{lot_id}/{subject}/{dose:03d}".encode()


def k_site_dose(site: int, day: str, subject: str, product: str, dose: int) -> bytes:
    return f"vax/s/{site:010d}/{day}/{subject}/{product}/{dose:03d}".encode()


def k_doses(subject: str) -> bytes:
    return f"vax/d/{subject}/".encode()


def k_record(record_id: str) -> bytes:
    return f"rec/r/{record_id}".encode()


def k_subject_records(subject: str) -> bytes:
    return f"rec/s/{subject}/".encode()


def k_held(inst_id: int, record_id: str = "") -> bytes:
    """The holder index entry (or, with no record id, its prefix)."""
    return f"rec/h/{inst_id:010d}/{record_id}".encode()


def k_enc_key(inst_id: int) -> bytes:
    return f"enc/{inst_id:010d}".encode()


def k_grant(subject: str, grant_id: str) -> bytes:
    return f"grant/{subject}/{grant_id}".encode()


def k_grants(subject: str) -> bytes:
    return f"grant/{subject}/".encode()


def k_emergency(record_id: str, inst_id: int) -> bytes:
    return f"emerg/{record_id}/{inst_id:010d}".encode()


def k_access_log(subject: str) -> bytes:
    return f"access/{subject}/".encode()


# ---------------------------------------------------------------- state helpers


def load(state: StateReader, key: bytes) -> Any:
    raw = state.get(key)
    return None if raw is None else decode_value(raw)


def store(state: StateView, key: bytes, value: Any) -> None:
    state.put(key, encode_value(value))


def append_seq(state: StateView, prefix: bytes, value: Any) -> int:
    """Write `value` at prefix + the next zero-padded sequence number; returns that number."""
    assert prefix.endswith(b"/"), prefix
    ckey = b"seq/" + prefix
    raw = state.get(ckey)
    seq = 0 if raw is None else int(decode_value(raw))
    assert seq >= 0
    state.put(prefix + f"{seq:010d}".encode(), encode_value(value))
    state.put(ckey, encode_value(seq + 1))
    return seq


def append_event(ctx: TxContext, prefix: bytes, event: Mapping[str, Any]) -> int:
    """append_seq of `event` stamped with where it happened: height, timestamp_ms, tx_hash
    (lot events, health-code history, access log)."""
    return append_seq(
        ctx.state,
        prefix,
        {**event, "height": ctx.height, "timestamp_ms": ctx.timestamp_ms, "tx_hash": ctx.tx_hash},
    )


def values(state: StateReader, prefix: bytes, limit: int | None = None) -> list[Any]:
    return [decode_value(v) for _, v in state.scan(prefix, limit)]


def institution(state: StateReader, inst_id: int) -> Institution | None:
    """The member `inst_id` as recorded by the membership contract, or None."""
    from hzp2p.contracts import members  # the membership contract owns its layout

    inst: Institution | None = members.get_institution(state, inst_id)
    return inst


# ---------------------------------------------------------------- handler helpers


def fail(ctx: TxContext, msg: str) -> NoReturn:
    raise TxRejected(f"{ctx.tx_type}: {msg}")


def k_rule_schedule(name: str) -> bytes:
    return f"rules/s/{name}".encode()


def k_rule_version(name: str, version: int) -> bytes:
    return f"rules/v/{name}/{version:06d}".encode()


@dataclass(frozen=True, slots=True)
class RulesInForce:
    """The parameter set of rule `name` in force at some height.

    `version` is what transactions and history name; `base` is the built-in version
    whose logic interprets `params` (a version adopted by governance has the key set of
    the newest built-in version, its base; a genesis version is its own base)."""

    name: str
    version: int
    base: int
    params: Mapping[str, int]
    activation_height: int  # 0 for the genesis version


def rules_at(
    state: StateReader, height: int, genesis_version: int, name: str, table: Mapping[int, Any]
) -> RulesInForce | None:
    """The version of rule `name` in force at `height`: the governed version with the
    latest activation height <= `height`, else the genesis version (None if unknown).
    A pure function of state and height, so every node judges a transaction at a
    height by the same parameters."""
    sched: list[list[int]] | None = load(state, k_rule_schedule(name))
    for act, version in reversed(sched or []):
        if act <= height:
            rec = load(state, k_rule_version(name, version))
            assert rec is not None, "rule schedule names a missing version"
            return RulesInForce(name, version, rec["base"], rec["params"], act)
    if genesis_version not in table:
        return None
    return RulesInForce(name, genesis_version, genesis_version, table[genesis_version], 0)


def rules_in_force(ctx: TxContext, name: str, table: Mapping[int, Any]) -> RulesInForce:
    """The rules of `name` in force at the transaction's height (refused if unknown)."""
    r = rules_at(ctx.state, ctx.height, ctx.rules.get(name, 1), name, table)
    if r is None:
        fail(ctx, f"unknown {name} rules version {ctx.rules.get(name, 1)}")
    return r


def rule_version(ctx: TxContext, name: str, table: Mapping[int, Any]) -> tuple[int, Any]:
    """(version, parameters) of `name` in force at the transaction's height: the genesis
    version (1 if genesis names none) until a governed version activates."""
    r = rules_in_force(ctx, name, table)
    return r.version, r.params


def genesis_rule_versions(state: StateReader) -> dict[str, int]:
    """The rule versions named by the genesis (as the engine stores them)."""
    from hzp2p.contracts.engine import rules_of  # the engine owns its key

    return rules_of(state)


def head_of(state: StateReader) -> tuple[int, int]:
    """(height, timestamp_ms) of the chain head a state is at."""
    from hzp2p.contracts.engine import read_head  # the engine owns its key

    h = read_head(state)
    return h.height, h.timestamp_ms


# ---------------------------------------------------------------- queries


def health_code(state: StateReader, subject: str) -> dict[str, Any] | None:
    """A subject's current health code (colour, reason, source, since_ms, ...), or None."""
    code: dict[str, Any] | None = load(state, k_code(subject))
    return code


def health_code_history(state: StateReader, subject: str) -> list[dict[str, Any]]:
    """Every health-code change of a subject, oldest first."""
    return values(state, k_code_hist(subject))


def lot_status(lot: dict[str, Any], now_ms: int | None = None) -> str:
    """A lot's status: "recalled", "quarantined", "expired" or "active" (in that order of
    precedence). "expired" needs `now_ms`, the block time of the height the status is read
    at (contracts pass their block's, queries their head's): a stored lot cannot know it."""
    if lot["recall"] is not None:
        return "recalled"
    if lot["quarantine"] is not None:
        return "quarantined"
    if now_ms is not None and lot["expiry_ms"] <= now_ms:
        return "expired"
    return "active"


def lot(state: StateReader, lot_id: str) -> dict[str, Any] | None:
    """A lot's current record (status, custodian, remaining doses, range, quarantine
    evidence), its status as of the block time of the state's head (so "expired" once past
    its expiry)."""
    from hzp2p.contracts.engine import read_head  # the engine owns the head's layout

    rec: dict[str, Any] | None = load(state, k_lot(lot_id))
    if rec is not None:
        rec["status"] = lot_status(rec, read_head(state).timestamp_ms)
    return rec


def lot_events(state: StateReader, lot_id: str) -> list[dict[str, Any]]:
    """A lot's events (register, transfer, recall, quarantine), oldest first."""
    return values(state, k_lot_events(lot_id))


def lot_custody(state: StateReader, lot_id: str) -> list[dict[str, Any]]:
    """A lot's custody chain: the registration and every transfer, oldest first."""
    return [e for e in lot_events(state, lot_id) if e["kind"] in ("register", "transfer")]


def temperature_history(
    state: StateReader, lot_id: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """A lot's temperature readings ordered by reading time (ties in arrival order)."""
    return values(state, k_readings(lot_id), limit)


def sensor(state: StateReader, sensor_id: str) -> dict[str, Any] | None:
    rec: dict[str, Any] | None = load(state, k_sensor(sensor_id))
    return rec


def doses(state: StateReader, subject: str) -> list[dict[str, Any]]:
    """A subject's recorded doses, by product then dose number."""
    return values(state, k_doses(subject))


def record(state: StateReader, record_id: str) -> dict[str, Any] | None:
    """An encrypted record: subject, type, writer, ciphertext, holders (sealed keys), erased."""
    rec: dict[str, Any] | None = load(state, k_record(record_id))
    return rec


def subject_records(state: StateReader, subject: str) -> list[dict[str, Any]]:
    """A subject's records, in the order they were written."""
    out = []
    for _, rid in state.scan(k_subject_records(subject)):
        rec = record(state, decode_value(rid))
        assert rec is not None, "subject index points at a missing record"
        out.append(rec)
    return out


def held_records(state: StateReader, inst_id: int) -> list[str]:
    """Ids of the live records whose key institution `inst_id` holds, by record id."""
    prefix = k_held(inst_id)
    return [k[len(prefix) :].decode() for k, _ in state.scan(prefix)]


def enc_key(state: StateReader, inst_id: int) -> dict[str, Any] | None:
    """An institution's registered encryption key {key_id, public_key, ...}, or None
    (then its key is the one derived from its signing key, key id 0)."""
    rec: dict[str, Any] | None = load(state, k_enc_key(inst_id))
    return rec


def grants(state: StateReader, subject: str) -> list[dict[str, Any]]:
    """A subject's consent grants (revoked ones included, with revoked_ms), by grant id."""
    return values(state, k_grants(subject))


def emergency_requests(state: StateReader, record_id: str) -> list[dict[str, Any]]:
    """Emergency authorisations for a record (open ones have fulfilled=False and an
    expires_ms after now), by authority id: what a holder's daemon checks to honour them."""
    return values(state, f"emerg/{record_id}/".encode())


def jsonable(obj: Any) -> Any:
    """A query result with bytes as hex strings (for the admin socket's JSON)."""
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def access_log(state: StateReader, subject: str) -> list[dict[str, Any]]:
    """Who accessed which of a subject's records, when and why, oldest first."""
    return values(state, k_access_log(subject))
