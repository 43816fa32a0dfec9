"""Mempool bounds, dedupe, FIFO per sender and fairness across senders; the block builder."""

from __future__ import annotations

import pytest

from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.mempool import DuplicateTx, Mempool, MempoolFull, MempoolLimits
from hzp2p.tools.testkit import LocalChain


@pytest.fixture(scope="module")
def chain() -> LocalChain:
    return LocalChain(seed=5)


def test_dedupe_and_total_bounds(chain: LocalChain) -> None:
    tx = chain.tx(3, "epi.report", {"a": 1})
    size = len(tx.encode())
    mp = Mempool(MempoolLimits(max_bytes=size * 3, max_txs=10, max_per_sender=10))
    mp.add(tx)
    with pytest.raises(DuplicateTx):
        mp.add(tx)
    mp.add(chain.tx(3, "epi.report", {"a": 2}))
    mp.add(chain.tx(3, "epi.report", {"a": 3}))
    with pytest.raises(MempoolFull, match="byte"):
        mp.add(chain.tx(3, "epi.report", {"a": 4}))
    assert len(mp) == 3 and mp.total_bytes == 3 * size
    mp2 = Mempool(MempoolLimits(max_txs=2))
    mp2.add(chain.tx(3, "epi.report", {"a": 1}))
    mp2.add(chain.tx(4, "epi.report", {"a": 1}))
    with pytest.raises(MempoolFull, match="transaction limit"):
        mp2.add(chain.tx(5, "epi.report", {"a": 1}))


def test_per_sender_bound(chain: LocalChain) -> None:
    mp = Mempool(MempoolLimits(max_per_sender=2))
    mp.add(chain.tx(3, "epi.report", {"a": 1}))
    mp.add(chain.tx(3, "epi.report", {"a": 2}))
    with pytest.raises(MempoolFull, match="per-sender"):
        mp.add(chain.tx(3, "epi.report", {"a": 3}))
    mp.add(chain.tx(4, "epi.report", {"a": 3}))  # another sender still fits


def test_fifo_within_sender_and_fair_across(chain: LocalChain) -> None:
    mp = Mempool()
    flood = [chain.tx(3, "epi.report", {"i": i}) for i in range(50)]
    for tx in flood:
        mp.add(tx)
    quiet = [chain.tx(s, "epi.report", {"i": 0}) for s in (4, 5)]
    for tx in quiet:
        mp.add(tx)
    batch = mp.pop_batch(6, 10**9)
    # the two quiet senders are served in the first cut despite the flood ahead of them
    assert {t.hash for t in quiet} <= {t.hash for t in batch}
    flood_taken = [t for t in batch if t.signer == flood[0].signer]
    assert flood_taken == flood[: len(flood_taken)]  # FIFO
    rest = mp.pop_batch(100, 10**9)
    assert rest == flood[len(flood_taken) :]
    assert len(mp) == 0 and mp.total_bytes == 0


def test_rotation_between_cuts(chain: LocalChain) -> None:
    mp = Mempool()
    for s in (3, 4, 5):
        for i in range(4):
            mp.add(chain.tx(s, "epi.report", {"i": i}))
    first = mp.pop_batch(2, 10**9)
    second = mp.pop_batch(1, 10**9)
    # the sender not served in the first cut goes first in the next
    assert second[0].signer not in {t.signer for t in first}


def test_byte_budget_and_remove_and_requeue(chain: LocalChain) -> None:
    mp = Mempool()
    txs = [chain.tx(3, "epi.report", {"i": i}) for i in range(5)]
    for tx in txs:
        mp.add(tx)
    size = len(txs[0].encode())
    got = mp.pop_batch(100, size * 2 + 1)
    assert got == txs[:2]
    mp.requeue(got)
    assert mp.pop_batch(1, 10**9) == txs[:1]
    assert mp.remove([txs[1].hash, txs[1].hash, b"x" * 32]) == 1
    assert mp.pop_batch(10, 10**9) == txs[2:]


def test_prune_expired(chain: LocalChain) -> None:
    mp = Mempool()
    mp.add(chain.tx(3, "epi.report", {"i": 1}, valid_from_ms=0, valid_until_ms=100))
    mp.add(chain.tx(3, "epi.report", {"i": 2}, valid_from_ms=0, valid_until_ms=10_000))
    assert mp.prune_expired(5_000) == 1 and len(mp) == 1


def test_hashes_and_clear(chain: LocalChain) -> None:
    mp = Mempool(MempoolLimits(max_txs=4, max_per_sender=2))
    txs = [chain.tx(s, "epi.report", {"i": i}) for s in (3, 4) for i in range(2)]
    for tx in txs:
        mp.add(tx)
    assert mp.hashes() == [t.hash for t in txs]
    snapshot = mp.hashes()
    snapshot.clear()  # a copy: the mempool is untouched
    assert len(mp) == 4
    with pytest.raises(MempoolFull):
        mp.add(chain.tx(5, "epi.report", {"i": 0}))
    assert mp.clear() == 4
    assert len(mp) == 0 and mp.total_bytes == 0 and mp.senders() == 0 and mp.hashes() == []
    assert txs[0].hash not in mp and mp.pop_batch(10, 10**9) == []
    assert mp.clear() == 0
    # every bound is free again, per sender too, and the same transactions are accepted anew
    for tx in txs:
        mp.add(tx)
    assert mp.pop_batch(10, 10**9) == [txs[0], txs[2], txs[1], txs[3]]


def test_builder_cuts_by_count_bytes_time(chain: LocalChain) -> None:
    b = BlockBuilder(max_txs=3, max_bytes=10**6, max_wait_ms=50)
    mp = Mempool()
    assert not b.should_cut(mp, 0, None)
    mp.add(chain.tx(3, "epi.report", {"i": 1}))
    assert not b.should_cut(mp, 10, 0)
    assert b.should_cut(mp, 50, 0)
    for i in range(2, 4):
        mp.add(chain.tx(3, "epi.report", {"i": i}))
    assert b.should_cut(mp, 0, 0)
    small = BlockBuilder(max_txs=100, max_bytes=100, max_wait_ms=50)
    assert small.should_cut(mp, 0, 0)


def test_builder_builds_valid_block_and_filters_window(chain: LocalChain) -> None:
    c = LocalChain(seed=6)
    mp = Mempool()
    ok = [c.tx(3, "epi.report", {"report_id": f"r{i}", "region": "n", "metric": "m", "value": 1, "period": "p"}) for i in range(4)]
    expired = c.tx(3, "epi.report", {"x": 1}, valid_from_ms=0, valid_until_ms=10)
    future = c.tx(3, "epi.report", {"x": 2}, valid_from_ms=10**9, valid_until_ms=10**9 + 1)
    for tx in [*ok, expired, future]:
        mp.add(tx)
    from hzp2p.contracts.engine import read_head, state_digest

    head = read_head(c.state)
    blk = BlockBuilder().build(
        mp,
        c.secrets[1].node_key(),
        1,
        height=head.height + 1,
        prev_hash=head.hash,
        prev_timestamp_ms=head.timestamp_ms,
        state_digest=state_digest(c.state),
        now_ms=c.now_ms,
    )
    assert blk is not None and list(blk.txs) == ok
    assert len(mp) == 1 and future.hash in mp
    res = c.apply(blk)
    assert all(v.applied for v in res.verdicts)


def test_fairness_property() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    c = LocalChain(seed=7)
    pool = {s: [c.tx(s, "epi.report", {"i": i}) for i in range(6)] for s in range(1, 10)}

    @settings(max_examples=60)
    @given(st.lists(st.integers(0, 6), min_size=9, max_size=9), st.integers(1, 20))
    def check(counts: list[int], cut: int) -> None:
        mp = Mempool()
        for s, n in zip(range(1, 10), counts, strict=True):
            for tx in pool[s][:n]:
                mp.add(tx)
        taken: dict[bytes, list[object]] = {}
        total = sum(counts)
        left = {pool[s][0].signer: n for s, n in zip(range(1, 10), counts, strict=True) if n}
        while len(mp):
            batch = mp.pop_batch(cut, 10**9)
            assert batch and len(batch) <= cut
            per: dict[bytes, int] = {}
            for tx in batch:
                per[tx.signer] = per.get(tx.signer, 0) + 1
                taken.setdefault(tx.signer, []).append(tx)
            top = max(per.values())
            # nobody gets a k-th tx in a cut while a sender with work got fewer than k-1
            for signer, had in left.items():
                assert per.get(signer, 0) >= min(had, top - 1)
            for signer, k in per.items():
                left[signer] -= k
            left = {s: n for s, n in left.items() if n}
        assert sum(len(v) for v in taken.values()) == total
        for s, n in zip(range(1, 10), counts, strict=True):
            if n:
                assert taken[pool[s][0].signer] == pool[s][:n]  # FIFO per sender

    check()


def test_builder_timestamp_never_before_parent() -> None:
    c = LocalChain(seed=8)
    mp = Mempool()
    mp.add(c.tx(3, "epi.report", {"i": 1}, valid_from_ms=0, valid_until_ms=10**8))
    blk = BlockBuilder().build(
        mp, c.secrets[1].node_key(), 1, height=1, prev_hash=bytes(32),
        prev_timestamp_ms=5_000, state_digest=bytes(32), now_ms=4_000,
    )
    assert blk is not None and blk.header.timestamp_ms == 5_000


def test_per_sender_byte_bound(chain: LocalChain) -> None:
    tx = chain.tx(3, "epi.report", {"a": 1})
    n = len(tx.encode())
    mp = Mempool(MempoolLimits(max_sender_bytes=2 * n + 1))
    mp.add(tx)
    mp.add(chain.tx(3, "epi.report", {"a": 2}))
    with pytest.raises(MempoolFull, match="per-sender byte"):
        mp.add(chain.tx(3, "epi.report", {"a": 3}))
    mp.pop_batch(1, 10**9)
    mp.add(chain.tx(3, "epi.report", {"a": 3}))  # room again after a cut
    mp.remove([tx.hash for tx in mp.pop_batch(10, 10**9)])
    assert len(mp) == 0 and mp.total_bytes == 0


def test_builder_blocks_always_decode_at_the_size_bounds() -> None:
    """A block the builder cuts is never over the block size or count limits every node
    enforces when decoding (otherwise every node would skip it and its txs be lost)."""
    from hzp2p.contracts.engine import read_head, state_digest
    from hzp2p.ledger.block import MAX_BLOCK_BYTES, MAX_BLOCK_TXS, decode_block
    from hzp2p.ledger.tx import MAX_TX_BYTES

    with pytest.raises(ValueError, match="max_txs"):
        BlockBuilder(max_txs=MAX_BLOCK_TXS + 1)
    with pytest.raises(ValueError, match="max_bytes"):
        BlockBuilder(max_bytes=MAX_BLOCK_BYTES + 1)
    c = LocalChain(seed=7)
    head = read_head(c.state)
    b = BlockBuilder(max_txs=MAX_BLOCK_TXS, max_bytes=MAX_BLOCK_BYTES)
    # near-maximal txs, then ~500-byte ones (count and bytes bounds bite together, and
    # the per-tx framing inside a block adds up to more than a fixed allowance)
    for pad in (["x" * 15_000] * 4, ["x" * 300]):
        mp = Mempool()
        i = 0
        while mp.total_bytes < MAX_BLOCK_BYTES + MAX_TX_BYTES:
            mp.add(c.tx(3 + i % 6, "epi.report", {"pad": pad, "i": i}))
            i += 1
        blk = b.build(
            mp, c.secrets[1].node_key(), 1, height=head.height + 1, prev_hash=head.hash,
            prev_timestamp_ms=head.timestamp_ms, state_digest=state_digest(c.state),
            now_ms=c.now_ms,
        )
        assert blk is not None and len(blk.txs) > 100
        raw = blk.encode()
        assert len(raw) <= MAX_BLOCK_BYTES, (len(blk.txs), len(raw) - MAX_BLOCK_BYTES)
        assert decode_block(raw).hash == blk.hash
