"""Simulated clients: keep proposing, find the leader, retry, and record acknowledgements.

Owns the client side of exactly-once. Each client has at most one request
outstanding; every attempt is unique bytes (client, seq, attempt) while the
request id (client, seq) is shared by retries, so the state machine's session
table can apply a request once however many copies Raft commits. A request is
acknowledged when the node it was proposed to applies the very entry at the
index it was given (or a copy the session table maps to the first one). A
client retries on NotLeader (following the hint), on a dropped proposal, when
its node crashes, when another entry lands at its index, or after a timeout.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hzp2p.raft.errors import NotLeader, ProposalDropped
from hzp2p.raft.types import Entry, NodeId
from hzp2p.sim.checkers import Checkers, Violation
from hzp2p.sim.events import EventLoop
from hzp2p.sim.node import TICK_MS, SimNode
from hzp2p.sim.statemachine import ApplyOutcome, KVWorkload, Workload

CLIENT_TIMEOUT_MS = 40 * TICK_MS
"""Give up on an attempt after 4 maximum election timeouts and retry elsewhere."""
RETRY_MIN_MS, RETRY_MAX_MS = 2, 2 * TICK_MS
THINK_MAX_MS = TICK_MS
MAX_ATTEMPTS = 100_000
"""Bound on attempts per request (never reached in a sane run)."""


class Client:
    __slots__ = (
        "acked",
        "attempt",
        "busy",
        "client_id",
        "data",
        "index",
        "node",
        "seq",
        "started_ms",
        "target",
        "term",
        "token",
    )

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.seq = 0
        self.attempt = 0
        self.busy = False  # a request is outstanding
        self.data = b""
        self.target: NodeId = 0  # the node we believe leads, 0 = unknown
        self.node: NodeId = 0  # node holding the watched attempt, 0 = none
        self.index = 0
        self.term = 0  # the term the node told us our entry has
        self.started_ms = 0  # when the current request was first issued
        self.token = 0  # bumps whenever a new attempt is scheduled; voids stale timers
        self.acked = 0


class Reader:
    """Issues linearizable reads (ReadIndex) one at a time."""

    __slots__ = ("ctx", "must_see", "node", "reader_id", "seq", "target", "token")

    def __init__(self, reader_id: int) -> None:
        self.reader_id = reader_id
        self.seq = 0
        self.ctx = b""
        self.must_see = 0  # highest acknowledged write index when this read was issued
        self.target: NodeId = 0
        self.node: NodeId = 0  # node serving the read, 0 = none
        self.token = 0


class ClientPool:
    """All clients of a run; the simulation forwards apply notifications and crashes here."""

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        nodes: dict[NodeId, SimNode],
        checkers: Checkers,
        trace: Callable[..., None],
        count: int,
        readers: int = 1,
        workload: Workload | None = None,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.nodes = nodes
        self.checkers = checkers
        self.trace = trace
        self.workload: Workload = workload if workload is not None else KVWorkload()
        self.latencies_ms: list[int] = []  # request issued -> acknowledged, per acked request
        self.clients = [Client(i + 1) for i in range(count)]
        self.readers = [Reader(i + 1) for i in range(readers)]
        self._reads: dict[bytes, Reader] = {}
        self.reads_served = 0
        self.reads_abandoned = 0
        self.issuing = True
        self.acks = 0
        self.retries = 0

    def start(self) -> None:
        for c in self.clients:
            self.loop.after(self.rng.randrange(2 * TICK_MS), self._next, c)
        for r in self.readers:
            self.loop.after(self.rng.randrange(2 * TICK_MS), self._read_next, r)

    def stop_issuing(self) -> None:
        """New requests stop (liveness phase); outstanding ones keep retrying to completion."""
        self.issuing = False

    def outstanding(self) -> int:
        return sum(1 for c in self.clients if c.busy)

    # --- request lifecycle -----------------------------------------------------------

    def _next(self, c: Client) -> None:
        assert not c.busy
        if not self.issuing:
            return
        c.busy = True
        c.started_ms = self.loop.now_ms
        c.seq += 1
        c.attempt = 0
        self._schedule_attempt(c, 0)

    def _schedule_attempt(self, c: Client, delay_ms: int) -> None:
        self._unwatch(c)
        c.token += 1
        self.loop.after(delay_ms, self._attempt, c, c.token)

    def _retry_later(self, c: Client) -> None:
        self.retries += 1
        self._schedule_attempt(c, self.rng.randint(RETRY_MIN_MS, RETRY_MAX_MS))

    # --- reads ---------------------------------------------------------------------

    def _read_next(self, r: Reader) -> None:
        if not self.issuing:
            return
        r.seq += 1
        r.ctx = b"read:%d:%d" % (r.reader_id, r.seq)
        r.token += 1
        self._read_attempt(r, r.token)

    def _read_retry(self, r: Reader) -> None:
        self._reads.pop(r.ctx, None)
        r.node = 0
        r.token += 1
        self.loop.after(
            self.rng.randint(RETRY_MIN_MS, RETRY_MAX_MS), self._read_attempt, r, r.token
        )

    def _read_attempt(self, r: Reader, token: int) -> None:
        if token != r.token or not self.issuing:
            return
        node = self._pick_node(r)
        if node is None:
            self._read_retry(r)
            return
        r.must_see = self.checkers.apply.max_acked_index
        try:
            node.read_index(r.ctx)
        except NotLeader as exc:
            hint = exc.leader_id
            r.target = hint if hint in self.nodes and hint != node.node_id else 0
            self._read_retry(r)
            return
        except ProposalDropped:
            self._read_retry(r)
            return
        r.node = node.node_id
        self._reads[r.ctx] = r
        self.loop.after(CLIENT_TIMEOUT_MS, self._read_timeout, r, r.token)

    def _read_timeout(self, r: Reader, token: int) -> None:
        if token == r.token and r.node:
            self.reads_abandoned += 1
            self._reads.pop(r.ctx, None)
            r.node = 0
            r.target = 0
            self._read_next(r)

    def on_read_state(self, node_id: NodeId, read_index: int, ctx: bytes, applied: int) -> None:
        r = self._reads.get(ctx)
        if r is None or r.node != node_id:
            return  # a read we gave up on, or a stale duplicate
        del self._reads[ctx]
        self.checkers.apply.on_read(node_id, read_index, r.must_see, applied)
        self.reads_served += 1
        r.node = 0
        r.token += 1
        self.loop.after(self.rng.randint(0, THINK_MAX_MS), self._read_next, r)

    def _pick_node(self, c: Client | Reader) -> SimNode | None:
        live = [n for n in self.nodes.values() if n.up]
        if not live:
            return None
        node = self.nodes.get(c.target)
        if node is None or not node.up:
            node = live[self.rng.randrange(len(live))]
            c.target = node.node_id
        return node

    def _attempt(self, c: Client, token: int) -> None:
        if token != c.token:
            return
        assert c.busy and not c.node
        c.attempt += 1
        assert c.attempt <= MAX_ATTEMPTS, f"client {c.client_id}: request never committed"
        node = self._pick_node(c)
        if node is None:
            self._retry_later(c)
            return
        c.data = self.workload.request(c.client_id, c.seq, c.attempt, self.rng)
        try:
            index, term = node.propose(c.data)
        except NotLeader as exc:
            hint = exc.leader_id
            c.target = hint if hint in self.nodes and hint != node.node_id else 0
            self._retry_later(c)
            return
        except ProposalDropped:
            c.target = 0 if self.rng.random() < 0.5 else c.target
            self._retry_later(c)
            return
        if not node.up:  # proposing can only drain, never crash; keep the invariant explicit
            self._retry_later(c)
            return
        c.node = node.node_id
        c.index = index
        c.term = term
        node.watchers.setdefault(index, []).append(c)
        self.loop.after(CLIENT_TIMEOUT_MS, self._timeout, c, c.token)

    def _timeout(self, c: Client, token: int) -> None:
        if token == c.token and c.busy and c.node:
            self.trace("client-timeout", c.client_id, f"seq={c.seq} attempt={c.attempt}")
            c.target = 0
            self._retry_later(c)

    def _unwatch(self, c: Client) -> None:
        if c.node:
            node = self.nodes.get(c.node)
            if node is not None:
                waiting = node.watchers.get(c.index)
                if waiting is not None and c in waiting:
                    waiting.remove(c)
                    if not waiting:
                        del node.watchers[c.index]
            c.node = 0

    # --- notifications from nodes ---------------------------------------------------------

    def on_applied(self, node_id: NodeId, entry: Entry, outcome: ApplyOutcome | None) -> None:
        node = self.nodes[node_id]
        for c in node.watchers.pop(entry.index, []):
            c.node = 0
            if entry.data == c.data and outcome is not None:
                rid = outcome.request_id
                assert rid == (c.client_id, c.seq)
                if entry.term != c.term:
                    raise Violation(
                        "acknowledgement mismatch",
                        f"client {c.client_id} was told term {c.term} for index {entry.index}, "
                        f"but node {node_id} applied our entry there with term {entry.term}",
                    )
                self.checkers.apply.on_ack(c.client_id, rid, outcome.index)
                self.trace(
                    "ack", node_id, f"client={c.client_id} seq={c.seq} index={outcome.index}"
                )
                self.acks += 1
                self.latencies_ms.append(self.loop.now_ms - c.started_ms)
                c.acked += 1
                c.busy = False
                c.token += 1
                self.loop.after(self.rng.randint(0, THINK_MAX_MS), self._next, c)
            else:  # another entry took our index: this attempt is gone
                self._retry_later(c)

    def on_crash(self, node_id: NodeId) -> None:
        """The node's watchers are gone; its clients see the connection drop and retry."""
        for c in self.clients:
            if c.busy and c.node == node_id:
                c.node = 0
                c.target = 0
                self._retry_later(c)
        for r in self.readers:
            if r.node == node_id:
                r.target = 0
                self._read_retry(r)
