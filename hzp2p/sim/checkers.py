"""Safety checkers, fed incrementally after every step, and the failure report.

Owns the definition of "correct" for a run (Raft §5.2-5.4 and the client
contract): at most one leader per term; log matching; a committed entry never
changes or disappears; durable commit never runs ahead of the durable log nor
backwards; every node applies the same sequence, contiguously and only durable
entries; a request is applied at most once per node and at one index
cluster-wide; an acknowledged request is never lost, duplicated or reordered.
Each checker is fed events (`on_leader`, `on_persist`, `on_apply`, `on_ack`),
so tests can also feed it synthetic histories. A broken property raises
`Violation`; the simulation wraps it into `SimulationFailure`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from hzp2p.raft.ready import Ready
from hzp2p.raft.types import Entry, NodeId
from hzp2p.sim.statemachine import ApplyOutcome, RequestId
from hzp2p.sim.store import DurableStore

_ENTRY_HDR = struct.Struct(">QQB")


class Violation(Exception):
    """A safety or liveness property does not hold."""

    def __init__(self, prop: str, detail: str) -> None:
        self.prop = prop
        self.detail = detail
        super().__init__(f"{prop}: {detail}")


@dataclass
class SimulationFailure(Exception):
    """A failing run: which seed, which property, what happened last, how to replay it."""

    seed: int
    voters: int
    prop: str
    detail: str
    replay: str
    time_ms: int = 0
    trace_tail: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__init__(self.prop, self.detail)

    def __str__(self) -> str:
        lines = [
            f"SIMULATION FAILURE seed={self.seed} voters={self.voters} at t={self.time_ms}ms",
            f"  violated: {self.prop}",
            f"  detail:   {self.detail}",
            f"  replay:   {self.replay}",
        ]
        if self.trace_tail:
            lines.append("  trace tail (oldest first):")
            lines.extend(f"    {t}" for t in self.trace_tail)
        return "\n".join(lines)


def _chain(prev: bytes, e: Entry) -> bytes:
    """Digest of a log prefix ending in `e`, given the digest of the prefix before it."""
    h = hashlib.blake2b(prev, digest_size=16)
    h.update(_ENTRY_HDR.pack(e.index, e.term, int(e.kind)))
    h.update(e.data)
    return h.digest()


_GENESIS = b"\0" * 16


class ElectionSafety:
    """Raft §5.2: at most one leader per term (the first leader seen for a term is recorded)."""

    def __init__(self) -> None:
        self.leader_of_term: dict[int, NodeId] = {}

    def on_leader(self, node: NodeId, term: int) -> None:
        first = self.leader_of_term.setdefault(term, node)
        if first != node:
            raise Violation(
                "election safety", f"two leaders in term {term}: node {first} and node {node}"
            )

    @property
    def elections(self) -> int:
        return len(self.leader_of_term)


class LogSafety:
    """Log matching (§5.3) on durable logs, and the canonical committed sequence (§5.4)."""

    def __init__(self) -> None:
        self.committed: dict[int, Entry] = {}
        self.committed_max = 0
        self._chain_at: dict[tuple[int, int], bytes] = {}  # (index, term) -> prefix digest
        self._node_chain: dict[NodeId, list[bytes] | None] = {}  # aligned with store.entries
        self._node_base: dict[NodeId, bytes] = {}
        self._durable_commit: dict[NodeId, int] = {}
        self._canon_digest: list[bytes] = [_GENESIS]  # digest of committed prefix 1..i

    def register(self, node: NodeId, store: DurableStore) -> None:
        assert store.snapshot is None and not store.entries, "nodes start with an empty log"
        self._node_chain[node] = []
        self._node_base[node] = _GENESIS
        self._durable_commit[node] = store.hard_state.commit

    def commit(self, node: NodeId, e: Entry, how: str) -> None:
        """Record that `e` is committed (as observed on `node`); it must agree with history."""
        c = self.committed.get(e.index)
        if c is None:
            self.committed[e.index] = e
            if e.index > self.committed_max:
                self.committed_max = e.index
            canon = self._canon_digest
            while len(canon) in self.committed:
                canon.append(_chain(canon[-1], self.committed[len(canon)]))
        elif c != e:
            raise Violation(
                "committed entry changed",
                f"node {node} {how} {_fmt(e)} but {_fmt(c)} was committed at index {e.index}",
            )

    def on_persist(
        self, node: NodeId, store: DurableStore, removed: Sequence[Entry], ready: Ready
    ) -> None:
        """Called right after `store.persist(ready)` removed `removed`."""
        old_commit = self._durable_commit[node]
        for e in removed:
            if e.index <= old_commit:
                raise Violation(
                    "committed entry lost",
                    f"node {node} truncated {_fmt(e)} at or below its durable commit {old_commit}",
                )
            c = self.committed.get(e.index)
            if c is not None and c == e:
                raise Violation(
                    "committed entry lost", f"node {node} truncated committed entry {_fmt(e)}"
                )
        chain = self._node_chain[node]
        if ready.snapshot is not None:
            si = ready.snapshot.meta.index
            self.check_snapshot_point(node, si, ready.snapshot.meta.term)
            if ready.snapshot.meta.index < len(self._canon_digest):
                self._node_base[node] = self._canon_digest[si]
                chain = []
            else:
                chain = None  # cannot anchor this log; skip log matching for it
            if chain is not None and store.entries:
                prev = self._node_base[node]
                for e in store.entries:
                    prev = _chain(prev, e)
                    chain.append(prev)
            self._node_chain[node] = chain
        if ready.entries and chain is not None:
            first = ready.entries[0].index
            k = first - store.first_index
            assert 0 <= k <= len(chain)
            del chain[k:]
            prev = chain[-1] if chain else self._node_base[node]
            chain_at = self._chain_at
            for e in ready.entries:
                prev = _chain(prev, e)
                key = (e.index, e.term)
                seen = chain_at.setdefault(key, prev)
                if seen != prev:
                    raise Violation(
                        "log matching",
                        f"node {node} holds {_fmt(e)} but another node's entry with the same "
                        "index and term has a different log before it (or differs itself)",
                    )
                chain.append(prev)
            assert len(chain) == len(store.entries)
        new_commit = store.hard_state.commit
        if new_commit < old_commit:
            raise Violation(
                "durable commit went backwards",
                f"node {node} persisted commit {new_commit} < {old_commit}",
            )
        if new_commit > store.last_index:
            raise Violation(
                "commit ahead of durable log",
                f"node {node} persisted commit {new_commit} but its durable log ends at "
                f"{store.last_index}",
            )
        for j in range(max(old_commit, store.first_index - 1) + 1, new_commit + 1):
            ej = store.entry(j)
            assert ej is not None
            self.commit(node, ej, "durably committed")
        self._durable_commit[node] = new_commit

    def on_compact(self, node: NodeId, dropped: int) -> None:
        """The node's store dropped its first `dropped` entries into a snapshot."""
        chain = self._node_chain[node]
        if chain is not None and dropped > 0:
            self._node_base[node] = chain[dropped - 1]
            del chain[:dropped]

    def check_snapshot_point(self, node: NodeId, index: int, term: int) -> None:
        """A snapshot taken or installed at (index, term) must sit on the committed log."""
        c = self.committed.get(index)
        if c is not None and c.term != term:
            raise Violation(
                "snapshot disagrees with the committed log",
                f"node {node} holds a snapshot at index {index} term {term}, but "
                f"{_fmt(c)} was committed there",
            )

    def check_leader_completeness(self, node: NodeId, term: int, store: DurableStore) -> None:
        """Raft §5.4.1: a new leader's log holds every entry committed before its term.

        Called when `node` is seen leading. Its durable log is then all of its log
        that predates the election (the vote requests left only after the campaign's
        persist), so an entry there that differs from a committed one is a violation.
        """
        upto = min(store.last_index, self.committed_max)
        committed = self.committed
        for i in range(store.first_index, upto + 1):
            c = committed.get(i)
            if c is not None:
                e = store.entries[i - store.first_index]
                if e != c:
                    raise Violation(
                        "leader completeness",
                        f"node {node} leads term {term} but holds {_fmt(e)} where "
                        f"{_fmt(c)} was committed",
                    )

    def committed_digest(self) -> bytes:
        """Digest of the contiguous committed prefix (for history fingerprints)."""
        return self._canon_digest[-1]


class ApplySafety:
    """Same apply sequence everywhere; exactly-once requests; acknowledged writes kept in order."""

    def __init__(self, log: LogSafety) -> None:
        self.log = log
        self.next_index: dict[NodeId, int] = {}
        self.node_requests: dict[NodeId, set[RequestId]] = {}
        self.first_applied: dict[RequestId, int] = {}
        self.acked: dict[RequestId, int] = {}
        self.acked_at: dict[int, RequestId] = {}
        self._client_last: dict[int, tuple[int, int]] = {}  # client -> (seq, index) last acked
        self.max_acked_index = 0

    def on_restart(self, node: NodeId, applied_base: int) -> None:
        """A (re)started node's state machine holds exactly what is below `applied_base`."""
        self.next_index[node] = applied_base + 1
        self.node_requests[node] = {r for r, i in self.first_applied.items() if i <= applied_base}

    def on_apply(
        self, node: NodeId, entry: Entry, outcome: ApplyOutcome | None, store: DurableStore | None
    ) -> None:
        expected = self.next_index.get(node, 1)
        if entry.index != expected:
            raise Violation(
                "apply order",
                f"node {node} applied index {entry.index}, expected {expected}",
            )
        self.next_index[node] = expected + 1
        if (
            store is not None
            and entry.index > store.applied_base
            and store.entry(entry.index) != entry
        ):
            raise Violation(
                "applied a non-durable entry",
                f"node {node} applied {_fmt(entry)} not in its durable log (etcd#14370)",
            )
        self.log.commit(node, entry, "applied")
        if outcome is not None:
            rid = outcome.request_id
            reqs = self.node_requests.setdefault(node, set())
            if not outcome.duplicate:
                if rid in reqs:
                    raise Violation(
                        "request applied twice",
                        f"node {node} applied request {rid} again at index {entry.index}",
                    )
                reqs.add(rid)
                first = self.first_applied.setdefault(rid, entry.index)
                if first != entry.index:
                    raise Violation(
                        "request applied at different indices",
                        f"request {rid}: index {first} elsewhere, {entry.index} on node {node}",
                    )
            elif rid not in reqs or self.first_applied.get(rid) != outcome.index:
                raise Violation(
                    "bad duplicate",
                    f"node {node} treated request {rid} at {entry.index} as a duplicate of "
                    f"index {outcome.index}, which it never applied",
                )
        acked = self.acked_at.get(entry.index)
        if acked is not None and (
            outcome is None or outcome.duplicate or outcome.request_id != acked
        ):
            raise Violation(
                "acknowledged write lost",
                f"request {acked} was acknowledged at index {entry.index}, "
                f"but node {node} applied {_fmt(entry)} there",
            )

    def on_ack(self, client: int, rid: RequestId, index: int) -> None:
        first = self.first_applied.get(rid)
        if first != index:
            raise Violation(
                "acknowledgement mismatch",
                f"client {client} was told request {rid} applied at {index}, "
                f"but it was first applied at {first}",
            )
        prev = self.acked.setdefault(rid, index)
        if prev != index:
            raise Violation(
                "acknowledgement mismatch", f"request {rid} acked at {prev} and {index}"
            )
        last = self._client_last.get(client)
        if last is not None and (rid[1] <= last[0] or index <= last[1]):
            raise Violation(
                "acknowledged writes reordered",
                f"client {client}: request {rid} acked at index {index} after seq {last[0]} "
                f"at index {last[1]}",
            )
        self._client_last[client] = (rid[1], index)
        self.acked_at[index] = rid
        self.max_acked_index = max(self.max_acked_index, index)

    def on_read(self, node: NodeId, read_index: int, must_see: int, applied: int) -> None:
        """A linearizable read served at `read_index` must reflect every write acknowledged
        before it was issued (index <= `must_see`), and be served only once applied."""
        if read_index < must_see:
            raise Violation(
                "stale read",
                f"node {node} served a read at index {read_index}, but a write at index "
                f"{must_see} was acknowledged before the read was issued (etcd#741)",
            )
        if applied < read_index:
            raise Violation(
                "stale read",
                f"node {node} served a read at index {read_index} with only {applied} applied",
            )

    def check_all_acked_applied(self, nodes: Sequence[NodeId]) -> None:
        """End of run: every acknowledged request is applied on every listed node."""
        for node in nodes:
            reqs = self.node_requests.get(node, set())
            missing = [r for r in self.acked if r not in reqs]
            if missing:
                raise Violation(
                    "acknowledged write lost",
                    f"node {node} never applied acknowledged request(s) {sorted(missing)[:5]}",
                )


class CertificateSafety:
    """Quorum certificates (issue 19), fed every block a node applies: never two certificates
    for different blocks at one height; once faults stop, every committed block that carried
    transactions is certified within K blocks (`check_certified`). Fed primitive values (block
    heights, hashes, and the (height, block hash) each carried certificate names), so the
    daemon tests and synthetic histories use it alike."""

    def __init__(self) -> None:
        self.certified: dict[int, bytes] = {}  # height -> the block hash certified there
        self.first_at: dict[int, int] = {}  # height -> height of the first block carrying it
        self.blocks: dict[int, tuple[bytes, int]] = {}  # height -> (block hash, tx count)

    def on_block(
        self, node: NodeId, height: int, block_hash: bytes, tx_count: int,
        certs: Sequence[tuple[int, bytes]],
    ) -> None:
        self.blocks.setdefault(height, (block_hash, tx_count))
        for h, bh in certs:
            prev = self.certified.setdefault(h, bh)
            if prev != bh:
                raise Violation(
                    "two certificates at one height",
                    f"node {node} applied block {height} carrying a certificate for block "
                    f"{bh.hex()[:16]} at height {h}, but {prev.hex()[:16]} was certified there",
                )
            self.first_at.setdefault(h, height)

    def check_certified(self, tip: int, k: int, since: int = 0) -> None:
        """Every block above `since` with transactions and K or more blocks below `tip`."""
        for h, (_, n) in sorted(self.blocks.items()):
            if n and since < h and tip - h >= k and h not in self.first_at:
                raise Violation("block not certified",
                                f"block {h} has no certificate {tip - h} blocks later")

    def max_lag(self) -> int:
        return max((c - h for h, c in self.first_at.items()), default=0)


class Checkers:
    """All checkers of one run, sharing the canonical committed sequence."""

    def __init__(self) -> None:
        self.election = ElectionSafety()
        self.log = LogSafety()
        self.apply = ApplySafety(self.log)


def _fmt(e: Entry) -> str:
    return f"entry(index={e.index}, term={e.term}, kind={e.kind.name}, data={e.data[:24]!r})"
