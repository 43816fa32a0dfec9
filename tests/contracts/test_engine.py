"""The contract engine: envelope checks, replay protection, rejected txs change nothing, header checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import nacl.signing
import pytest

from hzp2p.contracts.api import TxContext, TxRejected
from hzp2p.contracts.engine import (
    BlockRejected,
    execute_block,
    precheck_tx,
    read_head,
    recompute_digest,
    state_digest,
    tx_record,
)
from hzp2p.contracts.registry import HANDLERS, contract
from hzp2p.ledger.block import Block
from hzp2p.ledger.tx import Transaction, TxError
from hzp2p.tools.testkit import LocalChain

CITIZEN = nacl.signing.SigningKey(b"\x42" * 32)

def _any_payload(payload: Any, signer: bytes) -> list[Any]:
    """Test contracts accept any payload shape (their handlers decide)."""
    return []


if "test.write_then_fail" not in HANDLERS:

    @contract("test.write_then_fail", schema=_any_payload)
    def _write_then_fail(ctx: TxContext) -> None:
        ctx.state.put(b"test/x", b"1")
        raise TxRejected("test: refused after writing")

    @contract("test.crash", schema=_any_payload)
    def _crash(ctx: TxContext) -> None:
        ctx.state.put(b"test/y", b"1")
        raise KeyError("bug")

    @contract("test.citizen", schema=_any_payload, citizen=True)
    def _citizen(ctx: TxContext) -> None:
        assert ctx.sender is None
        ctx.state.put(b"test/c/" + ctx.signer, b"1")

    @contract("test.reserved", schema=_any_payload)
    def _reserved(ctx: TxContext) -> None:
        ctx.state.put(b"\x00digest", b"")


def report(i: int) -> dict[str, Any]:
    return {"report_id": f"r{i}", "region": "north", "metric": "cases", "value": i, "period": "w1"}


def only_bookkeeping(writes: dict[bytes, bytes | None]) -> bool:
    return all(k in (b"x/head", b"\x00digest") for k in writes)


def test_apply_and_record() -> None:
    c = LocalChain(seed=1)
    tx = c.tx(3, "epi.report", report(1))
    res = c.run([tx])
    assert res.verdicts[0].applied and res.verdicts[0].status == "applied"
    assert tx_record(c.state, tx.hash) == {"height": 1, "index": 0, "applied": True, "reason": ""}
    assert res.state_digest_after == state_digest(c.state) == recompute_digest(c.state)


def test_never_applied_twice() -> None:
    c = LocalChain(seed=1)
    tx = c.tx(3, "epi.report", report(1))
    res = c.run([tx, tx])
    assert [v.applied for v in res.verdicts] == [True, False]
    assert "already earlier in this block" in res.verdicts[1].reason
    res = c.run([tx])
    assert not res.verdicts[0].applied and "duplicate: included at height 1" in res.verdicts[0].reason
    assert only_bookkeeping(res.writes)
    with pytest.raises(TxRejected, match="duplicate"):
        precheck_tx(c.state, tx, c.genesis.chain_id, c.now_ms)


def test_rejected_tx_changes_nothing_but_its_verdict() -> None:
    c = LocalChain(seed=1)
    for typ, reason in [("test.write_then_fail", "refused after writing"), ("test.crash", "contract error: KeyError")]:
        tx = c.tx(3, typ, {})
        res = c.run([tx])
        v = res.verdicts[0]
        assert not v.applied and reason in v.reason
        assert set(res.writes) == {b"x/head", b"\x00digest", b"x/tx/" + tx.hash}
        assert c.state.get(b"test/x") is None and c.state.get(b"test/y") is None


def test_reserved_keys_refused() -> None:
    c = LocalChain(seed=1)
    assert c.run_one(3, "test.reserved", {}) == (False, "state key in the engine's reserved range")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c: c.tx(3, "no.such", {}), "unknown transaction type"),
        (lambda c: c.tx(3, "epi.report", report(1), chain_id="elsewhere"), "chain_id"),
        (lambda c: c.tx(3, "epi.report", report(1), valid_from_ms=0, valid_until_ms=10), "expired"),
        (lambda c: c.tx(3, "epi.report", report(1), valid_from_ms=10**12), "not yet valid"),
        (lambda c: c.tx(CITIZEN, "epi.report", report(1)), "signer is not a member"),
        (
            lambda c: Transaction(*_fields(c.tx(3, "epi.report", report(1))), signature=bytes(64)),
            "signature",
        ),
    ],
)
def test_envelope_rejections(make: Any, reason: str) -> None:
    c = LocalChain(seed=1)
    tx = make(c)
    v = c.run([tx]).verdicts[0]
    assert not v.applied and reason in v.reason
    with pytest.raises((TxError, TxRejected)):
        precheck_tx(c.state, tx, c.genesis.chain_id, c.now_ms)


def _fields(tx: Transaction) -> tuple[str, str, bytes, int, int, int, Mapping[str, Any]]:
    return (tx.chain_id, tx.tx_type, tx.signer, tx.nonce, tx.valid_from_ms, tx.valid_until_ms, tx.payload)


def test_bad_signature_does_not_block_the_real_tx() -> None:
    c = LocalChain(seed=1)
    real = c.tx(3, "epi.report", report(1))
    fake = Transaction(*_fields(real), signature=bytes(64))
    res = c.run([fake, real])
    assert [v.applied for v in res.verdicts] == [False, True]


def test_citizen_signed_type_needs_no_membership() -> None:
    c = LocalChain(seed=1)
    assert c.run_one(CITIZEN, "test.citizen", {}) == (True, "")


def test_precheck_accepts_valid() -> None:
    c = LocalChain(seed=1)
    precheck_tx(c.state, c.tx(3, "epi.report", report(1)), c.genesis.chain_id, c.now_ms)


def test_removed_member_cannot_write() -> None:
    c = LocalChain(seed=1)
    p = c.run([c.tx(1, "member.propose", {"action": "remove", "inst_id": 3})])
    assert p.verdicts[0].applied
    c.run([c.tx(2, "member.vote", {"proposal_id": 1, "approve": True})])
    v = c.run([c.tx(3, "epi.report", report(1))]).verdicts[0]
    assert not v.applied and "no longer active" in v.reason


def _reblock(c: LocalChain, **kw: Any) -> Block:
    head = read_head(c.state)
    args: dict[str, Any] = {
        "height": head.height + 1,
        "prev_hash": head.hash,
        "state_digest": state_digest(c.state),
        "proposer": 1,
        "timestamp_ms": c.now_ms,
        "txs": [],
    }
    key = kw.pop("key", c.secrets[1].node_key())
    args.update(kw)
    return Block.create(key, **args)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"height": 3}, "does not follow"),
        ({"prev_hash": bytes(32)}, "prev_hash"),
        ({"timestamp_ms": 0}, "timestamp earlier"),
        ({"state_digest": bytes(32)}, "state_digest"),
        ({"proposer": 77}, "not an active member"),
        ({"key": nacl.signing.SigningKey(b"\x09" * 32)}, "signature"),
    ],
)
def test_header_checks(kw: dict[str, Any], reason: str) -> None:
    c = LocalChain(seed=1)
    c.run([c.tx(3, "epi.report", report(1))], timestamp_ms=5000)
    with pytest.raises(BlockRejected, match=reason):
        execute_block(c.state, _reblock(c, **kw), c.genesis)


def test_same_timestamp_as_parent_is_fine() -> None:
    c = LocalChain(seed=1)
    c.run([], timestamp_ms=5000)
    c.run([], timestamp_ms=5000)
    assert read_head(c.state).height == 2


def test_admit_tx_and_speculative_execution() -> None:
    from hzp2p.contracts.engine import admit_tx, speculative_state

    c = LocalChain(seed=2)
    tx = admit_tx(c.state, c.tx(3, "epi.report", report(1)).encode(), c.genesis.chain_id, c.now_ms)
    with pytest.raises(TxError):
        admit_tx(c.state, b"\x00junk", c.genesis.chain_id, c.now_ms)
    b1 = c.make_block([tx])
    r1 = execute_block(c.state, b1, c.genesis)  # executed, not yet committed
    spec = speculative_state(c.state, r1)
    assert state_digest(spec) == r1.state_digest_after
    b2 = Block.create(
        c.secrets[1].node_key(), height=2, prev_hash=b1.hash, state_digest=r1.state_digest_after,
        proposer=1, timestamp_ms=c.now_ms, txs=[c.tx(4, "epi.report", report(2))],
    )
    r2 = execute_block(spec, b2, c.genesis)
    c.apply(b1)
    assert execute_block(c.state, b2, c.genesis).state_digest_after == r2.state_digest_after


def test_block_summary_and_tx_status() -> None:
    from hzp2p.contracts import queries

    c = LocalChain(seed=2)
    good, dup = c.tx(3, "epi.report", report(1)), c.tx(4, "epi.report", report(1))
    res = c.run([good, dup])
    s = queries.block_summary(c.blocks[0], [(v.status, v.reason) for v in res.verdicts])
    assert s["height"] == 1 and s["proposer"] == 1 and len(s["txs"]) == 2
    assert s["txs"][1]["status"] == "rejected" and "already accepted" in s["txs"][1]["reason"]
    st = queries.tx_status(c.state, dup.hash)
    assert st is not None and st["status"] == "rejected" and st["index"] == 1
    assert queries.tx_status(c.state, bytes(32)) is None


def test_a_build_missing_a_contract_or_a_rule_version_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hzp2p.contracts import engine
    from hzp2p.ledger.genesis import make_local_genesis

    genesis, _ = make_local_genesis(3, seed=1)
    assert engine.load_contracts(genesis)  # this build implements what new genesis files name
    newer = dataclasses.replace(genesis, rules={**genesis.rules, "coldchain": 99})
    with pytest.raises(engine.ContractsMissing, match="rule 'coldchain' version 99"):
        engine.load_contracts(newer)
    unknown = dataclasses.replace(genesis, rules={**genesis.rules, "teleport": 1})
    with pytest.raises(engine.ContractsMissing, match="rule 'teleport'"):
        engine.load_contracts(unknown)
    monkeypatch.setattr(engine, "CONTRACT_MODULES", (*engine.CONTRACT_MODULES, "hzp2p.contracts.gone"))
    with pytest.raises(engine.ContractsMissing, match=r"hzp2p\.contracts\.gone is missing"):
        engine.load_contracts()
    # (the old behaviour skipped a missing module silently: nodes then disagreed on validity)
