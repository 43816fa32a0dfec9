"""Data sets under contract: encrypted publication (data.publish, rules `data` v2), data-use
requests (data.request / data.approve / data.deny / data.revoke), fetch authorisations
(data.fetch) and each data set's access log.

The content itself is off chain (hzp2p.node.content); the chain carries what lets any
node decide whether to hand it over: the content hash, and who holds the data-set key.

State layout (besides data/d/<id> and data/v/<id>/<v:06>, the versions, as before):
  data/h/<id>/<v:06>/<inst:010d>  a holder of that version's key: sealed key, via
                                  (publish | request:<rid>), purpose, expiry_ms, revoked
  data/r/<request_id>             a data-use request and its status
                                  (open | approved | denied | revoked)
  data/t/<inst:010d>/<id>/<v:06>  a fetch authorisation: until when honest nodes serve
                                  that version's content to that institution
  data/l/<id>/<seq>               the access log: kind (publish | grant | deny | revoke |
                                  fetch), who, by, purpose, version, height, time, tx

Rules `data`: v1 is the clear data.publish only (metadata, hash, access label, no
content); v2 adds the encrypted form and the request/fetch contracts. A restricted
data set's record keeps only id, owner, version, size and content hash in the clear
(plus who holds a key, which the sealed-key map cannot hide); its metadata is a
ciphertext under the data-set key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hzp2p.contracts.api import TxContext, decode_value
from hzp2p.contracts.domain_queries import (
    StateReader,
    append_event,
    fail,
    load,
    rule_version,
    store,
    values,
)
from hzp2p.contracts.registry import contract, rules
from hzp2p.contracts.schema import (
    Bool,
    Bytes,
    FreeMap,
    Id,
    Int,
    Key32,
    MapOf,
    Match,
    Problem,
    Schema,
    Text,
    key32,
)
from hzp2p.crypto.records import MAX_CIPHERTEXT_BYTES, SEALED_KEY_BYTES

DAY_MS = 86_400_000
DATA_RULES: dict[int, dict[str, int]] = {
    1: {},
    2: {"max_request_days": 3650, "fetch_ticket_ms": 3_600_000},
}
rules("data", DATA_RULES)
MAX_HOLDERS = 256
MAX_METADATA_BYTES = 8192
MAX_SIZE = 1 << 40
_ID = Match(r"[A-Za-z0-9._:\-]{1,128}", "[A-Za-z0-9._:-]{1,128}")
_HOLDER = Match(r"inst:[0-9]{1,19}", "'inst:<id>'")


def k_dataset(dataset_id: str) -> bytes:
    return b"data/d/" + dataset_id.encode()


def k_dataset_version(dataset_id: str, version: int) -> bytes:
    return b"data/v/" + dataset_id.encode() + b"/%06d" % version


def k_holder(dataset_id: str, version: int, inst_id: int = -1) -> bytes:
    base = b"data/h/" + dataset_id.encode() + b"/%06d/" % version
    return base if inst_id < 0 else base + b"%010d" % inst_id


def k_request(request_id: str) -> bytes:
    return b"data/r/" + request_id.encode()


def k_ticket(inst_id: int, dataset_id: str, version: int) -> bytes:
    return b"data/t/%010d/" % inst_id + dataset_id.encode() + b"/%06d" % version


def k_log(dataset_id: str) -> bytes:
    return b"data/l/" + dataset_id.encode() + b"/"


def _publish_rules(payload: Any, signer: bytes) -> list[Problem]:
    if payload["public"]:
        stray = sorted(k for k in ("sealed_metadata", "sealed_keys", "key_commitment")
                       if k in payload)
        out = [Problem(k, "not used by a public data set") for k in stray]
        if "metadata" not in payload:
            out.append(Problem("metadata", "a public data set's metadata is required"))
        return out
    out = [Problem("metadata", "a restricted data set's metadata goes in sealed_metadata")
           ] if "metadata" in payload else []
    missing = sorted(k for k in ("sealed_metadata", "sealed_keys", "key_commitment")
                     if k not in payload)
    out += [Problem(k, "required for a restricted data set") for k in missing]
    if not missing and not payload["sealed_keys"]:
        out.append(Problem("sealed_keys", "must seal the key to at least its owner"))
    return out


PUBLISH_V2_SCHEMA = Schema(
    {
        "dataset_id": _ID,
        "content_hash": Key32(),
        "size": Int(0, MAX_SIZE),
        "public": Bool(),
    },
    {
        "metadata": FreeMap(MAX_METADATA_BYTES),  # public data sets only: clear by choice
        "sealed_metadata": Bytes(41, MAX_CIPHERTEXT_BYTES),
        "sealed_keys": MapOf(_HOLDER, Bytes(SEALED_KEY_BYTES), MAX_HOLDERS),
        "key_commitment": Key32(),
        "supersedes": Int(1, 2**31),
    },
    rules=(_publish_rules,),
)
REQUEST_SCHEMA = Schema(
    {"request_id": Id(), "dataset_id": _ID, "purpose": Text(128), "days": Int(1, 36500)}
)
APPROVE_SCHEMA = Schema({"request_id": Id(), "sealed_key": Bytes(SEALED_KEY_BYTES)})
DENY_SCHEMA = Schema({"request_id": Id(), "reason": Text(256)})
REVOKE_SCHEMA = Schema({"request_id": Id(), "reason": Text(256)})
FETCH_SCHEMA = Schema({"dataset_id": _ID, "version": Int(1, 2**31)})


def _v2(ctx: TxContext) -> dict[str, int]:
    version, params = rule_version(ctx, "data", DATA_RULES)
    if version < 2:
        fail(ctx, "these data rules (v1) carry no encrypted data sets or requests")
    return dict(params)


def _inst_of(holder: str) -> int:
    return int(holder[5:])


def _log(ctx: TxContext, dataset_id: str, event: Mapping[str, Any]) -> None:
    append_event(ctx, k_log(dataset_id), event)


def publish_v2(ctx: TxContext) -> None:
    """data.publish in the v2 form (called by hzp2p.contracts.epi.publish)."""
    _v2(ctx)
    me = ctx.require_member("authority")
    p = ctx.payload
    did = p["dataset_id"]
    old = load(ctx.state, k_dataset(did))
    version = 1
    if old is not None:
        if old.get("owner", old.get("publisher")) != me.inst_id:
            fail(ctx, f"{did!r} belongs to institution {old.get('owner', old.get('publisher'))}")
        version = old["version"] + 1
        if p.get("supersedes") != old["version"]:
            fail(ctx, f"a new version of {did!r} must name supersedes = {old['version']}")
        if old["content_hash"] == key32(p["content_hash"]):
            fail(ctx, f"{did!r} version {old['version']} has the same content")
    elif "supersedes" in p:
        fail(ctx, f"{did!r} has no version to supersede")
    rec: dict[str, Any] = {
        "access": "public" if p["public"] else "restricted",
        "content_hash": key32(p["content_hash"]),
        "dataset_id": did,
        "encrypted": not p["public"],
        "height": ctx.height,
        "owner": me.inst_id,
        "publisher": me.inst_id,
        "size": p["size"],
        "supersedes": p.get("supersedes"),
        "timestamp_ms": ctx.timestamp_ms,
        "tx_hash": ctx.tx_hash,
        "version": version,
    }
    if p["public"]:
        rec["metadata"] = dict(p["metadata"])
    else:
        holders = sorted(p["sealed_keys"])
        if f"inst:{me.inst_id}" not in holders:
            fail(ctx, "sealed_keys must include the owner")
        for h in holders:
            inst = _institution(ctx.state, _inst_of(h))
            if inst is None or not inst.active:
                fail(ctx, f"holder {h} is not an active member")
        rec["metadata"] = None
        rec["sealed_metadata"] = p["sealed_metadata"]
        rec["key_commitment"] = key32(p["key_commitment"])
        for h in holders:
            store(ctx.state, k_holder(did, version, _inst_of(h)), {
                "inst": _inst_of(h), "sealed_key": p["sealed_keys"][h], "via": "publish",
                "purpose": None, "expiry_ms": None, "revoked": False, "height": ctx.height})
    store(ctx.state, k_dataset(did), rec)
    store(ctx.state, k_dataset_version(did, version), rec)
    _log(ctx, did, {"kind": "publish", "who": me.inst_id, "by": me.inst_id, "version": version,
                    "purpose": None})


def _institution(state: StateReader, inst_id: int) -> Any:
    from hzp2p.contracts.members import get_institution

    return get_institution(state, inst_id)


def _request(ctx: TxContext) -> dict[str, Any]:
    req: dict[str, Any] | None = load(ctx.state, k_request(ctx.payload["request_id"]))
    if req is None:
        fail(ctx, f"unknown request {ctx.payload['request_id']!r}")
    return req


@contract("data.request", schema=REQUEST_SCHEMA)
def data_request(ctx: TxContext) -> None:
    """Any member asks a restricted data set's owner for its key: purpose, days."""
    params = _v2(ctx)
    me = ctx.require_member()
    p = ctx.payload
    ds = load(ctx.state, k_dataset(p["dataset_id"]))
    if ds is None:
        fail(ctx, f"unknown data set {p['dataset_id']!r}")
    if not ds.get("encrypted"):
        fail(ctx, f"{p['dataset_id']!r} is not a restricted data set: nothing to request")
    if ds["owner"] == me.inst_id:
        fail(ctx, "the owner holds its own data set")
    if live_holder(ctx.state, p["dataset_id"], ds["version"], me.inst_id, ctx.timestamp_ms):
        fail(ctx, f"institution {me.inst_id} already holds a current key of {p['dataset_id']!r}")
    if p["days"] > params["max_request_days"]:
        fail(ctx, f"days must be at most {params['max_request_days']}")
    if load(ctx.state, k_request(p["request_id"])) is not None:
        fail(ctx, f"request id {p['request_id']!r} is taken")
    store(ctx.state, k_request(p["request_id"]), {
        "request_id": p["request_id"], "dataset_id": p["dataset_id"], "requester": me.inst_id,
        "owner": ds["owner"], "purpose": p["purpose"], "days": p["days"], "status": "open",
        "version": None, "expiry_ms": None, "reason": None, "height": ctx.height,
        "timestamp_ms": ctx.timestamp_ms, "tx_hash": ctx.tx_hash})
    _log(ctx, p["dataset_id"], {"kind": "request", "who": me.inst_id, "by": me.inst_id,
                                "version": None, "purpose": p["purpose"],
                                "request_id": p["request_id"]})


def _owner_decides(ctx: TxContext) -> tuple[dict[str, Any], dict[str, Any]]:
    me = ctx.require_member()
    req = _request(ctx)
    if req["owner"] != me.inst_id:
        fail(ctx, "only the data set's owner decides its requests")
    ds = load(ctx.state, k_dataset(req["dataset_id"]))
    assert ds is not None, "a request names a published data set"
    return req, ds


@contract("data.approve", schema=APPROVE_SCHEMA)
def data_approve(ctx: TxContext) -> None:
    """The owner hands the latest version's key to the requester, for its purpose and days."""
    _v2(ctx)
    req, ds = _owner_decides(ctx)
    if req["status"] != "open":
        fail(ctx, f"request {req['request_id']!r} is {req['status']}")
    requester = _institution(ctx.state, req["requester"])
    if requester is None or not requester.active:
        fail(ctx, "the requester is no longer an active member")
    version = ds["version"]
    expiry = ctx.timestamp_ms + req["days"] * DAY_MS
    store(ctx.state, k_holder(req["dataset_id"], version, req["requester"]), {
        "inst": req["requester"], "sealed_key": ctx.payload["sealed_key"],
        "via": f"request:{req['request_id']}", "purpose": req["purpose"], "expiry_ms": expiry,
        "revoked": False, "height": ctx.height})
    req.update(status="approved", version=version, expiry_ms=expiry)
    store(ctx.state, k_request(req["request_id"]), req)
    _log(ctx, req["dataset_id"], {"kind": "grant", "who": req["requester"], "by": req["owner"],
                                  "version": version, "purpose": req["purpose"],
                                  "request_id": req["request_id"], "expiry_ms": expiry})


@contract("data.deny", schema=DENY_SCHEMA)
def data_deny(ctx: TxContext) -> None:
    _v2(ctx)
    req, _ = _owner_decides(ctx)
    if req["status"] != "open":
        fail(ctx, f"request {req['request_id']!r} is {req['status']}")
    req.update(status="denied", reason=ctx.payload["reason"])
    store(ctx.state, k_request(req["request_id"]), req)
    _log(ctx, req["dataset_id"], {"kind": "deny", "who": req["requester"], "by": req["owner"],
                                  "version": None, "purpose": req["purpose"],
                                  "request_id": req["request_id"]})


@contract("data.revoke", schema=REVOKE_SCHEMA)
def data_revoke(ctx: TxContext) -> None:
    """The owner withdraws an approved request: its sealed key leaves state, and honest nodes
    serve the requester nothing more (fetch authorisations are checked against it)."""
    _v2(ctx)
    req, _ = _owner_decides(ctx)
    if req["status"] != "approved":
        fail(ctx, f"request {req['request_id']!r} is {req['status']}, not approved")
    hk = k_holder(req["dataset_id"], req["version"], req["requester"])
    h = load(ctx.state, hk)
    if h is not None:
        h.update(revoked=True, sealed_key=None)
        store(ctx.state, hk, h)
    req.update(status="revoked", reason=ctx.payload["reason"])
    store(ctx.state, k_request(req["request_id"]), req)
    _log(ctx, req["dataset_id"], {"kind": "revoke", "who": req["requester"], "by": req["owner"],
                                  "version": req["version"], "purpose": req["purpose"],
                                  "request_id": req["request_id"]})


@contract("data.fetch", schema=FETCH_SCHEMA)
def data_fetch(ctx: TxContext) -> None:
    """A key holder announces a fetch: logged, and honest nodes serve it for a while."""
    params = _v2(ctx)
    me = ctx.require_member()
    did, version = ctx.payload["dataset_id"], ctx.payload["version"]
    ds = load(ctx.state, k_dataset_version(did, version))
    if ds is None:
        fail(ctx, f"unknown data set {did!r} version {version}")
    purpose = None
    if ds.get("encrypted"):
        h = live_holder(ctx.state, did, version, me.inst_id, ctx.timestamp_ms)
        if h is None:
            fail(ctx, f"institution {me.inst_id} holds no current key of {did!r} v{version}")
        purpose = h["purpose"]
    until = ctx.timestamp_ms + params["fetch_ticket_ms"]
    store(ctx.state, k_ticket(me.inst_id, did, version), {"until_ms": until, "tx_hash": ctx.tx_hash})
    _log(ctx, did, {"kind": "fetch", "who": me.inst_id, "by": me.inst_id, "version": version,
                    "purpose": purpose})


# ---------------------------------------------------------------- queries


def dataset(state: StateReader, dataset_id: str, version: int | None = None) -> dict[str, Any] | None:
    key = k_dataset(dataset_id) if version is None else k_dataset_version(dataset_id, version)
    raw = state.get(key)
    return None if raw is None else dict(decode_value(raw))


def datasets(state: StateReader) -> list[dict[str, Any]]:
    return [dict(v) for v in values(state, b"data/d/")]


def versions(state: StateReader, dataset_id: str) -> list[dict[str, Any]]:
    return [dict(v) for v in values(state, b"data/v/" + dataset_id.encode() + b"/")]


def holders(state: StateReader, dataset_id: str, version: int) -> list[dict[str, Any]]:
    return [dict(v) for v in values(state, k_holder(dataset_id, version))]


def live_holder(state: StateReader, dataset_id: str, version: int, inst_id: int,
                now_ms: int) -> dict[str, Any] | None:
    """The holder entry of `inst_id` if it still holds a usable key at `now_ms`
    (not revoked, not expired, the institution still active)."""
    h: dict[str, Any] | None = load(state, k_holder(dataset_id, version, inst_id))
    if h is None or h["revoked"] or h["sealed_key"] is None:
        return None
    if h["expiry_ms"] is not None and now_ms >= h["expiry_ms"]:
        return None
    inst = _institution(state, inst_id)
    if inst is None or not inst.active:
        return None
    return h


def may_serve(state: StateReader, dataset_id: str, version: int, inst_id: int,
              now_ms: int) -> str | None:
    """Why an honest node must not hand this version's content to `inst_id` now (None: it
    may). Public content goes to anyone; restricted content only to a live holder with a
    current fetch authorisation."""
    ds = dataset(state, dataset_id, version)
    if ds is None:
        return f"unknown data set {dataset_id!r} version {version}"
    if not ds.get("encrypted"):
        return None
    if live_holder(state, dataset_id, version, inst_id, now_ms) is None:
        return f"institution {inst_id} holds no current key"
    t = load(state, k_ticket(inst_id, dataset_id, version))
    if t is None or now_ms >= t["until_ms"]:
        return f"institution {inst_id} has no current data.fetch for this version"
    return None


def requests(state: StateReader, dataset_id: str | None = None) -> list[dict[str, Any]]:
    rows = [dict(v) for v in values(state, b"data/r/")]
    return [r for r in rows if dataset_id is None or r["dataset_id"] == dataset_id]


def access_log(state: StateReader, dataset_id: str) -> list[dict[str, Any]]:
    return [dict(v) for v in values(state, k_log(dataset_id))]
