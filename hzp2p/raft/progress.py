"""What a leader knows about each follower's log (modelled on etcd-raft's tracker).

A `Progress` is in one of three states:

- PROBE: we do not know where the follower's log matches ours; send one
  append at a time (`probe_sent` pauses further ones until a reply or a
  heartbeat response) and back off on rejection;
- REPLICATE: the follower is known to match up to `match`; stream appends
  optimistically, at most `max_inflight_msgs` unacknowledged (`Inflights`);
- SNAPSHOT: the entries the follower needs are compacted; a snapshot is on its
  way and nothing else is sent until it is acknowledged.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Last indexes of the appends sent but not yet acknowledged, oldest first, bounded."""

    def __init__(self, capacity: int) -> None:
        assert capacity > 0
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._last_indexes)

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def add(self, last_index: int) -> None:
        assert not self.full(), "inflights overflow"
        if self._last_indexes:
            assert last_index >= self._last_indexes[-1]
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget every append whose last index is <= `index` (it was acknowledged)."""
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def free_first_one(self) -> None:
        if self._last_indexes:
            self._last_indexes.popleft()

    def reset(self) -> None:
        self._last_indexes.clear()


class Progress:
    def __init__(self, next_index: int, max_inflight_msgs: int, *, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0  # index of the snapshot being sent (SNAPSHOT state)
        self.snapshot_offset = 0  # bytes of it the follower has acknowledged
        self.recent_active = False  # responded to this leader since the last check-quorum
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight_msgs)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_offset = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """A success reply says the follower matches up to `index`; False if it is stale."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, next_hint: int) -> bool:
        """A rejection of the append at prev index `rejected`; False if it is stale.

        `next_hint` is the next index the fast back-off hint suggests; the result
        is clamped to (match, rejected] so probing always makes progress.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: we already know it matches further
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not a reply to the probe we have out
        new_next = max(min(rejected, next_hint), self.match + 1, 1)
        if new_next == self.next:
            # The follower refuses an append at an index it acknowledged before (match): it
            # lost its data. Re-sending the same probe at once would loop without end (and
            # in zero time on a fast link); keep the probe paused until the next heartbeat
            # round, which also tells the follower it lost data (hzp2p.node.snapshots).
            return False
        self.next = new_next
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, last_index: int | None) -> None:
        """Record an append we just sent whose last entry is `last_index` (None: empty)."""
        if self.state is ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A read-only view of one follower's progress (for status and tests)."""

    node_id: int
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
