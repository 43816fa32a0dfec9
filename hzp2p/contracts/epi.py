"""Epidemic data contracts: `epi.report` (aggregate counts) and `data.publish` (data sets).

`data.publish` has two forms: the clear one below (metadata, hash, access label: rules
`data` v1 and later) and the encrypted one with content (rules `data` v2:
hzp2p.contracts.datasets, which owns the data-set keys and the requests).

State layout:
  epi/r/<report_id>            an accepted report (each report_id is accepted once, ever)
  data/d/<dataset_id>          the latest version of a published data set
  data/v/<dataset_id>/<v:06>   every published version, in order

Reports carry aggregates only (region, metric, period, integer value); payloads
with any other field are refused so personal data cannot ride along.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hzp2p.contracts import datasets
from hzp2p.contracts.api import ROLES, TxContext, decode_value, encode_value
from hzp2p.contracts.domain_queries import fail
from hzp2p.contracts.registry import contract, payload_generator
from hzp2p.contracts.schema import (
    Choice,
    FreeMap,
    Int,
    Key32,
    ListOf,
    Match,
    Problem,
    Schema,
    key32,
)
from hzp2p.contracts.state import Readable

# Matched with re.fullmatch: a `$` anchor would let "r1\n" pass as an id other than "r1".
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_REPORT_ID = re.compile(r"[A-Za-z0-9._:/\-]{1,128}")
_LABEL = re.compile(r"[A-Za-z0-9._:\- ]{1,64}")
SCOPES = ("public", "members", "authorities")
MAX_VALUE = 2**53
MAX_METADATA_BYTES = 8192
REPORT_SCHEMA = Schema(
    {
        "report_id": Match(_REPORT_ID),
        "region": Match(_LABEL),
        "metric": Match(_LABEL),
        "value": Int(0, MAX_VALUE),
        "period": Match(_LABEL),
    }
)
_SCOPE = Choice(*SCOPES)
_ROLE_LIST = ListOf(Choice(*sorted(ROLES)), 1, len(ROLES), distinct=True)


def _access_check(v: Any, path: str) -> list[Problem]:
    bad = _ROLE_LIST(v, path) if type(v) is list else _SCOPE(v, path)
    if bad:
        return [Problem(path, f"must be one of {', '.join(SCOPES)} or a list of distinct roles")]
    return []


PUBLISH_SCHEMA = Schema(
    {
        "dataset_id": Match(_ID),
        # Metadata of a data set is published in the clear (title, format, rows, ...):
        # an authority's public description, bounded in size and flat.
        "metadata": FreeMap(MAX_METADATA_BYTES),
        "content_hash": Key32(),
        "access": _access_check,
    }
)


def _publish_check(payload: Any, signer: bytes) -> list[Problem]:
    """The clear form names `access`; the encrypted form (rules data v2) does not."""
    if isinstance(payload, Mapping) and "access" in payload:
        return PUBLISH_SCHEMA.problems(payload, signer)
    return datasets.PUBLISH_V2_SCHEMA.problems(payload, signer)


def k_report(report_id: str) -> bytes:
    return b"epi/r/" + report_id.encode()


k_dataset = datasets.k_dataset
k_dataset_version = datasets.k_dataset_version


@contract("epi.report", schema=REPORT_SCHEMA)
def report(ctx: TxContext) -> None:
    me = ctx.require_member()
    payload = ctx.payload
    rid = payload["report_id"]
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
                "metric": payload["metric"],
                "period": payload["period"],
                "region": payload["region"],
                "report_id": rid,
                "reporter": me.inst_id,
                "timestamp_ms": ctx.timestamp_ms,
                "tx_hash": ctx.tx_hash,
                "value": payload["value"],
            }
        ),
    )


@contract("data.publish", schema=_publish_check)
def publish(ctx: TxContext) -> None:
    if "access" not in ctx.payload:
        datasets.publish_v2(ctx)
        return
    me = ctx.require_member("authority")
    did = ctx.payload["dataset_id"]
    meta = dict(ctx.payload["metadata"])
    chash = key32(ctx.payload["content_hash"])
    a = ctx.payload["access"]
    access: str | list[str] = sorted(a) if type(a) is list else a
    key = k_dataset(did)
    old = ctx.state.get(key)
    version = 1
    if old is not None:
        prev = decode_value(old)
        if prev.get("encrypted"):
            fail(ctx, f"{did!r} is encrypted: publish its next version in the encrypted form")
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
