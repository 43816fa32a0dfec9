"""Cold chain: carriers' sensors and their signed temperature readings.

A carrier (rules v2: any custodian — manufacturer, carrier, vaccination site,
hospital) registers its sensors (`sensor.register`: id + Ed25519 verify key) and
may revoke them. `coldchain.readings` carries a batch of readings for one
lot from one sensor, with the sensor's signature over `readings_message`;
the sensor must be registered to the sending carrier, which must be or have
been a custodian of the lot. A batch is accepted once.

Rules (ctx.rules["coldchain"]): version 1 accepts any reading dated no later
than the block. Version 2 (the default for new chains) accepts a reading only
if it is dated at or after the lot's registration, no later than the block
time plus `clock_tolerance_ms` (sensor clocks drift), and within a period in
which the uploading carrier held the lot (from the block time of the event
that gave it custody to that of the event that took it away): a carrier cannot
report, or quarantine a lot with, readings from before or after its custody. Every reading is kept
(cc/r/<lot>/<t_ms>/<seq>); the first reading outside the lot's range (earliest
by time) quarantines the lot automatically, with that reading as evidence.
Out-of-range readings are not a rejection: the batch is applied so the
quarantine and the evidence are on chain.

Version 3 (the default for new chains) adds reading intervals: the lot's current
custodian declares how often its readings must arrive (`lot.monitor`: lot_id,
interval_ms; 0 stops monitoring). A monitored lot whose last reading (or, before any,
the declaration) is older than its interval at a block time is "readings overdue":
judged on block time only (`readings_due`), shown by `admin lot` and as an `overdue`
event of `admin watch` (hzp2p.contracts.events). Under versions 1 and 2 `lot.monitor`
is refused, so a chain replays its history exactly as it was judged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import nacl.exceptions
import nacl.signing

from hzp2p.contracts.api import Institution, TxContext, decode_value, encode_value
from hzp2p.contracts.domain_queries import (
    StateReader,
    fail,
    k_batch,
    k_reading,
    k_sensor,
    load,
    lot_events,
    lot_status,
    rule_version,
    store,
    temperature_history,
)
from hzp2p.contracts.registry import contract, payload_generator, rules
from hzp2p.contracts.schema import Bytes, Id, Int, ListOf, Problem, Schema
from hzp2p.contracts.supply import CUSTODY_ROLES, TEMP_LIMIT_CENTI_C, get_lot, put_lot

# Versioned by ctx.rules["coldchain"] (version 1 if genesis names none).
COLDCHAIN_RULES: dict[int, dict[str, int]] = {
    1: {"max_readings": 1000, "custody_periods": 0},
    # v2: readings must fall in the uploader's custody, and any custodian (a clinic's or a
    # warehouse's fridge, not only a carrier's truck) may register sensors and upload.
    2: {"max_readings": 1000, "custody_periods": 1, "clock_tolerance_ms": 5 * 60_000},
    # v3: v2, and a lot's custodian declares its reading interval (lot.monitor)
    3: {"max_readings": 1000, "custody_periods": 1, "clock_tolerance_ms": 5 * 60_000,
        "reading_intervals": 1, "min_interval_ms": 1000, "max_interval_ms": 30 * 86_400_000},
}
rules("coldchain", COLDCHAIN_RULES)
MAX_READINGS = max(r["max_readings"] for r in COLDCHAIN_RULES.values())
READINGS_DOMAIN = "hzp2p.coldchain.readings.v1"
READING_SCHEMA = Schema(
    {
        "sensor_id": Id(),
        "t_ms": Int(0, 2**62),
        "temp_centi_c": Int(-TEMP_LIMIT_CENTI_C, TEMP_LIMIT_CENTI_C),
    }
)


def _one_sensor(payload: Any, signer: bytes) -> list[Problem]:
    sid = payload["sensor_id"]
    return [
        Problem(f"readings[{i}].sensor_id", "is not the batch's sensor_id")
        for i, r in enumerate(payload["readings"])
        if r["sensor_id"] != sid
    ][:8]


READINGS_SCHEMA = Schema(
    {
        "lot_id": Id(),
        "sensor_id": Id(),
        "readings": ListOf(READING_SCHEMA.nested(), 1, MAX_READINGS),
        "signature": Bytes(64),
    },
    rules=(_one_sensor,),
)
SENSOR_SCHEMA = Schema({"sensor_id": Id(), "verify_key": Bytes(32)})
REVOKE_SCHEMA = Schema({"sensor_id": Id()})
MONITOR_SCHEMA = Schema({"lot_id": Id(), "interval_ms": Int(0, 2**40)})
K_MONITOR = b"cc/mon/"


def k_monitor(lot_id: str) -> bytes:
    return K_MONITOR + lot_id.encode()


def readings_message(lot_id: str, readings: Sequence[tuple[str, int, int]]) -> bytes:
    """The canonical bytes a sensor signs: (lot, [(sensor_id, t_ms, temp_centi_c), ...])."""
    return encode_value([READINGS_DOMAIN, lot_id, [list(r) for r in readings]])


def _sensor_owner(ctx: TxContext) -> Institution:
    """Who may own sensors and upload readings: carriers (v1); any custodian role (v2)."""
    _, rules = rule_version(ctx, "coldchain", COLDCHAIN_RULES)
    return ctx.require_member(*(CUSTODY_ROLES if rules["custody_periods"] else ("carrier",)))


@contract("sensor.register", schema=SENSOR_SCHEMA)
def sensor_register(ctx: TxContext) -> None:
    """Payload: sensor_id, verify_key (32-byte Ed25519)."""
    carrier = _sensor_owner(ctx)
    sensor_id, vk = ctx.payload["sensor_id"], ctx.payload["verify_key"]
    if ctx.state.get(k_sensor(sensor_id)) is not None:
        fail(ctx, f"sensor {sensor_id!r} already registered")
    store(
        ctx.state,
        k_sensor(sensor_id),
        {
            "sensor_id": sensor_id,
            "carrier": carrier.inst_id,
            "verify_key": vk,
            "active": True,
            "height": ctx.height,
        },
    )


@contract("sensor.revoke", schema=REVOKE_SCHEMA)
def sensor_revoke(ctx: TxContext) -> None:
    """Payload: sensor_id. The owning member retires a sensor (e.g. a lost key)."""
    carrier = _sensor_owner(ctx)
    sensor_id = ctx.payload["sensor_id"]
    rec: dict[str, Any] | None = load(ctx.state, k_sensor(sensor_id))
    if rec is None or rec["carrier"] != carrier.inst_id:
        fail(ctx, f"sensor {sensor_id!r} is not registered to carrier {carrier.inst_id}")
    if not rec["active"]:
        fail(ctx, f"sensor {sensor_id!r} already revoked")
    rec["active"] = False
    rec["revoked_height"] = ctx.height
    store(ctx.state, k_sensor(sensor_id), rec)


def custody_periods(events: Sequence[dict[str, Any]], inst_id: int) -> list[tuple[int, int | None]]:
    """The [from_ms, until_ms] block-time periods in which `inst_id` held a lot, from the
    lot's register and transfer events in order (until None: it still holds it)."""
    out: list[tuple[int, int | None]] = []
    holder: int | None = None
    for e in events:
        if e["kind"] not in ("register", "transfer"):
            continue
        if holder == inst_id and e["to"] != inst_id:
            out[-1] = (out[-1][0], e["timestamp_ms"])
        if e["to"] == inst_id and holder != inst_id:
            out.append((e["timestamp_ms"], None))
        holder = e["to"]
    return out


def _readings(ctx: TxContext, lot: dict[str, Any], uploader: int) -> list[tuple[str, int, int]]:
    """The batch's readings as (sensor, t_ms, temp), after the rule version's time checks."""
    _, rules = rule_version(ctx, "coldchain", COLDCHAIN_RULES)
    raw = ctx.payload["readings"]
    if len(raw) > rules["max_readings"]:
        fail(ctx, f"readings must be a list of 1..{rules['max_readings']} readings")
    out = [(r["sensor_id"], r["t_ms"], r["temp_centi_c"]) for r in raw]
    if not rules["custody_periods"]:
        for i, (_, t, _) in enumerate(out):
            if t > ctx.timestamp_ms:
                fail(ctx, f"reading {i}: t_ms must be an integer time not after the block")
        return out
    latest = ctx.timestamp_ms + rules["clock_tolerance_ms"]
    periods = custody_periods(lot_events(ctx.state, lot["lot_id"]), uploader)
    bad: list[str] = []
    for i, (_, t, _) in enumerate(out):
        if t < lot["registered_ms"]:
            bad.append(f"reading {i}: dated before the lot was registered")
        elif t > latest:
            bad.append(f"reading {i}: dated in the future (beyond {rules['clock_tolerance_ms']} ms)")
        elif not any(a <= t and (b is None or t <= b) for a, b in periods):
            bad.append(f"reading {i}: dated outside member {uploader}'s custody of the lot")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        fail(ctx, "; ".join(bad[:5]) + more)
    return out


@contract("coldchain.readings", schema=READINGS_SCHEMA)
def coldchain_readings(ctx: TxContext) -> None:
    """Payload: lot_id, sensor_id, readings [{sensor_id, t_ms, temp_centi_c}], signature."""
    carrier = _sensor_owner(ctx)
    lot = get_lot(ctx, ctx.payload["lot_id"])
    sensor_id, sig = ctx.payload["sensor_id"], ctx.payload["signature"]
    sensor: dict[str, Any] | None = load(ctx.state, k_sensor(sensor_id))
    if sensor is None:
        fail(ctx, f"unknown sensor {sensor_id!r}")
    if sensor["carrier"] != carrier.inst_id:
        fail(ctx, f"sensor {sensor_id!r} is not registered to carrier {carrier.inst_id}")
    if not sensor["active"]:
        fail(ctx, f"sensor {sensor_id!r} was revoked")
    if carrier.inst_id not in lot["custodians"]:
        fail(ctx, f"carrier {carrier.inst_id} never had custody of lot {lot['lot_id']!r}")
    readings = _readings(ctx, lot, carrier.inst_id)
    msg = readings_message(lot["lot_id"], readings)
    try:
        nacl.signing.VerifyKey(sensor["verify_key"]).verify(msg, sig)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        fail(ctx, f"readings signature does not verify with sensor {sensor_id!r}'s key")
    bkey = k_batch(hashlib.blake2b(msg, digest_size=32).digest())
    if ctx.state.get(bkey) is not None:
        fail(ctx, "this readings batch was already recorded")
    store(ctx.state, bkey, ctx.height)

    lo, hi = lot["temp_min_centi_c"], lot["temp_max_centi_c"]
    ckey = b"seq/cc/r/" + lot["lot_id"].encode() + b"/"
    raw = ctx.state.get(ckey)
    seq = 0 if raw is None else int(decode_value(raw))
    breach: tuple[int, int, int] | None = None  # (t_ms, index, temp) of the earliest breach
    for i, (_, t, temp) in enumerate(readings):
        ok = lo <= temp <= hi
        store(
            ctx.state,
            k_reading(lot["lot_id"], t, seq + i),
            {
                "sensor_id": sensor_id,
                "t_ms": t,
                "temp_centi_c": temp,
                "in_range": ok,
                "carrier": carrier.inst_id,
                "height": ctx.height,
            },
        )
        if not ok and (breach is None or (t, i) < breach[:2]):
            breach = (t, i, temp)
    store(ctx.state, ckey, seq + len(readings))
    if breach is not None and lot["quarantine"] is None:
        t, _, temp = breach
        evidence = {
            "sensor_id": sensor_id,
            "t_ms": t,
            "temp_centi_c": temp,
            "allowed_centi_c": [lo, hi],
            "carrier": carrier.inst_id,
            "height": ctx.height,
            "tx_hash": ctx.tx_hash,
        }
        lot["quarantine"] = evidence
        put_lot(ctx, lot, {"kind": "quarantine", "evidence": evidence})


@contract("lot.monitor", schema=MONITOR_SCHEMA)
def lot_monitor(ctx: TxContext) -> None:
    """Payload: lot_id, interval_ms (0: stop). The lot's current custodian declares how often
    its readings must arrive (coldchain rules v3 and later)."""
    _, rules = rule_version(ctx, "coldchain", COLDCHAIN_RULES)
    if not rules.get("reading_intervals"):
        fail(ctx, "lot.monitor needs coldchain rules version 3 or later")
    member = ctx.require_member(*CUSTODY_ROLES)
    lot = get_lot(ctx, ctx.payload["lot_id"])
    if lot["custodian"] != member.inst_id:
        fail(ctx, f"member {member.inst_id} is not the custodian of lot {lot['lot_id']!r}")
    interval = ctx.payload["interval_ms"]
    key = k_monitor(lot["lot_id"])
    if interval == 0:
        if ctx.state.get(key) is None:
            fail(ctx, f"lot {lot['lot_id']!r} is not monitored")
        ctx.state.delete(key)
        return
    lo, hi = rules["min_interval_ms"], rules["max_interval_ms"]
    if not lo <= interval <= hi:
        fail(ctx, f"interval_ms must be 0 (stop) or in [{lo}, {hi}]")
    store(ctx.state, key, {"lot_id": lot["lot_id"], "interval_ms": interval,
                           "since_ms": ctx.timestamp_ms, "by": member.inst_id,
                           "height": ctx.height, "tx_hash": ctx.tx_hash})


def monitored_lots(state: StateReader) -> list[dict[str, Any]]:
    """Every lot with a declared reading interval, by lot id."""
    return [dict(decode_value(v)) for _, v in state.scan(K_MONITOR)]


def readings_due(
    state: StateReader, lot_id: str, at_height: int | None = None,
    readings: Sequence[tuple[int, int]] | None = None,
) -> dict[str, Any] | None:
    """A monitored lot's reading deadline: {interval_ms, since_ms, last_t_ms, due_ms} from the
    readings recorded up to `at_height` (default: all), or None if it is not monitored.
    `readings` ((height, t_ms) pairs) saves re-reading them when judging many heights."""
    mon: dict[str, Any] | None = load(state, k_monitor(lot_id))
    if mon is None:
        return None
    if readings is None:
        readings = [(r["height"], r["t_ms"]) for r in temperature_history(state, lot_id)]
    last = max((t for h, t in readings if at_height is None or h <= at_height), default=None)
    base = mon["since_ms"] if last is None else max(last, mon["since_ms"])
    return {"interval_ms": mon["interval_ms"], "since_ms": mon["since_ms"], "last_t_ms": last,
            "due_ms": base + mon["interval_ms"], "height": mon["height"]}


def overdue(
    state: StateReader, lot: dict[str, Any], now_ms: int,
    readings: Sequence[tuple[int, int]] | None = None, at_height: int | None = None,
) -> dict[str, Any] | None:
    """`readings_due` and whether the lot is overdue at block time `now_ms` (a recalled or
    expired lot needs no more readings); None if it is not monitored."""
    due = readings_due(state, lot["lot_id"], at_height, readings)
    if due is None:
        return None
    live = lot_status(lot, now_ms) in ("active", "quarantined")
    return {**due, "overdue": live and now_ms > due["due_ms"]}


@payload_generator("sensor.register", "carrier")
def _gen_sensor(i: int) -> dict[str, Any]:
    return {
        "sensor_id": f"bench-{i}",
        "verify_key": hashlib.blake2b(b"%d" % i, digest_size=32).digest(),
    }
