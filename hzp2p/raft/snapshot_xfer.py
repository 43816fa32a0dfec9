"""Snapshots: compaction on the driver's request, and chunked InstallSnapshot (Raft §7).

- `compact(index, data)`: the driver took a snapshot of its state machine at
  an applied index; the core drops the log up to it and keeps the data to
  send to followers that need entries before its first retained index.
- Leader: a follower in SNAPSHOT state gets the snapshot in chunks of
  `max_snapshot_chunk_bytes`, stop-and-wait: the next chunk goes only when an
  acknowledgement advances the follower's offset; a lost chunk is resent on
  the next heartbeat response; the follower's `next_offset` lets a broken
  transfer resume where it stopped (hashicorp/raft#212 loops).
- Follower: chunks are collected in order; on the last one, if our log
  already holds the snapshot's last entry (same index and term), we keep the
  suffix after it and just commit (Figure 13 rule 6/7, hashicorp/raft#697);
  otherwise the snapshot replaces the whole log and goes to the driver in
  `Ready.snapshot` (driver: replace stored log and state with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hzp2p.raft.config import RaftConfig
from hzp2p.raft.log import RaftLog
from hzp2p.raft.messages import InstallSnapshot, InstallSnapshotResponse, Message
from hzp2p.raft.progress import Progress, ProgressState
from hzp2p.raft.types import ConfState, EntryKind, NodeId, Snapshot, SnapshotMeta

MAX_SNAPSHOT_BYTES = 1 << 32
"""A follower refuses a snapshot transfer growing past this many bytes."""


@dataclass(slots=True)
class IncomingSnapshot:
    meta: SnapshotMeta
    src: NodeId
    buf: bytearray


class SnapshotMixin:
    _cfg: RaftConfig
    _id: NodeId
    _term: int
    log: RaftLog
    _prs: dict[NodeId, Progress]
    _conf: ConfState
    _snapshot: Snapshot | None
    _incoming_snapshot: IncomingSnapshot | None

    if TYPE_CHECKING:  # provided by RaftCore

        def _send(self, msg: Message) -> None: ...

        def _drop(self, reason: str) -> None: ...

        def _count(self, name: str, n: int = 1) -> None: ...

        def _maybe_commit(self) -> bool: ...

        def _bcast_append(self) -> None: ...

        def _send_append(self, to: NodeId) -> bool: ...

    # ---------------------------------------------------------------- driver side
    def compact(self, index: int, data: bytes, conf: ConfState | None = None) -> SnapshotMeta:
        """The driver snapshotted its state machine at applied `index`: drop the log up to
        it and keep `data` to send to lagging followers. `conf` is the membership at
        `index`; it may be omitted when no membership change was applied after `index`.
        Calling it with the current snapshot index (e.g. after a restart) only registers
        the data."""
        log = self.log
        if index > log.applied:
            raise ValueError(f"cannot compact to {index}: only {log.applied} applied")
        if index < log.snapshot_index:
            raise ValueError(
                f"cannot compact to {index}: already compacted to {log.snapshot_index}"
            )
        term = log.term(index)
        assert term is not None
        if conf is None:
            if index < log.applying and any(
                e.kind is EntryKind.CONF_CHANGE for e in log.slice(index + 1, log.applying + 1)
            ):
                raise ValueError("a membership change was applied after index; pass its conf")
            conf = self._conf
        meta = SnapshotMeta(index, term, conf)
        self._snapshot = Snapshot(meta, bytes(data))
        log.compact(meta)
        return meta

    # ---------------------------------------------------------------- leader side
    def _send_snapshot(self, to: NodeId, pr: Progress) -> bool:
        snap = self._snapshot
        if snap is None or snap.meta.index < self.log.snapshot_index:
            self._count("snapshot_unavailable")
            return False
        if not pr.recent_active:
            return False  # do not stream a snapshot into the void
        pr.become_snapshot(snap.meta.index)
        self._send_snapshot_chunk(to, pr)
        return True

    def _send_snapshot_chunk(self, to: NodeId, pr: Progress) -> None:
        snap = self._snapshot
        assert snap is not None and snap.meta.index == pr.pending_snapshot
        off = pr.snapshot_offset
        chunk = snap.data[off : off + self._cfg.max_snapshot_chunk_bytes]
        done = off + len(chunk) >= len(snap.data)
        self._send(InstallSnapshot(self._term, self._id, to, snap.meta, off, chunk, done))

    def _resend_snapshot_chunk(self, to: NodeId, pr: Progress) -> None:
        """Heartbeat-driven retry of a lost chunk (or restart with a newer snapshot)."""
        snap = self._snapshot
        if snap is None or snap.meta.index != pr.pending_snapshot:
            pr.become_probe()
            self._send_append(to)
            return
        self._send_snapshot_chunk(to, pr)

    def _handle_snapshot_response(self, m: InstallSnapshotResponse, pr: Progress) -> None:
        if m.match_index > self.log.last_index():
            self._drop("dropped_invalid")
            return
        if pr.state is not ProgressState.SNAPSHOT or m.snapshot_index != pr.pending_snapshot:
            if m.match_index and pr.maybe_update(m.match_index) and self._maybe_commit():
                self._bcast_append()
            return
        if m.rejected:
            pr.become_probe()
            self._send_append(m.src)
            return
        if m.match_index:
            pr.maybe_update(m.match_index)
            pr.become_probe()
            if self._maybe_commit():
                self._bcast_append()
            self._send_append(m.src)
            return
        snap = self._snapshot
        if snap is None or snap.meta.index != pr.pending_snapshot:
            pr.become_probe()  # we compacted further meanwhile: start over with the new one
            self._send_append(m.src)
            return
        offset = min(m.next_offset, len(snap.data))
        if offset == pr.snapshot_offset:
            return  # duplicate ack: the heartbeat-driven resend covers real losses
        pr.snapshot_offset = offset
        self._send_snapshot_chunk(m.src, pr)

    # ---------------------------------------------------------------- follower side
    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        log = self.log
        meta = m.meta

        def reply(next_offset: int, match_index: int = 0, rejected: bool = False) -> None:
            self._send(
                InstallSnapshotResponse(
                    self._term, self._id, m.src, meta.index, next_offset, match_index, rejected
                )
            )

        if meta.index <= log.committed:
            reply(0, match_index=log.committed)  # we have all of it already
            return
        inc = self._incoming_snapshot
        if m.offset == 0 and (inc is None or inc.meta != meta or inc.src != m.src):
            inc = self._incoming_snapshot = IncomingSnapshot(meta, m.src, bytearray())
        if inc is None or inc.meta != meta or inc.src != m.src:
            reply(0)  # not a transfer we know: restart it from the beginning
            return
        if m.offset != len(inc.buf):
            reply(len(inc.buf))  # out of order or duplicate: say where we are
            return
        if len(inc.buf) + len(m.data) > MAX_SNAPSHOT_BYTES:
            self._incoming_snapshot = None
            reply(0, rejected=True)
            return
        inc.buf += m.data
        if not m.done:
            reply(len(inc.buf))
            return
        self._incoming_snapshot = None
        if log.match_term(meta.index, meta.term):
            # Figure 13 rule 6: our log already holds the snapshot point; keep the suffix.
            log.commit_to(meta.index)
        else:
            log.restore(Snapshot(meta, bytes(inc.buf)))
            self._conf = meta.conf
        reply(len(inc.buf), match_index=meta.index)
