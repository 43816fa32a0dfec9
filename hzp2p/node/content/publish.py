"""A data set from the owner's and a key holder's side: scopes, the publication payload, the
key hand-over on approval, and opening fetched content.

Pure functions of committed state, the content store and this institution's keys; the
admin handlers (hzp2p.node.content.handlers) call them and submit what they build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hzp2p.client import Client, recipient_key
from hzp2p.contracts import datasets as ds
from hzp2p.contracts import members
from hzp2p.contracts.api import ROLES
from hzp2p.contracts.domain_queries import StateReader
from hzp2p.crypto.datasets import (
    ContentError,
    new_dataset_key,
    open_blob,
    open_metadata,
    seal_file,
    seal_metadata,
)
from hzp2p.crypto.records import (
    RecordCryptoError,
    institution_holder,
    key_commitment,
    open_sealed_key,
    seal_key_to,
)
from hzp2p.node.content.store import ContentStore

SCOPE_RE = re.compile(r"public|members|roles:[a-z_]+(,[a-z_]+)*|institutions:[0-9]+(,[0-9]+)*")
SCOPE_SHOWN = "public | members | roles:R1,R2 | institutions:ID1,ID2"


class DatasetError(Exception):
    """An operation on a data set cannot be done (unknown, no key, bad scope, ...)."""


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str  # public | members | roles | institutions
    items: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Scope:
        if not SCOPE_RE.fullmatch(text):
            raise DatasetError(f"scope must be {SCOPE_SHOWN}")
        kind, _, rest = text.partition(":")
        return cls(kind, tuple(rest.split(",")) if rest else ())

    def __str__(self) -> str:
        return self.kind + (":" + ",".join(self.items) if self.items else "")


def scope_members(state: StateReader, scope: Scope, owner: int) -> list[int]:
    """The institutions a scope names now (active members), always with the owner."""
    active = [i for i in members.institutions(state) if i.active]
    if scope.kind == "members":
        chosen = {i.inst_id for i in active}
    elif scope.kind == "roles":
        unknown = sorted(set(scope.items) - ROLES)
        if unknown:
            raise DatasetError(f"unknown role(s): {', '.join(unknown)}")
        chosen = {i.inst_id for i in active if set(scope.items) & i.roles}
    elif scope.kind == "institutions":
        chosen = {int(x) for x in scope.items}
        missing = sorted(chosen - {i.inst_id for i in active})
        if missing:
            raise DatasetError(f"not active members: {', '.join(map(str, missing))}")
    else:
        raise DatasetError(f"scope {scope} names no institutions")
    return sorted(chosen | {owner})


@dataclass(frozen=True, slots=True)
class Prepared:
    payload: dict[str, Any]
    content_hash: bytes
    version: int
    holders: list[int]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a publication needs from state: its version and the holders' public keys."""

    dataset_id: str
    version: int
    supersedes: int | None
    scope: Scope
    keys: dict[int, bytes]


def plan_publish(state: StateReader, client: Client, dataset_id: str, scope: Scope) -> Plan:
    assert client.inst_id is not None
    prev = ds.dataset(state, dataset_id)
    if prev is not None and prev.get("owner", prev.get("publisher")) != client.inst_id:
        raise DatasetError(f"{dataset_id!r} belongs to institution "
                           f"{prev.get('owner', prev.get('publisher'))}")
    holders = [] if scope.kind == "public" else scope_members(state, scope, client.inst_id)
    return Plan(dataset_id, 1 if prev is None else int(prev["version"]) + 1,
                None if prev is None else int(prev["version"]), scope,
                {i: recipient_key(state, i) for i in holders})


def seal_publication(plan: Plan, store: ContentStore, src: Path, metadata: dict[str, Any],
                     work_dir: Path) -> Prepared:
    """Encrypt `src` (unless public) into the content store and build data.publish
    (blocking: file work, run it in a thread)."""
    public = plan.scope.kind == "public"
    key = None if public else new_dataset_key()
    did, version = plan.dataset_id, plan.version
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / f"publish-{did}-{version}.blob"
    try:
        manifest, plain = seal_file(src, tmp, key)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"cannot read {src}: {exc.strerror or exc}") from None
    h = store.add_blob(tmp, manifest)
    payload: dict[str, Any] = {"dataset_id": did, "content_hash": h, "size": plain,
                               "public": public}
    meta = {**metadata, "scope": str(plan.scope)}
    if public:
        payload["metadata"] = meta
    else:
        assert key is not None
        payload["sealed_metadata"] = seal_metadata(key, did, version, meta)
        payload["key_commitment"] = key_commitment(key)
        payload["sealed_keys"] = {institution_holder(i): seal_key_to(key, pk)
                                  for i, pk in sorted(plan.keys.items())}
    if plan.supersedes is not None:
        payload["supersedes"] = plan.supersedes
    return Prepared(payload, h, version, sorted(plan.keys))


def prepare_publish(
    state: StateReader, store: ContentStore, client: Client, src: Path, dataset_id: str,
    metadata: dict[str, Any], scope: Scope, work_dir: Path,
) -> Prepared:
    """plan_publish then seal_publication, in one go (tests, tools)."""
    return seal_publication(plan_publish(state, client, dataset_id, scope), store, src,
                            metadata, work_dir)


def my_key(state: StateReader, client: Client, dataset_id: str, version: int,
           now_ms: int | None = None) -> bytes:
    """This institution's copy of a version's data-set key (checked against its commitment);
    with `now_ms`, only if its hold is still current (not expired, not revoked)."""
    assert client.inst_id is not None
    rec = ds.dataset(state, dataset_id, version)
    if rec is None:
        raise DatasetError(f"unknown data set {dataset_id!r} version {version}")
    if now_ms is None:
        h = next((x for x in ds.holders(state, dataset_id, version)
                  if x["inst"] == client.inst_id and x["sealed_key"] is not None), None)
    else:
        h = ds.live_holder(state, dataset_id, version, client.inst_id, now_ms)
    if h is None:
        raise DatasetError(
            f"institution {client.inst_id} holds no current key of {dataset_id!r} version "
            f"{version}: it is outside the data set's scope (ask its owner, institution "
            f"{rec['owner']}, with `hzp2p admin dataset request`)")
    for kid in sorted(client.enc_keys):
        try:
            return open_sealed_key(h["sealed_key"], client.enc_keys[kid], rec["key_commitment"])
        except RecordCryptoError:
            continue
    raise DatasetError(f"no encryption key of this institution opens {dataset_id!r} v{version}")


def approval_payload(state: StateReader, client: Client, request_id: str) -> dict[str, Any]:
    """data.approve for an open request: the latest version's key sealed to the requester."""
    req = next((r for r in ds.requests(state) if r["request_id"] == request_id), None)
    if req is None:
        raise DatasetError(f"unknown request {request_id!r}")
    latest = ds.dataset(state, req["dataset_id"])
    assert latest is not None
    key = my_key(state, client, req["dataset_id"], int(latest["version"]))
    return {"request_id": request_id,
            "sealed_key": seal_key_to(key, recipient_key(state, int(req["requester"])))}


def describe(state: StateReader, client: Client | None, rec: dict[str, Any]) -> dict[str, Any]:
    """A version's record as shown: the clear fields, and its metadata when public or when
    `client` holds its key (else `metadata: null`, `readable: false`)."""
    out = {k: rec.get(k) for k in ("dataset_id", "version", "owner", "size", "content_hash",
                                   "access", "supersedes", "height", "timestamp_ms")}
    out["content_hash"] = bytes(rec["content_hash"]).hex()
    meta = rec.get("metadata")
    readable = not rec.get("encrypted")
    if rec.get("encrypted") and client is not None:
        try:
            key = my_key(state, client, rec["dataset_id"], int(rec["version"]))
            meta = open_metadata(key, rec["sealed_metadata"], rec["dataset_id"], int(rec["version"]))
            readable = True
        except (DatasetError, ContentError):
            meta = None
    out["metadata"] = meta
    out["readable"] = readable
    return out


@dataclass(frozen=True, slots=True)
class Opening:
    """What opening a version needs from state: its content hash and this key (or None)."""

    content_hash: bytes
    key: bytes | None


def plan_open(state: StateReader, client: Client | None, dataset_id: str, version: int,
              now_ms: int) -> Opening:
    """Refuses unless the data set is public or this institution holds a current key."""
    rec = ds.dataset(state, dataset_id, version)
    if rec is None:
        raise DatasetError(f"unknown data set {dataset_id!r} version {version}")
    key = None
    if rec.get("encrypted"):
        if client is None:
            raise DatasetError(f"{dataset_id!r} is restricted")
        key = my_key(state, client, dataset_id, version, now_ms)
    return Opening(bytes(rec["content_hash"]), key)


def open_held(store: ContentStore, opening: Opening, out: Path) -> int:
    """Decrypt a held blob to `out`; returns the plaintext size (blocking: run in a thread)."""
    h = opening.content_hash
    m = store.manifest(h)
    if m is None or not store.has(h):
        raise DatasetError("the content is not on this node")
    tmp = out.with_name(out.name + ".part")
    try:
        n = open_blob(store.blob_path(h), tmp, opening.key, m)
    except ContentError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(str(exc)) from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"cannot write {out}: {exc.strerror or exc}") from None
    tmp.replace(out)
    return n


def open_content(state: StateReader, store: ContentStore, client: Client | None, dataset_id: str,
                 version: int, out: Path, now_ms: int) -> int:
    """plan_open then open_held (tests, tools)."""
    return open_held(store, plan_open(state, client, dataset_id, version, now_ms), out)
