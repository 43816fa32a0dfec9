"""Chain verification: a good chain passes; any flipped byte names the block it is in."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.contracts.engine import state_digest
from hzp2p.contracts.verify import verify_chain
from hzp2p.ledger.block import Block
from hzp2p.ledger.tx import Transaction
from hzp2p.tools.testkit import LocalChain


def report(i: int) -> dict[str, Any]:
    return {"report_id": f"r{i}", "region": "north", "metric": "cases", "value": i, "period": "w1"}


def build_chain() -> LocalChain:
    c = LocalChain(seed=11)
    n = 0
    for b in range(4):
        txs = []
        for s in (3, 4, 5)[: b + 1]:
            txs.append(c.tx(s, "epi.report", report(n)))
            n += 1
        txs.append(c.tx(3, "epi.report", report(0)))  # a rejected duplicate report id
        c.run(txs, proposer=1 + b % 2)
    return c


CHAIN = build_chain()


def test_good_chain_verifies() -> None:
    r = verify_chain(CHAIN.genesis, CHAIN.blocks, expected_final_digest=state_digest(CHAIN.state))
    assert r.ok and r.blocks_checked == 4 and r.bad_height is None
    stored = {res.height: list(res.verdicts) for res in CHAIN.results}
    assert verify_chain(CHAIN.genesis, CHAIN.blocks, stored_verdicts=stored.get).ok


@settings(max_examples=300)
@given(st.data())
def test_any_flipped_byte_names_its_block(data: st.DataObject) -> None:
    blocks = list(CHAIN.blocks)
    i = data.draw(st.integers(0, len(blocks) - 1), label="block")
    pos = data.draw(st.integers(0, len(blocks[i]) - 1), label="byte")
    bit = data.draw(st.integers(1, 255), label="xor")
    raw = bytearray(blocks[i])
    raw[pos] ^= bit
    blocks[i] = bytes(raw)
    r = verify_chain(CHAIN.genesis, blocks)
    assert not r.ok and r.bad_height == i + 1, (r.reason, pos)
    assert r.blocks_checked == i


def test_reordered_missing_and_resigned_blocks() -> None:
    b = CHAIN.blocks
    r = verify_chain(CHAIN.genesis, [b[0], b[2], b[1], b[3]])
    assert r.bad_height == 2
    r = verify_chain(CHAIN.genesis, [b[1]])
    assert r.bad_height == 1 and "height" in r.reason


def test_wrong_state_digest_is_named() -> None:
    c = LocalChain(seed=12)
    c.run([c.tx(3, "epi.report", report(1))])
    good = c.make_block([c.tx(4, "epi.report", report(2))])
    h = good.header
    forged = Block.create(
        c.secrets[1].node_key(),
        height=h.height,
        prev_hash=h.prev_hash,
        state_digest=bytes(32),
        proposer=1,
        timestamp_ms=h.timestamp_ms,
        txs=list(good.txs),
    )
    r = verify_chain(c.genesis, [*c.blocks, forged.encode()])
    assert r.bad_height == 2 and "state_digest" in r.reason


def test_stored_verdicts_and_final_digest_mismatch() -> None:
    r = verify_chain(CHAIN.genesis, CHAIN.blocks, stored_verdicts=lambda h: [] if h == 3 else None)
    assert r.bad_height == 3 and "verdicts" in r.reason
    r = verify_chain(CHAIN.genesis, CHAIN.blocks, expected_final_digest=bytes(32))
    assert not r.ok and r.bad_height == 4


def test_earlier_timestamp_is_named() -> None:
    c = LocalChain(seed=13)
    c.run([c.tx(3, "epi.report", report(1))], timestamp_ms=10_000)
    late = c.make_block([c.tx(3, "epi.report", report(2))], timestamp_ms=9_999)
    r = verify_chain(c.genesis, [*c.blocks, late.encode()])
    assert r.bad_height == 2 and "timestamp" in r.reason


@pytest.mark.parametrize("proposer", [7, 99])
def test_unknown_or_wrongly_keyed_proposer(proposer: int) -> None:
    c = LocalChain(seed=14)
    blk = c.make_block([c.tx(3, "epi.report", report(1))], proposer=7)
    if proposer == 99:
        h = blk.header
        blk = Block.create(
            c.secrets[7].node_key(), height=1, prev_hash=h.prev_hash, state_digest=h.state_digest,
            proposer=99, timestamp_ms=h.timestamp_ms, txs=list(blk.txs),
        )
        assert not verify_chain(c.genesis, [blk.encode()]).ok
    else:
        # node 7 is a member (a learner) but signs with its node key: accepted
        assert verify_chain(c.genesis, [blk.encode()]).ok


def test_block_with_a_forged_copy_of_a_tx_verifies_like_every_node_applied_it() -> None:
    """A forged signature is a verdict (rejected), not a bad block: every node applied the
    block, so the verifier must accept it too, whichever order the copies come in."""
    c = LocalChain(seed=15)
    real = c.tx(3, "epi.report", report(1))
    forged = Transaction(
        real.chain_id, real.tx_type, real.signer, real.nonce, real.valid_from_ms,
        real.valid_until_ms, real.payload, bytes(64),
    )
    assert forged.hash == real.hash
    r1 = c.run([forged, real, forged])
    assert [v.applied for v in r1.verdicts] == [False, True, False]
    assert "signature" in r1.verdicts[0].reason and "earlier in this block" in r1.verdicts[2].reason
    r2 = c.run([forged])
    assert not r2.verdicts[0].applied and "duplicate" in r2.verdicts[0].reason
    stored = {res.height: list(res.verdicts) for res in c.results}
    r = verify_chain(
        c.genesis, c.blocks, stored_verdicts=stored.get, expected_final_digest=state_digest(c.state)
    )
    assert r.ok and r.blocks_checked == 2, r.reason


def test_every_byte_of_every_stored_block_and_tx_is_covered() -> None:
    """Exhaustively: flipping any single byte of any stored block (header, signature or any
    transaction's body or signature) makes the verifier name exactly that block."""
    blocks = list(CHAIN.blocks)
    for i, raw in enumerate(blocks):
        for pos in range(len(raw)):
            bad = bytearray(raw)
            bad[pos] ^= 0xFF
            r = verify_chain(CHAIN.genesis, [*blocks[:i], bytes(bad)])
            assert not r.ok and r.bad_height == i + 1 and r.blocks_checked == i, (i, pos, r.reason)


def test_every_field_of_every_stored_verdict_is_covered() -> None:
    """The verdicts stored with each block are checked too: change any field of any
    verdict (or drop, add or swap one) and that block is named."""
    good = {res.height: list(res.verdicts) for res in CHAIN.results}
    edits: list[Any] = [
        lambda v: dataclasses.replace(v, applied=not v.applied),
        lambda v: dataclasses.replace(v, reason=v.reason + "x"),
        lambda v: dataclasses.replace(v, tx_type="data.publish"),
        lambda v: dataclasses.replace(v, tx_hash=bytes(32)),
    ]
    for h, verdicts in good.items():
        variants = [verdicts[:-1], [*verdicts, verdicts[0]], verdicts[::-1]]
        for j in range(len(verdicts)):
            variants += [[*verdicts[:j], e(verdicts[j]), *verdicts[j + 1 :]] for e in edits]
        for variant in variants:
            stored = {**good, h: variant}
            r = verify_chain(CHAIN.genesis, CHAIN.blocks, stored_verdicts=stored.get)
            assert not r.ok and r.bad_height == h and "verdicts" in r.reason, (h, variant)
