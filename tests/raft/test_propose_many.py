"""propose_many: a batch of entries, all or none, in one append per follower."""

from __future__ import annotations

import pytest

from hzp2p.raft.errors import NotLeader, ProposalDropped
from raft.network import Network


def test_batch_is_replicated_in_order_with_one_append() -> None:
    net = Network((1, 2, 3))
    net.elect(1)
    datas = [b"e%d" % i for i in range(50)]
    first, last = net.core(1).propose_many(datas)
    assert last - first == 49
    net.tick(2)
    for n in (1, 2, 3):
        assert net.applied_data(n)[-50:] == datas


def test_batch_respects_the_bounds_all_or_none() -> None:
    net = Network((1, 2, 3), max_uncommitted_bytes=1000)
    net.elect(1)
    net.cut(1, 2)
    net.cut(1, 3)
    with pytest.raises(ProposalDropped, match="max_uncommitted_bytes"):
        net.core(1).propose_many([bytes(84)] * 11)  # 1,100 bytes with overhead
    before = net.core(1).log.last_index()
    net.core(1).propose_many([bytes(84)] * 10)
    assert net.core(1).log.last_index() == before + 10
    with pytest.raises(NotLeader):
        net.core(2).propose_many([b"x"])
