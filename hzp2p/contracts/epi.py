"""Epidemic data contracts: `epi.report` (aggregate counts) and `data.publish` (data sets).

State layout:
  epi/r/<report_id>            an accepted report (each report_id is accepted once, ever)
  data/d/<dataset_id>          the latest version of a published data set
  data/v/<dataset_id>/<v:06>   every published version, in order

Reports carry aggregates only (region, metric, period, integer value); payloads
with any other field are refused so personal data cannot ride along.
"""

from __future__ import annotations

import re
from typing import Any

from hzp2p.contracts.api import ROLES, TxContext, decode_value, encode_value
from hzp2p.contracts.domain_queries import (
    fail,
    p_bytes32,
    p_fields,
    p_int,
    p_map,
    p_match,
)
from hzp2p.contracts.registry import contract, payload_generator
from hzp2p.contracts.state import Readable

# Matched with re.fullmatch: a `$` anchor would let "r1\n" pass as an id other than "r1".
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_REPORT_ID = re.compile(r"[A-Za-z0-9._:/\-]{1,128}")
_LABEL = re.compile(r"[A-Za-z0-9._:\- ]{1,64}")
SCOPES = ("public", "members", "authorities")
MAX_VALUE = 2**53
REPORT_FIELDS = frozenset({"report_id", "region", "metric", "value", "period"})
_REPORT_TEXT = (("report_id", _REPORT_ID), ("region", _LABEL), ("metric", _LABEL), ("period", _LABEL))
PUBLISH_FIELDS = frozenset({"dataset_id", "metadata", "content_hash", "access"})


def k_report(report_id: str) -> bytes:
    return b"epi/r/" + report_id.encode()


def k_dataset(dataset_id: str) -> bytes:
    return b"data/d/" + dataset_id.encode()


def k_dataset_version(dataset_id: str, version: int) -> bytes:
    return b"data/v/" + dataset_id.encode() + b"/%06d" % version


@contract("epi.report")
def report(ctx: TxContext) -> None:
    me = ctx.require_member()
    p_fields(ctx, REPORT_FIELDS)
    payload = ctx.payload
    for name, pattern in _REPORT_TEXT:  # p_match for each, inline (the hot contract)
        v = payload.get(name)
        if type(v) is not str or not pattern.fullmatch(v):
            fail(ctx, f"{name} must match {pattern.pattern}")
    rid, region, metric, period = (
        payload["report_id"],
        payload["region"],
        payload["metric"],
        payload["period"],
    )
    value = p_int(ctx, "value", 0, MAX_VALUE)
    key = k_report(rid)
    old = ctx.state.get(key)
    if old is not None:
        h = decode_value(old)["height"]
        fail(ctx, f"report_id {rid!r} already accepted at height {h}")
    ctx.state.put(
        key,
        encode_value(
            {
                "height": ctx.height,
                "metric": metric,
                "period": period,
                "region": region,
                "report_id": rid,
                "reporter": me.inst_id,
                "timestamp_ms": ctx.timestamp_ms,
                "tx_hash": ctx.tx_hash,
                "value": value,
            }
        ),
    )


def _access(ctx: TxContext) -> str | list[str]:
    a = ctx.payload["access"]
    if type(a) is str and a in SCOPES:
        return a
    if (
        type(a) is list
        and a
        and all(type(r) is str and r in ROLES for r in a)
        and len(set(a)) == len(a)
    ):
        return sorted(a)
    fail(ctx, f"access must be one of {', '.join(SCOPES)} or a list of roles")


@contract("data.publish")
def publish(ctx: TxContext) -> None:
    me = ctx.require_member("authority")
    p_fields(ctx, PUBLISH_FIELDS)
    did = p_match(ctx, "dataset_id", _ID)
    meta = p_map(ctx, "metadata")
    chash = p_bytes32(ctx, "content_hash")
    access = _access(ctx)
    key = k_dataset(did)
    old = ctx.state.get(key)
    version = 1
    if old is not None:
        prev = decode_value(old)
        if prev["content_hash"] == chash and prev["access"] == access and prev["metadata"] == meta:
            fail(ctx, f"{did!r} version {prev['version']} is identical")
        version = prev["version"] + 1
    rec = encode_value(
        {
            "access": access,
            "content_hash": chash,
            "dataset_id": did,
            "height": ctx.height,
            "metadata": meta,
            "publisher": me.inst_id,
            "timestamp_ms": ctx.timestamp_ms,
            "tx_hash": ctx.tx_hash,
            "version": version,
        }
    )
    ctx.state.put(key, rec)
    ctx.state.put(k_dataset_version(did, version), rec)


def get_report(state: Readable, report_id: str) -> dict[str, Any] | None:
    raw = state.get(k_report(report_id))
    return None if raw is None else dict(decode_value(raw))


def get_dataset(state: Readable, dataset_id: str, version: int | None = None) -> dict[str, Any] | None:
    key = k_dataset(dataset_id) if version is None else k_dataset_version(dataset_id, version)
    raw = state.get(key)
    return None if raw is None else dict(decode_value(raw))


@payload_generator("epi.report")
def _gen_report(i: int) -> dict[str, Any]:
    return {
        "metric": "confirmed_cases",
        "period": f"2026-W{i % 52 + 1:02d}",
        "region": f"district-{i % 16}",
        "report_id": f"bench-{i}",
        "value": i % 1000,
    }


@payload_generator("data.publish", "authority")
def _gen_publish(i: int) -> dict[str, Any]:
    return {
        "access": "members",
        "content_hash": i.to_bytes(32, "big"),
        "dataset_id": f"bench-ds-{i}",
        "metadata": {"format": "csv", "rows": i},
    }
