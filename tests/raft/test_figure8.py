"""The Raft paper's Figure 8: why a leader must not commit an earlier term's entry by counting.

(a) S1 leads term 2 and puts (2, t2) on S2. (b) S5 leads term 3 with a (2, t3)
nobody else has. (c) S1 leads term 4 and replicates (2, t2) to S3: a majority
holds it, but it is from term 2. (d) If S1 commits it and crashes, S5 can win
term 5 with votes from S2, S3, S4 and overwrite index 2 -- a committed entry
lost. We build state (c) directly, let S1 "crash" right after it would commit,
then let S5 win.
"""

from __future__ import annotations

import pytest

from hzp2p.raft.core import RaftCore
from hzp2p.raft.messages import AppendEntries, Heartbeat, Message
from hzp2p.raft.types import HardState, Role
from raft.network import Disk, Network, entries_of


class CountsOldTerms(RaftCore):
    """A broken core that commits entries of earlier terms by counting replicas."""

    def _can_commit_at(self, index: int) -> bool:
        return True


def run_figure8(core_cls: type[RaftCore]) -> Network:
    disks = {
        1: Disk(HardState(3, 0, 1), entries_of(1, 2)),
        2: Disk(HardState(3, 0, 1), entries_of(1, 2)),
        3: Disk(HardState(3, 0, 1), entries_of(1)),
        4: Disk(HardState(3, 0, 1), entries_of(1)),
        5: Disk(HardState(3, 0, 1), entries_of(1, 3)),
    }
    net = Network(
        (1, 2, 3, 4, 5),
        disks=disks,
        core_cls=core_cls,
        pre_vote=False,
        check_quorum=False,
        max_entries_per_msg=1,
    )
    net.crash(5)
    net.cut(1, 4)

    def s1_crashes_after_commit(m: Message) -> Message | None:
        if m.src != 1:
            return m
        if isinstance(m, AppendEntries):
            if m.leader_commit >= 2:
                return None  # S1 "crashes" before anyone learns of the commit
            return AppendEntries(
                m.term,
                m.src,
                m.dst,
                m.prev_log_index,
                m.prev_log_term,
                tuple(e for e in m.entries if e.index < 3),  # (3, t4) never leaves S1
                m.leader_commit,
            )
        if isinstance(m, Heartbeat) and m.commit >= 2:
            return None
        return m

    net.mutate = s1_crashes_after_commit
    net.elect(1)
    assert net.core(1).term == 4
    net.tick(3, nodes=[1])
    # state (c): (2, t2) is on S1, S2, S3 -- a majority
    for n in (1, 2, 3):
        assert net.core(n).log.term(2) == 2
    return net


def s5_takes_over(net: Network) -> None:
    net.crash(1)
    net.mutate = None
    net.heal()
    net.start(5)
    net.elect(5)
    net.tick(3)


def test_figure8_entry_of_earlier_term_not_committed_by_counting() -> None:
    """§5.4.2: "Raft never commits log entries from previous terms by counting replicas.";
    in state (c) S1's commit index stays at 1, so S5 overwriting index 2 loses nothing."""
    net = run_figure8(RaftCore)
    assert net.core(1).status().commit == 1
    assert net.core(1).role is Role.LEADER
    s5_takes_over(net)
    for n in (2, 3, 4, 5):
        assert net.core(n).log.term(2) == 3
    net.check_safety()


def test_figure8_broken_core_loses_a_committed_entry() -> None:
    """The same scenario with a core that commits by counting old-term replicas: S1
    applies (2, t2), then S5's term overwrites it elsewhere -- the harness catches two
    different entries applied at index 2."""
    net = run_figure8(CountsOldTerms)
    assert net.core(1).status().commit == 2
    assert net.nodes[1].disk.applied[-1].term == 2
    with pytest.raises(AssertionError, match="but another node applied"):
        s5_takes_over(net)
