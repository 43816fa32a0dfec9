"""Data sets under contract (rules data v2): encrypted publication sealed to a scope, requests
approved / denied / expired / revoked, fetch authorisations and the access log."""

from __future__ import annotations

from pathlib import Path

import pytest

from hzp2p.client import Client
from hzp2p.contracts import datasets as ds
from hzp2p.crypto.datasets import open_metadata
from hzp2p.node.content.publish import (
    DatasetError,
    Scope,
    approval_payload,
    describe,
    my_key,
    open_content,
    prepare_publish,
)
from hzp2p.node.content.store import ContentStore
from tests.contracts.domain_helpers import DAY, ROOT_ID, World

MARKER = "SECRET-DATASET-MARKER-42"


@pytest.fixture
def world() -> tuple[World, dict[str, Client]]:
    w = World(rules={"healthcode": 1, "privacy": 1, "data": 2})
    who = {
        "cdc": w.member("cdc", 1, "authority"),
        "obs": w.member("obs", 2, "observer"),
        "lab": w.member("lab", 3, "lab"),
        "maker": w.member("maker", 4, "manufacturer"),
    }
    return w, who


def _publish(w: World, owner: Client, tmp: Path, did: str = "cases", scope: str = "roles:authority,observer",
             content: bytes = b"district,cases\nnorth," + MARKER.encode() + b"\n") -> tuple[ContentStore, int]:
    tmp.mkdir(parents=True, exist_ok=True)
    store = ContentStore(tmp / "content")
    src = tmp / "src.csv"
    src.write_bytes(content)
    prep = prepare_publish(w.state, store, owner, src, did, {"title": f"{MARKER} weekly"},
                           Scope.parse(scope), tmp / "work")
    w.apply(owner.tx("data.publish", prep.payload, w.now))
    return store, prep.version


def test_restricted_publication_is_sealed_to_its_scope_only(world: tuple[World, dict[str, Client]], tmp_path: Path) -> None:
    w, who = world
    store, v = _publish(w, who["cdc"], tmp_path)
    rec = ds.dataset(w.state, "cases")
    assert rec is not None and rec["encrypted"] and rec["metadata"] is None and rec["owner"] == 1
    assert sorted(h["inst"] for h in ds.holders(w.state, "cases", v)) == [1, 2, ROOT_ID]  # and World's founding authority
    # the manufacturer's node holds every state byte, and no plaintext
    blob = b"".join(k + v2 for k, v2 in w.state.data.items())
    assert MARKER.encode() not in blob
    assert MARKER.encode() not in store.blob_path(rec["content_hash"]).read_bytes()
    with pytest.raises(DatasetError, match="holds no current key"):
        my_key(w.state, who["maker"], "cases", v)
    assert describe(w.state, who["maker"], rec)["metadata"] is None
    # the observer in scope reads metadata and content
    key = my_key(w.state, who["obs"], "cases", v)
    assert MARKER in open_metadata(key, rec["sealed_metadata"], "cases", v)["title"]
    out = tmp_path / "out.csv"
    open_content(w.state, store, who["obs"], "cases", v, out, w.now)
    assert MARKER in out.read_text()
    with pytest.raises(DatasetError, match="holds no current key"):
        open_content(w.state, store, who["maker"], "cases", v, tmp_path / "x", w.now)


def test_versions_chain_with_supersedes(world: tuple[World, dict[str, Client]], tmp_path: Path) -> None:
    w, who = world
    _publish(w, who["cdc"], tmp_path)
    _, v2 = _publish(w, who["cdc"], tmp_path / "2", content=b"other")
    assert v2 == 2 and ds.dataset(w.state, "cases")["supersedes"] == 1  # type: ignore[index]
    store = ContentStore(tmp_path / "3")
    src = tmp_path / "src3"
    src.write_bytes(b"third")
    prep = prepare_publish(w.state, store, who["cdc"], src, "cases", {}, Scope.parse("members"),
                           tmp_path / "w3")
    w.refused(who["cdc"].tx("data.publish", {**prep.payload, "supersedes": 1}, w.now),
              "must name supersedes = 2")
    w.refused(who["obs"].tx("data.publish", prep.payload, w.now), "lacks role authority")


def test_request_approve_fetch_expire(world: tuple[World, dict[str, Client]], tmp_path: Path) -> None:
    w, who = world
    store, v = _publish(w, who["cdc"], tmp_path)
    lab, cdc = who["lab"], who["cdc"]
    w.refused(lab.tx("data.fetch", {"dataset_id": "cases", "version": v}, w.now), "holds no current key")
    assert ds.may_serve(w.state, "cases", v, 3, w.now) is not None
    w.apply(lab.tx("data.request", {"request_id": "rq1", "dataset_id": "cases",
                                    "purpose": "vaccine effectiveness study", "days": 30}, w.now))
    w.refused(lab.tx("data.approve", approval_payload(w.state, cdc, "rq1"), w.now),
              "only the data set's owner")
    w.apply(cdc.tx("data.approve", approval_payload(w.state, cdc, "rq1"), w.now))
    w.refused(cdc.tx("data.approve", approval_payload(w.state, cdc, "rq1"), w.now), "is approved")
    key = my_key(w.state, lab, "cases", v, w.now)
    assert key == my_key(w.state, cdc, "cases", v)
    assert ds.may_serve(w.state, "cases", v, 3, w.now) is not None  # no data.fetch yet
    w.apply(lab.tx("data.fetch", {"dataset_id": "cases", "version": v}, w.now))
    assert ds.may_serve(w.state, "cases", v, 3, w.now) is None
    assert ds.may_serve(w.state, "cases", v, 3, w.now + 2 * 3_600_000) is not None  # ticket over
    out = tmp_path / "lab.csv"
    open_content(w.state, store, lab, "cases", v, out, w.now)
    assert MARKER in out.read_text()
    # 30 days on: expired, for the contract and for honest nodes
    w.now += 31 * DAY
    w.refused(lab.tx("data.fetch", {"dataset_id": "cases", "version": v}, w.now), "holds no current key")
    assert ds.may_serve(w.state, "cases", v, 3, w.now) is not None
    with pytest.raises(DatasetError):
        open_content(w.state, store, lab, "cases", v, out, w.now)
    kinds = [(e["kind"], e["who"], e["purpose"]) for e in ds.access_log(w.state, "cases")]
    assert kinds == [("publish", 1, None),
                     ("request", 3, "vaccine effectiveness study"),
                     ("grant", 3, "vaccine effectiveness study"),
                     ("fetch", 3, "vaccine effectiveness study")]


def test_deny_and_revoke(world: tuple[World, dict[str, Client]], tmp_path: Path) -> None:
    w, who = world
    _, v = _publish(w, who["cdc"], tmp_path)
    lab, maker, cdc = who["lab"], who["maker"], who["cdc"]
    w.apply(maker.tx("data.request", {"request_id": "m1", "dataset_id": "cases",
                                      "purpose": "marketing", "days": 365}, w.now))
    w.apply(cdc.tx("data.deny", {"request_id": "m1", "reason": "not a public-health purpose"}, w.now))
    w.refused(cdc.tx("data.approve", {"request_id": "m1", "sealed_key": bytes(80)}, w.now), "is denied")
    assert ds.live_holder(w.state, "cases", v, 4, w.now) is None
    w.apply(lab.tx("data.request", {"request_id": "l1", "dataset_id": "cases",
                                    "purpose": "study", "days": 30}, w.now))
    w.refused(lab.tx("data.request", {"request_id": "l1", "dataset_id": "cases",
                                      "purpose": "study", "days": 30}, w.now), "is taken")
    w.apply(cdc.tx("data.approve", approval_payload(w.state, cdc, "l1"), w.now))
    w.refused(lab.tx("data.request", {"request_id": "l2", "dataset_id": "cases",
                                      "purpose": "study", "days": 30}, w.now), "already holds")
    w.apply(lab.tx("data.fetch", {"dataset_id": "cases", "version": v}, w.now))
    w.apply(cdc.tx("data.revoke", {"request_id": "l1", "reason": "study ended early"}, w.now))
    assert ds.may_serve(w.state, "cases", v, 3, w.now) is not None
    w.refused(lab.tx("data.fetch", {"dataset_id": "cases", "version": v}, w.now), "holds no current key")
    with pytest.raises(DatasetError):
        my_key(w.state, lab, "cases", v)  # the sealed key left state
    assert [e["kind"] for e in ds.access_log(w.state, "cases")] == [
        "publish", "request", "deny", "request", "grant", "fetch", "revoke"]


def test_public_data_sets_and_rules_v1(tmp_path: Path) -> None:
    w = World(rules={"healthcode": 1, "privacy": 1, "data": 2})
    cdc = w.member("cdc", 1, "authority")
    store, v = _publish(w, cdc, tmp_path, did="open", scope="public")
    rec = ds.dataset(w.state, "open")
    assert rec is not None and not rec["encrypted"] and MARKER in rec["metadata"]["title"]
    assert ds.may_serve(w.state, "open", v, 99, w.now) is None  # anyone
    out = tmp_path / "o"
    open_content(w.state, store, None, "open", v, out, w.now)
    assert MARKER in out.read_text()
    old = World(rules={"healthcode": 1, "privacy": 1})  # a chain whose genesis names data v1
    cdc1 = old.member("cdc", 1, "authority")
    src = tmp_path / "s"
    src.write_bytes(b"x")
    prep = prepare_publish(old.state, ContentStore(tmp_path / "c1"), cdc1, src, "d", {},
                           Scope.parse("members"), tmp_path / "w1")
    old.refused(cdc1.tx("data.publish", prep.payload, old.now), "rules \\(v1\\)")
