"""The Ready / advance contract between the pure Raft core and whoever drives it.

The core never does I/O. After `tick`, `step`, `propose`, ... the driver asks
`core.has_ready()`; if true it takes `ready = core.ready()`, handles it in
exactly this order, and then calls `core.advance(ready)`:

1. **Send `messages`** — these do not depend on anything in this Ready being
   durable. They are only ever the leader's replication traffic
   (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow): a leader may send
   appends to followers while writing its own copy (Raft thesis §10.2.1),
   because its own acknowledgement only counts once `advance` reports the
   write durable. The driver may start sending these before step 2 finishes.
2. **Persist, atomically and durably** (one transaction, one fsync):
   `snapshot` (if any; it replaces the log up to its index and the state
   machine), then `entries` (if the first entry's index is <= the last stored
   index, first truncate the stored log from that index: the core only ever
   does this for a conflicting suffix), then `hard_state` (if not None).
   Term, vote and the entries they cover go in the same transaction.
3. **Send `persisted_messages`** — only after step 2 is durable. These are
   every vote and pre-vote request and response, every AppendEntries /
   InstallSnapshot response, and anything else that asserts durable state
   (thesis §3.8). A node that crashes before step 2 completes has promised
   nothing.
4. **Apply `committed_entries`** in order. Each of them is durable in this
   node's own log once step 2 is done (the core never hands out an entry for
   applying that is not, so a one-node cluster never applies, nor acknowledges,
   an unsynced write — etcd#14370). CONF_CHANGE entries are passed back to
   `core.apply_conf_change`.
5. **Serve `read_states`** — a read with ReadState(index, ctx) may be answered
   once the local applied index is >= index.
6. **Call `core.advance(ready)`.** Until then `has_ready()` returns False; the
   core may keep accepting `step`/`tick`/`propose` meanwhile, and the next Ready
   holds only what changed since.

If the driver cannot persist (disk stalled or failing) it must not call
`advance`; a leader that cannot make its own entries durable then stops
counting itself and, via check-quorum over durable progress, steps down.
"""

from __future__ import annotations

from dataclasses import dataclass

from hzp2p.raft.messages import Message
from hzp2p.raft.types import Entry, HardState, ReadState, Snapshot, SoftState


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work the core hands to its driver (see the module docstring for the order)."""

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    persisted_messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]

    @property
    def must_sync(self) -> bool:
        """True when step 2 has anything to write (and so needs an fsync)."""
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None
