"""Verification from a trusted starting point (a snapshot's tip) instead of the genesis: a good
chain passes; a flipped byte in a later block names that block; a starting point that does
not match its state (digest, head, hash, timestamp) is caught before any block is checked."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hzp2p.contracts.digest import DIGEST_KEY
from hzp2p.contracts.engine import genesis_state_writes, state_digest
from hzp2p.contracts.state import DictState
from hzp2p.contracts.verify import TrustedStart, verify_chain_from
from hzp2p.ledger.block import decode_block
from hzp2p.tools.testkit import LocalChain


def report(i: int) -> dict[str, Any]:
    return {"report_id": f"f{i}", "region": "south", "metric": "cases", "value": i, "period": "w2"}


def build_chain() -> LocalChain:
    c = LocalChain(seed=31)
    n = 0
    for b in range(6):
        txs = [c.tx(s, "epi.report", report(n + s)) for s in (3, 4, 5)[: 1 + b % 3]]
        n += 10
        txs.append(c.tx(3, "epi.report", report(3)))  # a rejected duplicate report id
        c.run(txs, proposer=1 + b % 2)
    return c


CHAIN = build_chain()
START = 2  # verify blocks 3..6 from the tip at height 2


def start_at(height: int) -> TrustedStart:
    """The state after block `height`, as a snapshot of it would hold it."""
    state = DictState(genesis_state_writes(CHAIN.genesis))
    for res in CHAIN.results[:height]:
        state.apply(res.writes)
    tip = decode_block(CHAIN.blocks[height - 1])
    return TrustedStart(height, tip.hash, state_digest(state), tip.header.timestamp_ms,
                        dict(state.data))


def test_a_good_chain_verifies_from_a_starting_point() -> None:
    start = start_at(START)
    later = CHAIN.blocks[START:]
    stored = {res.height: list(res.verdicts) for res in CHAIN.results}
    r = verify_chain_from(CHAIN.genesis, start, later, stored_verdicts=stored.get,
                          expected_final_digest=state_digest(CHAIN.state))
    assert r.ok, r.reason
    assert r.blocks_checked == len(later) and r.bad_height is None
    assert r.start_height == START and r.final_digest == state_digest(CHAIN.state)
    # The start's state is copied, not modified.
    assert state_digest(DictState(dict(start.state))) == start.state_digest
    # Nothing after the start: ok, the start's digest is the final one.
    r = verify_chain_from(CHAIN.genesis, start, [], expected_final_digest=start.state_digest)
    assert r.ok and r.blocks_checked == 0


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_flipped_byte_in_a_later_block_names_that_block(data: st.DataObject) -> None:
    later = list(CHAIN.blocks[START:])
    i = data.draw(st.integers(0, len(later) - 1), label="block")
    pos = data.draw(st.integers(0, len(later[i]) - 1), label="byte")
    bit = data.draw(st.integers(1, 255), label="xor")
    raw = bytearray(later[i])
    raw[pos] ^= bit
    later[i] = bytes(raw)
    r = verify_chain_from(CHAIN.genesis, start_at(START), later)
    assert not r.ok and r.bad_height == START + 1 + i, (r.reason, pos)
    assert r.blocks_checked == i


def test_blocks_must_follow_the_start() -> None:
    b = CHAIN.blocks
    # The block at the start height itself, or one skipped: named by height.
    r = verify_chain_from(CHAIN.genesis, start_at(START), b[START - 1:])
    assert r.bad_height == START + 1 and "height" in r.reason
    r = verify_chain_from(CHAIN.genesis, start_at(START), b[START + 1:])
    assert r.bad_height == START + 1 and "height" in r.reason
    # A start whose hash is not the one the next block links to.
    start = dataclasses.replace(start_at(START), block_hash=bytes(32))
    r = verify_chain_from(CHAIN.genesis, start, b[START:])
    assert r.bad_height == START and "chain head" in r.reason


@pytest.mark.parametrize("what", ["digest", "pair", "vector", "timestamp", "height"])
def test_a_wrong_starting_point_is_caught(what: str) -> None:
    good = start_at(START)
    if what == "digest":  # the claimed starting digest is not the state's
        start = dataclasses.replace(good, state_digest=bytes(32))
    elif what == "pair":  # a state value changed (the digest vector left as it was)
        state = dict(good.state)
        key = next(k for k in sorted(state) if k != DIGEST_KEY and k.startswith(b"epi/"))
        state[key] = state[key] + b"x"
        start = dataclasses.replace(good, state=state)
    elif what == "vector":  # the stored digest vector does not match the claimed digest
        state = dict(good.state)
        vec = bytearray(state[DIGEST_KEY])
        vec[0] ^= 1
        state[DIGEST_KEY] = bytes(vec)
        start = dataclasses.replace(good, state=state)
    elif what == "timestamp":
        start = dataclasses.replace(good, timestamp_ms=good.timestamp_ms - 1)
    else:
        start = dataclasses.replace(good, height=START + 1)
    r = verify_chain_from(CHAIN.genesis, start, CHAIN.blocks[START:])
    assert not r.ok and r.blocks_checked == 0, r.reason
    assert r.bad_height == start.height and r.reason.startswith("starting point"), r.reason


def test_a_changed_pair_is_missed_only_when_recomputation_is_skipped() -> None:
    state = dict(start_at(START).state)
    key = next(k for k in sorted(state) if k != DIGEST_KEY and k.startswith(b"epi/"))
    state[key] = state[key] + b"x"
    start = dataclasses.replace(start_at(START), state=state)
    r = verify_chain_from(CHAIN.genesis, start, CHAIN.blocks[START:])
    assert not r.ok and "recomputed" in r.reason
    # The caller vouches it already recomputed it (check_snapshot): the replay goes on.
    r = verify_chain_from(CHAIN.genesis, start, CHAIN.blocks[START:],
                          recompute_start_digest=False)
    assert r.start_height == START
