"""Log replication for RaftCore: appends, heartbeats and their responses (Raft §5.3).

Leader side: batch entries per follower within `max_entries_per_msg` and
`max_bytes_per_msg`, respect each follower's Progress state and Inflights
bound, back off on rejection with the conflict hint. Follower side: accept an
append only if `prev` matches, truncate only from the first conflicting entry
(never a matching one; raftos#26) and never below the commit index, and
answer with the hint. Snapshot transfer is in hzp2p.raft.snapshot_xfer.

This is a mixin so RaftCore stays readable; it relies on the attributes and
methods declared below, which RaftCore provides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hzp2p.raft.config import RaftConfig
from hzp2p.raft.log import RaftLog
from hzp2p.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    Message,
    TimeoutNow,
)
from hzp2p.raft.progress import Progress, ProgressState
from hzp2p.raft.types import ConfState, Entry, NodeId, Snapshot


class ReplicationMixin:
    _cfg: RaftConfig
    _id: NodeId
    _term: int
    log: RaftLog
    _prs: dict[NodeId, Progress]
    _conf: ConfState
    _lead_transferee: NodeId
    _snapshot: Snapshot | None
    _last_sent: tuple[Entry, ...]

    if TYPE_CHECKING:  # provided by RaftCore

        def _send(self, msg: Message) -> None: ...

        def _drop(self, reason: str) -> None: ...

        def _maybe_commit(self) -> bool: ...

        def _send_snapshot(self, to: NodeId, pr: Progress) -> bool: ...

        def _resend_snapshot_chunk(self, to: NodeId, pr: Progress) -> None: ...

        def _recv_read_ack(self, src: NodeId, context: bytes) -> None: ...

    # ---------------------------------------------------------------- leader side
    def _bcast_append(self) -> None:
        for nid in sorted(self._prs):
            if nid != self._id:
                self._maybe_send_append(nid, send_if_empty=True)

    def _bcast_heartbeat(self, context: bytes) -> None:
        for nid in sorted(self._prs):
            if nid == self._id:
                continue
            pr = self._prs[nid]
            # Never tell a follower a commit index beyond what it is known to hold.
            commit = min(pr.match, self.log.committed)
            self._send(Heartbeat(self._term, self._id, nid, commit, context))

    def _send_append(self, to: NodeId) -> bool:
        return self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: NodeId, *, send_if_empty: bool) -> bool:
        pr = self._prs[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        entries = self.log.entries_from(
            pr.next, self._cfg.max_entries_per_msg, self._cfg.max_bytes_per_msg
        )
        if prev_term is None or entries is None:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        # Followers in step get the same run of entries: hand them the same tuple, so
        # the codec packs it once (its `shared` field cache is by identity). The same
        # first and last objects at the same indexes mean the same run (a truncation
        # replaces every object from its point on).
        last = self._last_sent
        if (
            entries
            and len(last) == len(entries)
            and last[0] is entries[0]
            and last[-1] is entries[-1]
        ):
            batch = last
        else:
            batch = tuple(entries)
            if batch:
                self._last_sent = batch
        self._send(
            AppendEntries(
                term=self._term,
                src=self._id,
                dst=to,
                prev_log_index=prev,
                prev_log_term=prev_term,
                entries=batch,
                leader_commit=self.log.committed,
            )
        )
        pr.sent_entries(entries[-1].index if entries else None)
        return True

    def _next_from_hint(self, m: AppendEntriesResponse) -> int:
        """Turn a rejection's (conflict_term, conflict_index) hint into the next index to try
        (thesis §5.3 / etcd findConflictByTerm): skip the follower's whole conflicting term."""
        if m.conflict_term == 0:
            return m.conflict_index
        j = self.log.last_index_of_term_at_or_below(m.conflict_term, m.reject_index)
        return j + 1 if j > 0 else m.conflict_index

    def _handle_append_response(self, m: AppendEntriesResponse, pr: Progress) -> None:
        if not m.success:
            if m.reject_index == 0:
                self._drop("dropped_unexpected")  # a term notice at our own term: stale
                return
            if pr.maybe_decr_to(m.reject_index, self._next_from_hint(m)):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            else:
                self._drop("dropped_unexpected")
            return
        if m.match_index > self.log.last_index():
            self._drop("dropped_invalid")  # claims entries we never had
            return
        was_paused = pr.is_paused()
        updated = pr.maybe_update(m.match_index)
        if not updated and not (pr.state is ProgressState.PROBE and pr.match == m.match_index):
            return  # stale or duplicate
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(pr.match)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._send_append(m.src)
        for _ in range(self._cfg.max_inflight_msgs):
            if not self._maybe_send_append(m.src, send_if_empty=False):
                break
        if m.src == self._lead_transferee and pr.match == self.log.last_index():
            self._send(TimeoutNow(self._term, self._id, m.src))

    def _handle_heartbeat_response(self, m: HeartbeatResponse, pr: Progress) -> None:
        # Heartbeat responses are the retry clock for lost appends, probes and chunks.
        if pr.state is ProgressState.SNAPSHOT:
            self._resend_snapshot_chunk(m.src, pr)
        else:
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self._send_append(m.src)
        if m.context:
            self._recv_read_ack(m.src, m.context)

    # ---------------------------------------------------------------- follower side
    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        reply = AppendEntriesResponse(self._term, self._id, m.src, success=True)
        if m.prev_log_index < log.committed:
            # Everything up to commit matches any leader; tell it where we are.
            self._send(_replace_match(reply, log.committed))
            return
        if not log.match_term(m.prev_log_index, m.prev_log_term):
            if m.prev_log_index > log.last_index():
                hint_index, hint_term = log.last_index() + 1, 0
            else:
                term = log.term(m.prev_log_index)
                assert term is not None  # prev >= commit >= snapshot index
                hint_index, hint_term = log.first_index_of_term_at(m.prev_log_index), term
            self._send(
                AppendEntriesResponse(
                    self._term,
                    self._id,
                    m.src,
                    success=False,
                    reject_index=m.prev_log_index,
                    conflict_index=hint_index,
                    conflict_term=hint_term,
                )
            )
            return
        last_new = m.prev_log_index + len(m.entries)
        conflict = log.find_conflict(m.entries)
        if conflict:
            if conflict <= log.committed:
                self._drop("dropped_conflicts_committed")
                return
            log.truncate_and_append(m.entries[conflict - m.prev_log_index - 1 :])
        log.commit_to(min(m.leader_commit, last_new))
        self._send(_replace_match(reply, last_new))

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(HeartbeatResponse(self._term, self._id, m.src, m.context))


def _replace_match(reply: AppendEntriesResponse, match_index: int) -> AppendEntriesResponse:
    return AppendEntriesResponse(
        reply.term, reply.src, reply.dst, success=True, match_index=match_index
    )
