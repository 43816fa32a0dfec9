"""Cold chain: carriers' sensors and their signed temperature readings.

A carrier registers its sensors (`sensor.register`: id + Ed25519 verify key)
and may revoke them. `coldchain.readings` carries a batch of readings for one
lot from one sensor, with the sensor's signature over `readings_message`;
the sensor must be registered to the sending carrier, which must be or have
been a custodian of the lot. A batch is accepted once. Every reading is kept
(cc/r/<lot>/<t_ms>/<seq>); the first reading outside the lot's range (earliest
by time) quarantines the lot automatically, with that reading as evidence.
Out-of-range readings are not a rejection: the batch is applied so the
quarantine and the evidence are on chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import nacl.exceptions
import nacl.signing

from hzp2p.contracts.api import TxContext, decode_value, encode_value
from hzp2p.contracts.domain_queries import (
    fail,
    k_batch,
    k_reading,
    k_sensor,
    load,
    p_bytes,
    p_id,
    p_only,
    rule_version,
    store,
)
from hzp2p.contracts.registry import contract, payload_generator
from hzp2p.contracts.supply import TEMP_LIMIT_CENTI_C, get_lot, put_lot

# Versioned by ctx.rules["coldchain"] (version 1 if genesis names none).
COLDCHAIN_RULES: dict[int, dict[str, int]] = {1: {"max_readings": 1000}}
READING_FIELDS = frozenset({"sensor_id", "t_ms", "temp_centi_c"})
READINGS_DOMAIN = "hzp2p.coldchain.readings.v1"


def readings_message(lot_id: str, readings: Sequence[tuple[str, int, int]]) -> bytes:
    """The canonical bytes a sensor signs: (lot, [(sensor_id, t_ms, temp_centi_c), ...])."""
    return encode_value([READINGS_DOMAIN, lot_id, [list(r) for r in readings]])


@contract("sensor.register")
def sensor_register(ctx: TxContext) -> None:
    """Payload: sensor_id, verify_key (32-byte Ed25519)."""
    carrier = ctx.require_member("carrier")
    p_only(ctx, frozenset({"sensor_id", "verify_key"}))
    sensor_id = p_id(ctx, "sensor_id")
    vk = p_bytes(ctx, "verify_key", 32, 32)
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


@contract("sensor.revoke")
def sensor_revoke(ctx: TxContext) -> None:
    """Payload: sensor_id. The owning carrier retires a sensor (e.g. a lost key)."""
    carrier = ctx.require_member("carrier")
    p_only(ctx, frozenset({"sensor_id"}))
    sensor_id = p_id(ctx, "sensor_id")
    rec: dict[str, Any] | None = load(ctx.state, k_sensor(sensor_id))
    if rec is None or rec["carrier"] != carrier.inst_id:
        fail(ctx, f"sensor {sensor_id!r} is not registered to carrier {carrier.inst_id}")
    if not rec["active"]:
        fail(ctx, f"sensor {sensor_id!r} already revoked")
    rec["active"] = False
    rec["revoked_height"] = ctx.height
    store(ctx.state, k_sensor(sensor_id), rec)


def _readings(ctx: TxContext, sensor_id: str) -> list[tuple[str, int, int]]:
    _, rules = rule_version(ctx, "coldchain", COLDCHAIN_RULES)
    limit = rules["max_readings"]
    raw = ctx.payload.get("readings")
    if not isinstance(raw, list) or not 1 <= len(raw) <= limit:
        fail(ctx, f"readings must be a list of 1..{limit} readings")
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            fail(ctx, f"reading {i} must be a map")
        p_only(ctx, READING_FIELDS, r, f"reading {i}")
        t, temp = r.get("t_ms"), r.get("temp_centi_c")
        if r.get("sensor_id") != sensor_id:
            fail(ctx, f"reading {i} is not from sensor {sensor_id!r}")
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= ctx.timestamp_ms:
            fail(ctx, f"reading {i}: t_ms must be an integer time not after the block")
        if (
            not isinstance(temp, int)
            or isinstance(temp, bool)
            or not -TEMP_LIMIT_CENTI_C <= temp <= TEMP_LIMIT_CENTI_C
        ):
            fail(ctx, f"reading {i}: temp_centi_c must be an integer within ±{TEMP_LIMIT_CENTI_C}")
        out.append((sensor_id, t, temp))
    return out


@contract("coldchain.readings")
def coldchain_readings(ctx: TxContext) -> None:
    """Payload: lot_id, sensor_id, readings [{sensor_id, t_ms, temp_centi_c}], signature."""
    carrier = ctx.require_member("carrier")
    p_only(ctx, frozenset({"lot_id", "sensor_id", "readings", "signature"}))
    lot = get_lot(ctx, p_id(ctx, "lot_id"))
    sensor_id = p_id(ctx, "sensor_id")
    sig = p_bytes(ctx, "signature", 64, 64)
    readings = _readings(ctx, sensor_id)
    sensor: dict[str, Any] | None = load(ctx.state, k_sensor(sensor_id))
    if sensor is None:
        fail(ctx, f"unknown sensor {sensor_id!r}")
    if sensor["carrier"] != carrier.inst_id:
        fail(ctx, f"sensor {sensor_id!r} is not registered to carrier {carrier.inst_id}")
    if not sensor["active"]:
        fail(ctx, f"sensor {sensor_id!r} was revoked")
    if carrier.inst_id not in lot["custodians"]:
        fail(ctx, f"carrier {carrier.inst_id} never had custody of lot {lot['lot_id']!r}")
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


@payload_generator("sensor.register", "carrier")
def _gen_sensor(i: int) -> dict[str, Any]:
    return {
        "sensor_id": f"bench-{i}",
        "verify_key": hashlib.blake2b(b"%d" % i, digest_size=32).digest(),
    }
