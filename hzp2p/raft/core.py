"""RaftCore: the pure, deterministic Raft state machine (modelled on etcd-io/raft's raft.go).

Input arrives as `tick()` (time), `step(msg)` (peers) and the client calls
(`propose`, `read_index`, ...); output leaves only through `ready()` /
`advance()` under the contract written in hzp2p.raft.ready. There is no I/O,
no clock and no randomness except the injected `random.Random`.

The code is organised like etcd-raft: a generic `step` handles terms and votes,
then one handler per role (`_step_leader`, `_step_candidate`,
`_step_follower`); role changes go through `_become_*`. Replication helpers
(appends, heartbeats, snapshots) live in hzp2p.raft.replication as a mixin.

Durability, in one sentence: the leader counts itself toward a commit only
for entries the driver has reported durable (`advance`), followers acknowledge
only through `persisted_messages`, and committed entries are handed out only
once they are durable in this node's log.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import fields

from hzp2p.raft.client import MAX_PENDING_READS, ClientMixin
from hzp2p.raft.config import RaftConfig
from hzp2p.raft.log import RaftLog
from hzp2p.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from hzp2p.raft.progress import PeerStatus, Progress
from hzp2p.raft.quorum import VoteResult, committed_index, has_quorum, vote_result
from hzp2p.raft.read_only import ReadOnly
from hzp2p.raft.ready import Ready
from hzp2p.raft.replication import ReplicationMixin
from hzp2p.raft.snapshot_xfer import IncomingSnapshot, SnapshotMixin
from hzp2p.raft.status import RaftStats, RaftStatus
from hzp2p.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from hzp2p.raft.validate import is_valid

MAX_PENDING_MSGS = 8192
"""Outbound messages held while the driver is not taking Readys; beyond this they drop."""
MAX_COMMITTED_PER_READY = 4096

_STAT_FIELDS = frozenset(f.name for f in fields(RaftStats))
_RESPONSES = (
    RequestVoteResponse,
    AppendEntriesResponse,
    HeartbeatResponse,
    InstallSnapshotResponse,
)
_LEADER_TRAFFIC = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow)


class RaftCore(ClientMixin, SnapshotMixin, ReplicationMixin):
    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState = HardState(),  # noqa: B008 - frozen, immutable default
        conf: ConfState,
        entries: Sequence[Entry] = (),
        snapshot: SnapshotMeta | None = None,
        applied: int = 0,
    ) -> None:
        self._cfg = config
        self._rng = rng
        self._id: NodeId = config.node_id
        self.log = RaftLog(snapshot, entries, hard_state.commit, applied)
        if hard_state.term < self.log.last_term():
            raise ValueError("hard state term is behind the log's last term")
        self._term = hard_state.term
        self._vote: NodeId = hard_state.vote
        self._lead: NodeId = 0
        self._role = Role.FOLLOWER
        self._conf = conf
        self._prs: dict[NodeId, Progress] = {}
        self._votes: dict[NodeId, bool] = {}
        self._msgs: list[Message] = []
        self._msgs_after_persist: list[Message] = []
        self._read_states: list[ReadState] = []
        self._read_only = ReadOnly(MAX_PENDING_READS)
        self._reads_waiting_commit: deque[bytes] = deque()
        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._leader_contact_ticks = config.election_ticks  # "not heard from a leader"
        self._randomized_election_ticks = config.election_ticks
        self._lead_transferee: NodeId = 0
        self._transfer_elapsed_ticks = 0
        self._pending_conf_index = 0
        self._uncommitted_bytes = 0
        self._last_sent: tuple[Entry, ...] = ()  # last entries tuple sent (replication)
        self._outstanding: Ready | None = None
        self._outstanding_ticks = 0
        self._prev_hard_state = HardState(self._term, self._vote, self.log.committed)
        self._stats: dict[str, int] = {}
        self._snapshot: Snapshot | None = None  # latest local snapshot with data (see compact)
        self._incoming_snapshot: IncomingSnapshot | None = None
        self._become_follower(self._term, 0)
        self._prev_soft_state = self._soft_state()

    # ------------------------------------------------------------------ views
    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def term(self) -> int:
        return self._term

    @property
    def role(self) -> Role:
        return self._display_role()

    @property
    def leader_id(self) -> NodeId:
        return self._lead

    @property
    def conf(self) -> ConfState:
        return self._conf

    @property
    def config(self) -> RaftConfig:
        """The tunables this core runs with (election and heartbeat ticks, ...)."""
        return self._cfg

    def status(self) -> RaftStatus:
        progress: tuple[PeerStatus, ...] = ()
        if self._role is Role.LEADER:
            progress = tuple(
                PeerStatus(nid, pr.match, pr.next, pr.state, pr.is_learner, pr.recent_active)
                for nid, pr in sorted(self._prs.items())
            )
        return RaftStatus(
            node_id=self._id,
            term=self._term,
            vote=self._vote,
            role=self._display_role(),
            leader_id=self._lead,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            persisted_index=self.log.persisted,
            first_index=self.log.first_index(),
            conf=self._conf,
            lead_transferee=self._lead_transferee,
            progress=progress,
        )

    def stats(self) -> RaftStats:
        return RaftStats(**{k: v for k, v in self._stats.items() if k in _STAT_FIELDS})

    def _count(self, name: str, n: int = 1) -> None:
        self._stats[name] = self._stats.get(name, 0) + n

    def _drop(self, reason: str) -> None:
        self._count("messages_dropped")
        self._count(reason)

    def _display_role(self) -> Role:
        if self._role is Role.FOLLOWER and self._id in self._conf.learners:
            return Role.LEARNER
        return self._role

    def _soft_state(self) -> SoftState:
        return SoftState(self._lead, self._display_role())

    def _hard_state(self) -> HardState:
        return HardState(self._term, self._vote, self.log.committed)

    def _promotable(self) -> bool:
        return self._id in self._conf.voters

    # ------------------------------------------------------------ broken-core hooks
    def _is_log_up_to_date(self, last_log_term: int, last_log_index: int) -> bool:
        """Raft §5.4.1: grant a vote only to a candidate whose log is at least as up to date."""
        return self.log.is_up_to_date(last_log_term, last_log_index)

    def _can_commit_at(self, index: int) -> bool:
        """Raft §5.4.2: only an entry of the current term commits by counting replicas."""
        return self.log.term(index) == self._term

    # ------------------------------------------------------------------ output
    def _send(self, msg: Message) -> None:
        queue = self._msgs if isinstance(msg, _LEADER_TRAFFIC) else self._msgs_after_persist
        if len(queue) >= MAX_PENDING_MSGS:
            self._count("outbound_dropped")
            return
        queue.append(msg)

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        log = self.log
        # Cheapest checks first: the driver polls this after every input.
        return bool(
            self._msgs
            or self._msgs_after_persist
            or self._read_states
            or log.handed_out < log.last_index()
            or log.pending_snapshot is not None
            or log.has_next_committed()
            or self._hard_state() != self._prev_hard_state
            or self._soft_state() != self._prev_soft_state
        )

    def ready(self) -> Ready:
        """Hand out everything new since the last Ready; call `advance` with it when done."""
        if self._outstanding is not None:
            raise RuntimeError("ready() called again before advance() of the previous Ready")
        log = self.log
        ss = self._soft_state()
        hs = self._hard_state()
        snapshot = log.pending_snapshot
        log.pending_snapshot = None
        entries = tuple(log.unstable_entries())
        log.handed_out = log.last_index()
        committed = tuple(log.next_committed(MAX_COMMITTED_PER_READY))
        if committed:
            log.applying = committed[-1].index
        assert hs.commit <= log.last_index(), "hard state commit beyond the durable log"
        rd = Ready(
            soft_state=ss if ss != self._prev_soft_state else None,
            hard_state=hs if hs != self._prev_hard_state else None,
            entries=entries,
            snapshot=snapshot,
            messages=tuple(self._msgs),
            persisted_messages=tuple(self._msgs_after_persist),
            committed_entries=committed,
            read_states=tuple(self._read_states),
        )
        self._prev_soft_state = ss
        self._prev_hard_state = hs
        self._msgs = []
        self._msgs_after_persist = []
        self._read_states = []
        self._outstanding = rd
        self._outstanding_ticks = 0
        return rd

    def advance(self, ready: Ready) -> None:
        """The driver made `ready` durable, sent its messages and applied its entries."""
        if ready is not self._outstanding:
            raise RuntimeError("advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        self._outstanding_ticks = 0
        log = self.log
        # A truncation after ready() already pulled handed_out back below the stale entries.
        log.persisted = log.handed_out
        if ready.committed_entries:
            log.applied = max(log.applied, ready.committed_entries[-1].index)
        assert log.applied <= log.committed <= log.last_index()
        if self._role is Role.LEADER:
            self._prs[self._id].maybe_update(log.persisted)
            if self._maybe_commit():
                self._bcast_append()

    # ------------------------------------------------------------------ time
    def tick(self) -> None:
        if self._outstanding is not None:
            self._outstanding_ticks += 1
        if self._role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self._election_elapsed_ticks += 1
        self._leader_contact_ticks = min(
            self._leader_contact_ticks + 1, 2 * self._cfg.election_ticks
        )
        if self._promotable() and self._election_elapsed_ticks >= self._randomized_election_ticks:
            self._election_elapsed_ticks = 0
            self._campaign(pre_vote=self._cfg.pre_vote, transfer=False)

    def _tick_heartbeat(self) -> None:
        cfg = self._cfg
        self._heartbeat_elapsed_ticks += 1
        self._election_elapsed_ticks += 1
        self._leader_contact_ticks = 0
        if self._lead_transferee:
            self._transfer_elapsed_ticks += 1
            if self._transfer_elapsed_ticks >= cfg.election_ticks:
                self._abort_leader_transfer()
                self._count("transfers_aborted")
        if self._election_elapsed_ticks >= cfg.election_ticks:
            self._election_elapsed_ticks = 0
            if cfg.check_quorum:
                if not self._quorum_active():
                    self._count("check_quorum_step_downs")
                    self._become_follower(self._term, 0)
                    return
                for nid, pr in self._prs.items():
                    pr.recent_active = nid == self._id
        if self._heartbeat_elapsed_ticks >= cfg.heartbeat_ticks:
            self._heartbeat_elapsed_ticks = 0
            self._bcast_heartbeat(self._read_only.last_pending_context())

    def _quorum_active(self) -> bool:
        """Check-quorum: a quorum of voters answered this leader in the last election timeout.

        The leader counts itself only if its own disk keeps up: a Ready left
        un-advanced for a whole election timeout means it cannot persist
        (hashicorp/raft#683), and such a leader must give way.
        """
        active = {nid for nid, pr in self._prs.items() if pr.recent_active and nid != self._id}
        if self._outstanding_ticks < self._cfg.election_ticks:
            active.add(self._id)
        return has_quorum(self._conf.voters, active)

    # ------------------------------------------------------------------ roles
    def _reset(self, term: int) -> None:
        assert term >= self._term, "terms never go backwards"
        if term != self._term:
            self._term = term
            self._vote = 0  # the vote is cleared only when the term advances (raftos bug)
        self._lead = 0
        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._randomized_election_ticks = self._rng.randrange(
            self._cfg.election_ticks, 2 * self._cfg.election_ticks
        )
        self._abort_leader_transfer()
        self._votes = {}
        self._prs = {}
        self._pending_conf_index = 0
        self._uncommitted_bytes = 0
        self._read_only.reset()
        self._reads_waiting_commit.clear()

    def _become_follower(self, term: int, lead: NodeId) -> None:
        if self._role is Role.LEADER:
            # We were the live leader we "heard from"; that is over now.
            self._leader_contact_ticks = self._cfg.election_ticks
        self._reset(term)
        self._lead = lead
        self._role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        """Thesis §9.6: campaign without touching our term or vote."""
        assert self._role is not Role.LEADER
        self._reset(self._term)
        self._role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        assert self._role is not Role.LEADER
        self._reset(self._term + 1)
        self._vote = self._id
        self._role = Role.CANDIDATE

    def _become_leader(self) -> None:
        assert self._role is Role.CANDIDATE
        self._reset(self._term)
        self._lead = self._id
        self._role = Role.LEADER
        self._count("leader_terms")
        last = self.log.last_index()
        for nid in self._conf.members:
            self._prs[nid] = Progress(
                last + 1, self._cfg.max_inflight_msgs, is_learner=nid in self._conf.learners
            )
        own = self._prs.setdefault(
            self._id, Progress(last + 1, self._cfg.max_inflight_msgs, is_learner=False)
        )
        own.maybe_update(self.log.persisted)
        own.become_replicate()
        own.recent_active = True
        # Raft §8: a no-op of our own term lets earlier entries commit and reads start.
        noop = Entry(self._term, last + 1, EntryKind.NOOP)
        self.log.append([noop])
        # No membership change until everything up to our no-op is applied: this
        # covers any unapplied CONF_CHANGE in the log and the single-server-change
        # rule "commit an entry of your own term before a configuration change".
        self._pending_conf_index = noop.index
        self._bcast_append()

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if not self._promotable():
            return
        if pre_vote:
            self._become_pre_candidate()
            vote_term = self._term + 1
            self._count("pre_campaigns")
        else:
            self._become_candidate()
            vote_term = self._term
            self._count("campaigns")
        self._votes[self._id] = True
        if vote_result(self._conf.voters, self._votes) is VoteResult.WON:
            if pre_vote:
                self._campaign(pre_vote=False, transfer=transfer)
            else:
                self._become_leader()
            return
        for nid in sorted(self._conf.voters):
            if nid != self._id:
                self._send(
                    RequestVote(
                        term=vote_term,
                        src=self._id,
                        dst=nid,
                        last_log_index=self.log.last_index(),
                        last_log_term=self.log.last_term(),
                        pre_vote=pre_vote,
                        transfer=transfer,
                    )
                )

    # ------------------------------------------------------------------ step
    def step(self, msg: Message) -> None:
        """Feed one message from a peer. Bad, stale or misdirected input is dropped and counted."""
        self._count("messages_received")
        if not is_valid(msg):
            self._drop("dropped_invalid")
            return
        if msg.dst != self._id:
            self._drop("dropped_wrong_dst")
            return
        if msg.src == self._id or msg.src == 0:
            self._drop("dropped_invalid")
            return
        if isinstance(msg, _RESPONSES) and msg.src not in self._conf.members:
            # Only answers to what we sent are filtered by membership. Leader traffic and
            # vote requests are accepted from any sender: a node that missed a membership
            # change must still accept a leader that change admitted, or it can never
            # catch up (docs/sim-findings.md #1; etcd-raft does not filter either). A
            # candidate counts only the voters of its own configuration.
            self._drop("dropped_unknown_sender")
            return
        if msg.term > self._term:
            if isinstance(msg, RequestVote) and not msg.transfer and self._in_lease():
                # Leader stickiness: we heard from a live leader within the minimum
                # election timeout, so this candidate cannot be needed (etcd#9333).
                self._drop("dropped_in_lease")
                return
            if (isinstance(msg, RequestVote) and msg.pre_vote) or (
                isinstance(msg, RequestVoteResponse) and msg.pre_vote and msg.granted
            ):
                pass  # a pre-vote never changes our term (thesis §9.6)
            elif isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot):
                self._become_follower(msg.term, msg.src)
            else:
                self._become_follower(msg.term, 0)
        elif msg.term < self._term:
            self._step_lower_term(msg)
            return
        if isinstance(msg, RequestVote):
            self._handle_vote_request(msg)
        elif self._role is Role.LEADER:
            self._step_leader(msg)
        elif self._role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    def _in_lease(self) -> bool:
        return (
            self._cfg.check_quorum
            and self._lead != 0
            and self._leader_contact_ticks < self._cfg.election_ticks
        )

    def _step_lower_term(self, msg: Message) -> None:
        cfg = self._cfg
        if (cfg.check_quorum or cfg.pre_vote) and isinstance(msg, AppendEntries | Heartbeat):
            # A stale leader (or we bumped our term while cut off): tell it our term so it
            # steps down; reject_index 0 marks this as a term notice, not a log rejection.
            self._send(AppendEntriesResponse(self._term, self._id, msg.src, success=False))
        elif isinstance(msg, RequestVote) and msg.pre_vote:
            # etcd#8243: answer a lower-term pre-vote with our term, so a pre-candidate
            # whose log is ahead but term behind catches up its term and can still win.
            self._send(RequestVoteResponse(self._term, self._id, msg.src, False, pre_vote=True))
        else:
            self._drop("dropped_stale_term")

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self._vote == m.src
            or (self._vote == 0 and self._lead == 0)
            or (m.pre_vote and m.term > self._term)
        )
        if m.pre_vote and not m.transfer and self._leader_contact_ticks < self._cfg.election_ticks:
            can_vote = False  # thesis §9.6: we still hear from a leader
        if can_vote and self._is_log_up_to_date(m.last_log_term, m.last_log_index):
            # Granting never counts as hearing from a leader (hashicorp/raft#609):
            # _leader_contact_ticks is left alone.
            self._send(RequestVoteResponse(m.term, self._id, m.src, True, pre_vote=m.pre_vote))
            if not m.pre_vote:
                self._election_elapsed_ticks = 0
                self._vote = m.src
        else:
            self._send(RequestVoteResponse(self._term, self._id, m.src, False, pre_vote=m.pre_vote))

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            if self._lead not in (0, m.src):
                self._drop("dropped_invalid")  # two leaders in one term cannot happen
                return
            self._election_elapsed_ticks = 0
            self._leader_contact_ticks = 0
            self._lead = m.src
            if isinstance(m, AppendEntries):
                self._handle_append(m)
            elif isinstance(m, Heartbeat):
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow):
            if self._promotable() and m.src == self._lead:
                self._campaign(pre_vote=False, transfer=True)
            else:
                self._drop("dropped_unexpected")
        else:
            self._drop("dropped_unexpected")

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            self._become_follower(self._term, m.src)  # a leader of our term exists
            self._step_follower(m)
            return
        if not isinstance(m, RequestVoteResponse):
            self._drop("dropped_unexpected")
            return
        pre = self._role is Role.PRE_CANDIDATE
        if m.pre_vote != pre or (pre and m.granted and m.term != self._term + 1):
            self._drop("dropped_unexpected")
            return
        self._votes.setdefault(m.src, m.granted)
        result = vote_result(self._conf.voters, self._votes)
        if result is VoteResult.WON:
            if pre:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            self._become_follower(self._term, 0)

    def _step_leader(self, m: Message) -> None:
        pr = self._prs.get(m.src)
        if pr is None:
            self._drop("dropped_unknown_sender")
            return
        if isinstance(m, AppendEntriesResponse):
            pr.recent_active = True
            self._handle_append_response(m, pr)
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            self._handle_heartbeat_response(m, pr)
        elif isinstance(m, InstallSnapshotResponse):
            pr.recent_active = True
            self._handle_snapshot_response(m, pr)
        else:
            self._drop("dropped_unexpected")

    # ------------------------------------------------------------------ commit
    def _maybe_commit(self) -> bool:
        match = {nid: pr.match for nid, pr in self._prs.items()}
        index = committed_index(self._conf.voters, match)
        if index <= self.log.committed or not self._can_commit_at(index):
            return False
        old = self.log.committed
        self.log.commit_to(index)
        self._release_uncommitted(old, index)
        if self._reads_waiting_commit and self._committed_in_current_term():
            waiting = list(self._reads_waiting_commit)
            self._reads_waiting_commit.clear()
            for ctx in waiting:
                self._start_read(ctx)
        return True

    def _release_uncommitted(self, old: int, new: int) -> None:
        lo = max(old + 1, self.log.first_index())
        if lo > new:
            return
        freed = self.log.entries_size(lo, new + 1, self._term)
        self._uncommitted_bytes = max(0, self._uncommitted_bytes - freed)

    def _committed_in_current_term(self) -> bool:
        return self.log.term(self.log.committed) == self._term
