"""The block producer empties the mempool (and forgets in-flight hashes) on losing leadership."""

from __future__ import annotations

from typing import Any, cast

import nacl.signing

from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.mempool import Mempool, MempoolLimits
from hzp2p.node.producer import BlockProducer
from hzp2p.tools.testkit import LocalChain


def test_leadership_lost_clears_the_mempool() -> None:
    chain = LocalChain(seed=11)
    mempool = Mempool(MempoolLimits(max_per_sender=3))
    producer = BlockProducer(
        cast(Any, None),  # driver: not used when leadership is lost
        cast(Any, None),  # applier: likewise
        mempool,
        cast(BlockBuilder, None),
        nacl.signing.SigningKey(bytes(32)),
        node_id=1,
    )
    txs = [chain.tx(s, "epi.report", {"i": i}) for s in (3, 4) for i in range(3)]
    for tx in txs:
        mempool.add(tx)
    producer.inflight.add(b"\x01" * 32)
    producer.tx_added()
    producer.leadership_lost()
    assert len(mempool) == 0 and mempool.total_bytes == 0 and mempool.hashes() == []
    assert producer.inflight == set()
    # the per-sender bounds are released too: a full sender's queue accepts again
    for tx in txs:
        mempool.add(tx)
    assert len(mempool) == len(txs)
