"""Deliberately broken Raft cores: the simulator's checkers must catch each planted bug.

Importable as `tests.sim.broken_cores` from the repository root, so a failure's
replay command (`hzp2p fuzz ... --core tests.sim.broken_cores:Class`) works.
"""

from __future__ import annotations

from hzp2p.raft.core import RaftCore


class AnyLogVoteCore(RaftCore):
    """Grants (pre-)votes without the §5.4.1 up-to-date check."""

    def _is_log_up_to_date(self, last_log_term: int, last_log_index: int) -> bool:
        return True


class OldTermCommitCore(RaftCore):
    """Commits by counting replicas of entries from earlier terms (Raft Figure 8)."""

    def _can_commit_at(self, index: int) -> bool:
        return True
