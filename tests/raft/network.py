"""A tiny synchronous harness for scripted Raft tests (like etcd's raft_test.go `network`).

N RaftCores, each driven exactly per the Ready contract: send `messages`,
persist entries + hard state into an in-memory "disk", send
`persisted_messages`, apply committed entries, advance. Messages sit in one
FIFO queue; `deliver()` runs until the cluster is quiet. Links can be cut
(one way or both), nodes isolated, crashed (losing nothing durable: the disk
here is synchronous) and restarted from their disk, or given a stalled disk
(the driver takes one Ready and never advances).

`check_safety()` asserts the invariants every test wants: at most one leader
per term, and no two nodes ever applied different entries at the same index.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hzp2p.raft.config import RaftConfig
from hzp2p.raft.core import RaftCore
from hzp2p.raft.membership import ConfChange
from hzp2p.raft.messages import Message
from hzp2p.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    NodeId,
    ReadState,
    Role,
    Snapshot,
)

MAX_DELIVERIES = 200_000

Filter = Callable[[Message], bool]


@dataclass
class Disk:
    """What survives a crash."""

    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    applied: list[Entry] = field(default_factory=list)  # applied since the snapshot
    snap_sm: list[bytes] = field(default_factory=list)  # state machine as of the snapshot

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.meta.index if self.snapshot else 0

    def write(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            base = self.snapshot.meta.index if self.snapshot else 0
            if e.index <= self.last_index():
                del self.entries[e.index - base - 1 :]
            assert e.index == self.last_index() + 1
            self.entries.append(e)


@dataclass
class Node:
    core: RaftCore | None
    config: RaftConfig
    conf0: ConfState
    disk: Disk
    stalled: bool = False
    read_states: list[ReadState] = field(default_factory=list)
    conf_changes: list[ConfChange] = field(default_factory=list)


class Network:
    def __init__(
        self,
        voters: Iterable[NodeId] = (1, 2, 3),
        learners: Iterable[NodeId] = (),
        *,
        seed: int = 0,
        disks: dict[NodeId, Disk] | None = None,
        core_cls: type[RaftCore] = RaftCore,
        **config: object,
    ) -> None:
        self.conf0 = ConfState(frozenset(voters), frozenset(learners))
        self.core_cls = core_cls
        self.rng = random.Random(seed)
        self.queue: deque[Message] = deque()
        self.cut_links: set[tuple[NodeId, NodeId]] = set()
        self.drop: Filter | None = None  # extra per-message drop rule
        self.duplicate = False  # deliver every message twice
        self.reorder = False  # deliver queued messages in a random order
        self.mutate: Callable[[Message], Message | None] | None = None  # rewrite or drop
        self.sent: list[Message] = []  # every message handed to the network, for assertions
        self.leaders_by_term: dict[int, NodeId] = {}
        self.applied_by_index: dict[int, Entry] = {}
        self.delivered = 0
        self.snapshots_installed = 0
        self.nodes: dict[NodeId, Node] = {}
        for nid in sorted(self.conf0.members):
            cfg = RaftConfig(node_id=nid, **config)  # type: ignore[arg-type]
            disk = (disks or {}).get(nid, Disk())
            self.nodes[nid] = Node(None, cfg, self.conf0, disk)
            self.start(nid)

    # ------------------------------------------------------------------ nodes
    def core(self, nid: NodeId) -> RaftCore:
        core = self.nodes[nid].core
        assert core is not None, f"node {nid} is down"
        return core

    def alive(self) -> list[NodeId]:
        return [nid for nid, n in sorted(self.nodes.items()) if n.core is not None]

    def start(self, nid: NodeId) -> None:
        node = self.nodes[nid]
        disk = node.disk
        conf = node.conf0 if disk.snapshot is None else disk.snapshot.meta.conf
        core = self.core_cls(
            node.config,
            random.Random(self.rng.random()),
            hard_state=disk.hard_state,
            conf=conf,
            entries=list(disk.entries),
            snapshot=disk.snapshot.meta if disk.snapshot else None,
            applied=disk.applied[-1].index if disk.applied else snap_index_of(disk),
        )
        snap_index = disk.snapshot.meta.index if disk.snapshot else 0
        for e in disk.applied:
            if e.kind is EntryKind.CONF_CHANGE and e.index > snap_index:
                core.apply_conf_change(ConfChange.decode(e.data))
        if disk.snapshot is not None:
            core.compact(disk.snapshot.meta.index, disk.snapshot.data)  # register the data
        node.core = core
        node.stalled = False

    def add_node(self, nid: NodeId, conf: ConfState, **config: object) -> None:
        cfg = RaftConfig(node_id=nid, **config)  # type: ignore[arg-type]
        self.nodes[nid] = Node(None, cfg, conf, Disk())
        self.start(nid)

    def crash(self, nid: NodeId) -> None:
        self.nodes[nid].core = None

    def restart(self, nid: NodeId) -> None:
        self.crash(nid)
        self.start(nid)

    def crash_mid_write(self, nid: NodeId) -> None:
        """Take the node's next Ready, let its `messages` leave (the contract allows that),
        then crash before the write is durable: nothing else of that Ready happens."""
        core = self.core(nid)
        if core.has_ready():
            self.queue.extend(core.ready().messages)
        self.crash(nid)

    def stall_disk(self, nid: NodeId) -> None:
        self.nodes[nid].stalled = True

    # ------------------------------------------------------------------ links
    def cut(self, a: NodeId, b: NodeId, *, one_way: bool = False) -> None:
        self.cut_links.add((a, b))
        if not one_way:
            self.cut_links.add((b, a))

    def isolate(self, nid: NodeId) -> None:
        for other in self.nodes:
            if other != nid:
                self.cut(nid, other)

    def heal(self) -> None:
        self.cut_links.clear()

    # ------------------------------------------------------------------ driving
    def process_ready(self, nid: NodeId) -> None:
        node = self.nodes[nid]
        core = node.core
        if core is None:
            return
        for _ in range(1000):
            if not core.has_ready():
                return
            rd = core.ready()
            self.queue.extend(rd.messages)
            if node.stalled:
                return  # the write never completes: no advance, nothing more leaves
            if rd.snapshot is not None:
                node.disk.snapshot = rd.snapshot
                node.disk.entries = []
                node.disk.applied = []
                node.disk.snap_sm = decode_sm(rd.snapshot.data)
                self.snapshots_installed += 1
            node.disk.write(rd.entries)
            if rd.hard_state is not None:
                node.disk.hard_state = rd.hard_state
            assert node.disk.hard_state.commit <= node.disk.last_index()
            self.queue.extend(rd.persisted_messages)
            for e in rd.committed_entries:
                assert e.index <= node.disk.last_index(), "applying a non-durable entry"
                self._record_apply(nid, e)
                node.disk.applied.append(e)
                if e.kind is EntryKind.CONF_CHANGE:
                    cc = ConfChange.decode(e.data)
                    node.conf_changes.append(cc)
                    core.apply_conf_change(cc)
            node.read_states.extend(rd.read_states)
            core.advance(rd)
            self._record_leader(core)

    def _record_apply(self, nid: NodeId, e: Entry) -> None:
        seen = self.applied_by_index.setdefault(e.index, e)
        assert seen == e, f"node {nid} applied {e} but another node applied {seen}"

    def _record_leader(self, core: RaftCore) -> None:
        if core.role is Role.LEADER:
            seen = self.leaders_by_term.setdefault(core.term, core.node_id)
            assert seen == core.node_id, f"two leaders in term {core.term}"

    def _deliverable(self, m: Message) -> bool:
        if (m.src, m.dst) in self.cut_links:
            return False
        if self.drop is not None and self.drop(m):
            return False
        node = self.nodes.get(m.dst)
        return node is not None and node.core is not None

    def deliver(self, max_messages: int = MAX_DELIVERIES, *, must_quiesce: bool = True) -> int:
        """Process Readys and deliver queued messages until the cluster is quiet."""
        n = 0
        for _ in range(max_messages):
            for nid in self.alive():
                self.process_ready(nid)
            if not self.queue:
                return n
            if self.reorder and len(self.queue) > 1:
                self.queue.rotate(-self.rng.randrange(len(self.queue)))
            m = self.queue.popleft()
            self.sent.append(m)
            if self.mutate is not None:
                m2 = self.mutate(m)
                if m2 is None:
                    continue
                m = m2
            if not self._deliverable(m):
                continue
            core = self.core(m.dst)
            core.step(m)
            if self.duplicate:
                core.step(m)
            n += 1
            self.delivered += 1
        if must_quiesce:
            raise AssertionError("network did not quiesce")
        return n

    def tick(self, n: int = 1, nodes: Iterable[NodeId] | None = None) -> None:
        ids = list(nodes) if nodes is not None else None
        for _ in range(n):
            for nid in ids if ids is not None else self.alive():
                if self.nodes[nid].core is not None:
                    self.core(nid).tick()
            self.deliver()

    def run_until(self, pred: Callable[[], bool], max_ticks: int = 500) -> int:
        """Tick every live node until `pred()`; returns the ticks it took."""
        self.deliver()
        for t in range(max_ticks):
            if pred():
                return t
            self.tick()
        raise AssertionError(f"condition not reached within {max_ticks} ticks")

    def elect(self, nid: NodeId, max_ticks: int = 100) -> None:
        """Let only `nid`'s clock run until it is leader (others never time out)."""
        self.deliver()
        for _ in range(max_ticks):
            if self.core(nid).role is Role.LEADER:
                self.deliver()
                return
            self.tick(nodes=[nid])
        raise AssertionError(f"node {nid} did not become leader")

    def leader(self) -> NodeId | None:
        leaders = [nid for nid in self.alive() if self.core(nid).role is Role.LEADER]
        if not leaders:
            return None
        return max(leaders, key=lambda nid: self.core(nid).term)

    def propose(self, nid: NodeId, data: bytes) -> int:
        index = self.core(nid).propose(data)
        self.deliver()
        return index

    def applied_data(self, nid: NodeId) -> list[bytes]:
        disk = self.nodes[nid].disk
        return disk.snap_sm + [e.data for e in disk.applied if e.kind is EntryKind.NORMAL]

    def compact(self, nid: NodeId) -> int:
        """Snapshot node `nid`'s state machine at its applied index and compact its log."""
        disk = self.nodes[nid].disk
        index = disk.applied[-1].index if disk.applied else snap_index_of(disk)
        data = encode_sm(self.applied_data(nid))
        meta = self.core(nid).compact(index, data)
        disk.snapshot = Snapshot(meta, data)
        disk.entries = [e for e in disk.entries if e.index > index]
        disk.snap_sm = self.applied_data(nid)
        disk.applied = []
        return index

    def check_safety(self) -> None:
        """Every pair of nodes' applied sequences agree by index (one leader/term is checked
        as Readys are processed)."""
        for node in self.nodes.values():
            for e in node.disk.applied:
                assert self.applied_by_index[e.index] == e


def snap_index_of(disk: Disk) -> int:
    return disk.snapshot.meta.index if disk.snapshot else 0


def encode_sm(items: list[bytes]) -> bytes:
    return json.dumps([x.hex() for x in items]).encode()


def decode_sm(data: bytes) -> list[bytes]:
    return [bytes.fromhex(x) for x in json.loads(data)]


def entries_of(*terms: int, start: int = 1) -> list[Entry]:
    """Entries with the given terms at consecutive indexes from `start`."""
    return [
        Entry(t, start + i, EntryKind.NORMAL, f"e{start + i}t{t}".encode())
        for i, t in enumerate(terms)
    ]


def disk_with(term: int, terms: Iterable[int], vote: NodeId = 0, commit: int = 0) -> Disk:
    return Disk(hard_state=HardState(term, vote, commit), entries=entries_of(*terms))


def new_core(
    nid: NodeId = 1,
    voters: Iterable[NodeId] = (1, 2, 3),
    *,
    disk: Disk | None = None,
    learners: Iterable[NodeId] = (),
    seed: int = 0,
    **config: object,
) -> RaftCore:
    """A lone core for unit tests (its peers are whatever messages the test feeds it)."""
    d = disk or Disk()
    return RaftCore(
        RaftConfig(node_id=nid, **config),  # type: ignore[arg-type]
        random.Random(seed),
        hard_state=d.hard_state,
        conf=ConfState(frozenset(voters), frozenset(learners)),
        entries=list(d.entries),
    )


@dataclass
class Drained:
    messages: list[Message] = field(default_factory=list)
    persisted_messages: list[Message] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    hard_states: list[HardState] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def all_messages(self) -> list[Message]:
        return self.messages + self.persisted_messages

    def of(self, kind: type[Message]) -> list[Message]:
        return [m for m in self.all_messages() if isinstance(m, kind)]


def drain(core: RaftCore, *, advance: bool = True) -> Drained:
    """Take every Ready (advancing each, as a driver with an instant disk would)."""
    out = Drained()
    for _ in range(100):
        if not core.has_ready():
            break
        rd = core.ready()
        out.messages.extend(rd.messages)
        out.persisted_messages.extend(rd.persisted_messages)
        out.entries.extend(rd.entries)
        out.committed.extend(rd.committed_entries)
        out.read_states.extend(rd.read_states)
        if rd.hard_state is not None:
            out.hard_states.append(rd.hard_state)
        if not advance:
            break
        core.advance(rd)
    return out
