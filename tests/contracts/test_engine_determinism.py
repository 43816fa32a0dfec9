"""Determinism: generated block sequences give the same digests on fresh states and after a snapshot."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.contracts.api import TxContext, TxRejected
from hzp2p.contracts.engine import (
    execute_block,
    genesis_state_writes,
    recompute_digest,
    state_digest,
    tx_record,
)
from hzp2p.contracts.members import institutions
from hzp2p.contracts.registry import HANDLERS, contract
from hzp2p.contracts.state import DictState
from hzp2p.ledger.block import decode_block
from hzp2p.tools.testkit import LocalChain

op = st.one_of(
    st.tuples(st.just("epi"), st.integers(1, 9), st.integers(0, 6), st.integers(-1, 3)),
    st.tuples(st.just("publish"), st.integers(1, 4), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("roles"), st.integers(1, 3), st.integers(3, 9), st.sampled_from(["lab", "authority"])),
    st.tuples(st.just("remove"), st.integers(1, 3), st.integers(1, 9), st.just(0)),
    st.tuples(st.just("vote"), st.integers(1, 3), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("replay"), st.integers(0, 50), st.just(0), st.just(0)),
    st.tuples(st.just("expired"), st.integers(3, 9), st.integers(0, 6), st.just(0)),
)


def build(blocks: list[list[tuple[Any, ...]]]) -> LocalChain:
    c = LocalChain(n_voters=3, n_learners=6, seed=21)
    sent: list[Any] = []
    for ops in blocks:
        txs = []
        for kind, a, b, x in ops:
            if kind == "epi":
                p = {"report_id": f"r{b}", "region": "n", "metric": "m", "value": x, "period": "p"}
                tx = c.tx(a, "epi.report", p)
            elif kind == "publish":
                p = {"dataset_id": f"d{b}", "metadata": {}, "content_hash": bytes([x]) * 32, "access": "public"}
                tx = c.tx(a, "data.publish", p)
            elif kind == "roles":
                tx = c.tx(a, "member.propose", {"action": "set_roles", "inst_id": b, "roles": [x]})
            elif kind == "remove":
                tx = c.tx(a, "member.propose", {"action": "remove", "inst_id": b})
            elif kind == "vote":
                tx = c.tx(a, "member.vote", {"proposal_id": b, "approve": x})
            elif kind == "replay":
                if not sent:
                    continue
                tx = sent[a % len(sent)]
            else:
                p = {"report_id": f"r{b}", "region": "n", "metric": "m", "value": 1, "period": "p"}
                tx = c.tx(a, "epi.report", p, valid_from_ms=0, valid_until_ms=1)
            txs.append(tx)
            sent.append(tx)
        # the ops may have removed institution 1: propose as an institution still active
        proposer = next(i.inst_id for i in institutions(c.state) if i.active)
        c.run(txs, proposer=proposer)
    return c


@settings(max_examples=40)
@given(st.lists(st.lists(op, max_size=8), min_size=1, max_size=6))
def test_same_blocks_same_digests(blocks: list[list[tuple[Any, ...]]]) -> None:
    c = build(blocks)
    assert state_digest(c.state) == recompute_digest(c.state)
    # replayed transactions (same block or later ones) are applied at most once
    applied = [v.tx_hash for r in c.results for v in r.verdicts if v.applied]
    assert len(applied) == len(set(applied))
    a = DictState(genesis_state_writes(c.genesis))
    b = DictState(genesis_state_writes(c.genesis))
    mid = len(c.blocks) // 2
    snapshot: DictState | None = None
    for h, raw in enumerate(c.blocks, start=1):
        ra = execute_block(a, decode_block(raw), c.genesis)
        rb = execute_block(b, decode_block(raw), c.genesis)
        assert ra.state_digest_after == rb.state_digest_after == c.results[h - 1].state_digest_after
        assert ra.verdicts == rb.verdicts == c.results[h - 1].verdicts
        a.apply(ra.writes)
        b.apply(rb.writes)
        assert recompute_digest(a) == state_digest(a)
        if h == mid:
            snapshot = DictState(dict(a.data))  # a node restarting from a snapshot here
    assert a.data == b.data == c.state.data
    if snapshot is not None:
        for raw in c.blocks[mid:]:
            r = execute_block(snapshot, decode_block(raw), c.genesis)
            snapshot.apply(r.writes)
        assert snapshot.data == a.data and state_digest(snapshot) == state_digest(a)


def _any_payload(payload: Any, signer: bytes) -> list[Any]:
    """Test contracts accept any payload shape (their handlers decide)."""
    return []


if "test.ops" not in HANDLERS:

    @contract("test.ops", schema=_any_payload)
    def _ops(ctx: TxContext) -> None:
        """Writes/deletes payload["ops"] in order, then refuses if payload["fail"]."""
        for name, v in ctx.payload["ops"]:
            if v is None:
                ctx.state.delete(b"test/o/" + name.encode())
            else:
                ctx.state.put(b"test/o/" + name.encode(), v)
        if ctx.payload["fail"]:
            raise TxRejected("test: refused after writing")


tx_ops = st.fixed_dictionaries(
    {
        "ops": st.lists(
            st.tuples(st.sampled_from("abcd"), st.none() | st.sampled_from([b"", b"1", b"2"])),
            max_size=6,
        ),
        "fail": st.booleans(),
    }
)


@settings(max_examples=150)
@given(st.lists(st.lists(tx_ops, max_size=5), min_size=1, max_size=5))
def test_incremental_digest_with_overwrites_deletes_and_rejections(
    blocks: list[list[dict[str, Any]]],
) -> None:
    """Puts, overwrites and deletes of the same keys within a tx, across the txs of a block
    and across blocks; rejected txs' writes are dropped but their verdicts recorded; the
    incremental digest always equals a full recomputation."""
    c = LocalChain(seed=22)
    model: dict[bytes, bytes] = {}
    for payloads in blocks:
        txs = [c.tx(3, "test.ops", p) for p in payloads]
        res = c.run(txs)
        for tx, p, v in zip(txs, payloads, res.verdicts, strict=True):
            assert v.applied == (not p["fail"]), v.reason
            assert tx_record(c.state, tx.hash) == {
                "height": res.height, "index": txs.index(tx), "applied": v.applied,
                "reason": v.reason,
            }
            if not p["fail"]:
                for name, val in p["ops"]:
                    k = b"test/o/" + name.encode()
                    if val is None:
                        model.pop(k, None)
                    else:
                        model[k] = val
        assert dict(c.state.scan(b"test/o/")) == model
        assert res.state_digest_after == state_digest(c.state) == recompute_digest(c.state)
        assert all(v is not None or k not in c.state.data for k, v in res.writes.items())
