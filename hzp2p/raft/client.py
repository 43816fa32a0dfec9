"""The client-facing calls of RaftCore: proposals, membership, ReadIndex, leader transfer.

A mixin so core.py stays about the protocol itself. Every call here either
raises a typed RaftError (NotLeader, ProposalDropped, ConfChangeInProgress) or
ValueError for a meaningless request, or queues its effect for the next Ready.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import repeat
from typing import TYPE_CHECKING

from hzp2p.raft.confchange import apply_to_conf, check_conf_change
from hzp2p.raft.config import RaftConfig
from hzp2p.raft.errors import ConfChangeInProgress, NotLeader, ProposalDropped
from hzp2p.raft.log import RaftLog
from hzp2p.raft.membership import ConfChange
from hzp2p.raft.messages import Message, TimeoutNow
from hzp2p.raft.progress import Progress
from hzp2p.raft.quorum import has_quorum
from hzp2p.raft.read_only import ReadOnly
from hzp2p.raft.types import ConfState, Entry, EntryKind, NodeId, ReadState, Role

MAX_PENDING_READS = 1024
_NORMAL = EntryKind.NORMAL
MAX_READ_CONTEXT_BYTES = 1024


class ClientMixin:
    _cfg: RaftConfig
    _id: NodeId
    _term: int
    _lead: NodeId
    _role: Role
    log: RaftLog
    _prs: dict[NodeId, Progress]
    _conf: ConfState
    _lead_transferee: NodeId
    _transfer_elapsed_ticks: int
    _pending_conf_index: int
    _uncommitted_bytes: int
    _read_only: ReadOnly
    _reads_waiting_commit: deque[bytes]
    _read_states: list[ReadState]

    if TYPE_CHECKING:  # provided by RaftCore

        def _send(self, msg: Message) -> None: ...

        def _count(self, name: str, n: int = 1) -> None: ...

        def _maybe_commit(self) -> bool: ...

        def _bcast_append(self) -> None: ...

        def _bcast_heartbeat(self, context: bytes) -> None: ...

        def _send_append(self, to: NodeId) -> bool: ...

        def _become_follower(self, term: int, lead: NodeId) -> None: ...

        def _promotable(self) -> bool: ...

        def _committed_in_current_term(self) -> bool: ...

    # ------------------------------------------------------------------ client API
    def _append_entry(self, kind: EntryKind, data: bytes) -> int:
        if self._role is not Role.LEADER:
            raise NotLeader(self._lead)
        if self._lead_transferee:
            self._count("proposals_dropped")
            raise ProposalDropped(f"leader transfer to node {self._lead_transferee} in progress")
        entry = Entry(self._term, self.log.last_index() + 1, kind, data)
        size = entry.size_bytes()
        if size > self._cfg.max_bytes_per_msg:
            self._count("proposals_dropped")
            raise ProposalDropped(
                f"entry of {size} bytes exceeds max_bytes_per_msg={self._cfg.max_bytes_per_msg}"
            )
        if self._uncommitted_bytes + size > self._cfg.max_uncommitted_bytes:
            self._count("proposals_dropped")
            raise ProposalDropped(
                f"{self._uncommitted_bytes} uncommitted bytes + {size} would exceed "
                f"max_uncommitted_bytes={self._cfg.max_uncommitted_bytes}; retry once entries commit"
            )
        self.log.append([entry])
        self._uncommitted_bytes += size
        self._bcast_append()
        return entry.index

    def propose(self, data: bytes) -> int:
        """Append `data` as a new entry; returns its index. Committed once it appears in
        `committed_entries` (at that index, with this term)."""
        return self._append_entry(EntryKind.NORMAL, bytes(data))

    def propose_many(self, datas: Sequence[bytes]) -> tuple[int, int]:
        """Append each of `datas` as a NORMAL entry, all or none; returns (first, last) index.

        Like `propose` called once per item, but the followers get one append for the
        lot instead of one per entry. The uncommitted-bytes bound counts the whole batch.
        """
        if self._role is not Role.LEADER:
            raise NotLeader(self._lead)
        if self._lead_transferee:
            self._count("proposals_dropped")
            raise ProposalDropped(f"leader transfer to node {self._lead_transferee} in progress")
        if not datas:
            raise ValueError("propose_many needs at least one entry")
        first = self.log.last_index() + 1
        n = len(datas)
        # No Python-level loop per entry: map() drives the constructor from C.
        blobs = [d if type(d) is bytes else bytes(d) for d in datas]
        lens = list(map(len, blobs))  # Entry.size_bytes = len(data) + 16
        if max(lens) + 16 > self._cfg.max_bytes_per_msg:
            self._count("proposals_dropped")
            raise ProposalDropped(
                f"an entry of {max(lens) + 16} bytes exceeds max_bytes_per_msg="
                f"{self._cfg.max_bytes_per_msg}"
            )
        total = sum(lens) + 16 * n
        if self._uncommitted_bytes + total > self._cfg.max_uncommitted_bytes:
            self._count("proposals_dropped")
            raise ProposalDropped(
                f"{self._uncommitted_bytes} uncommitted bytes + {total} would exceed "
                f"max_uncommitted_bytes={self._cfg.max_uncommitted_bytes}; retry once entries commit"
            )
        entries = list(
            map(Entry, repeat(self._term, n), range(first, first + n), repeat(_NORMAL, n), blobs)
        )
        self.log.append(entries)
        self._uncommitted_bytes += total
        self._bcast_append()
        return first, first + n - 1

    def propose_conf_change(self, change: ConfChange) -> int:
        if self._role is not Role.LEADER:
            raise NotLeader(self._lead)
        if self._pending_conf_index > self.log.applied:
            raise ConfChangeInProgress()
        check_conf_change(self._conf, change)
        index = self._append_entry(EntryKind.CONF_CHANGE, change.encode())
        self._pending_conf_index = index
        return index

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Put a committed CONF_CHANGE in force (idempotent: re-applying changes nothing)."""
        self._conf = apply_to_conf(self._conf, change)
        if self._role is Role.LEADER:
            self._sync_progress()
            if self._id not in self._conf.voters:
                self._become_follower(self._term, 0)  # a removed or demoted leader steps down
            else:
                if self._lead_transferee and self._lead_transferee not in self._conf.voters:
                    self._abort_leader_transfer()
                if self._maybe_commit():
                    self._bcast_append()
        elif self._role is not Role.FOLLOWER and not self._promotable():
            self._become_follower(self._term, 0)
        return self._conf

    def _sync_progress(self) -> None:
        members = self._conf.members
        for nid in list(self._prs):
            if nid not in members and nid != self._id:
                del self._prs[nid]
        added: list[NodeId] = []
        for nid in sorted(members):
            pr = self._prs.get(nid)
            if pr is None:
                pr = Progress(
                    self.log.last_index() + 1, self._cfg.max_inflight_msgs, is_learner=False
                )
                pr.recent_active = True  # give a new member one check-quorum period
                self._prs[nid] = pr
                added.append(nid)
            pr.is_learner = nid in self._conf.learners
        for nid in added:
            self._send_append(nid)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read (thesis §6.4); a ReadState with `context` comes in a
        later Ready. Duplicate contexts are ignored. Raises NotLeader on a non-leader and
        ProposalDropped when too many reads are pending."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._lead)
        if len(context) > MAX_READ_CONTEXT_BYTES:
            raise ValueError(f"read context over {MAX_READ_CONTEXT_BYTES} bytes")
        if self._read_only.contains(context) or context in self._reads_waiting_commit:
            return
        pending = len(self._read_only) + len(self._reads_waiting_commit) + len(self._read_states)
        if pending >= MAX_PENDING_READS:
            raise ProposalDropped(f"{MAX_PENDING_READS} reads already pending")
        if not self._committed_in_current_term():
            # A new leader does not know the latest commit until its no-op commits.
            self._reads_waiting_commit.append(context)
            return
        self._start_read(context)

    def _start_read(self, context: bytes) -> None:
        if self._conf.voters == frozenset({self._id}):
            self._read_states.append(ReadState(self.log.committed, context))
            return
        self._read_only.add(self.log.committed, context, self._id)
        self._bcast_heartbeat(context)

    def _recv_read_ack(self, src: NodeId, context: bytes) -> None:
        """A heartbeat response echoed a read's context: once a quorum of voters has, the
        read and every earlier one are confirmed."""
        acks = self._read_only.recv_ack(src, context)
        if acks is None or not has_quorum(self._conf.voters, acks):
            return
        for req in self._read_only.advance(context):
            self._read_states.append(ReadState(req.index, req.context))

    def transfer_leadership(self, target: NodeId) -> None:
        """Thesis §3.10: catch `target` up, then tell it to campaign at once (TimeoutNow).
        Proposals are refused meanwhile; the transfer aborts after an election timeout."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._lead)
        if target == self._id:
            raise ValueError("this node is already the leader")
        if target not in self._conf.voters:
            raise ValueError(f"node {target} is not a voter")
        if self._lead_transferee == target:
            return
        self._abort_leader_transfer()
        self._lead_transferee = target
        self._transfer_elapsed_ticks = 0
        if self._prs[target].match == self.log.last_index():
            self._send(TimeoutNow(self._term, self._id, target))
        else:
            self._send_append(target)

    def _abort_leader_transfer(self) -> None:
        self._lead_transferee = 0
        self._transfer_elapsed_ticks = 0
