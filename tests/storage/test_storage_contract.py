"""The shared contract suite: every test runs against the in-memory and the SQLite store."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storage_helpers import CHAIN, GENESIS, Harness

from hzp2p.raft.types import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from hzp2p.storage import (
    BlockRecord,
    ExecResult,
    InvalidOperation,
    LogCompacted,
    LogUnavailable,
    ReadyBatch,
    StateReader,
    SyncStorage,
    TxRecord,
)


def ents(lo: int, hi: int, term: int = 1, size: int = 10) -> list[Entry]:
    return [Entry(term, i, EntryKind.NORMAL, bytes([i % 256]) * size) for i in range(lo, hi + 1)]


def conf(*voters: int) -> ConfState:
    return ConfState(frozenset(voters))


def block(h: int, prev: bytes = b"", raft_index: int = 0) -> BlockRecord:
    return BlockRecord(h, b"H%d" % h, prev, raft_index, b"raw-%d" % h)


def txs(h: int, n: int, status: str = "applied") -> list[TxRecord]:
    return [TxRecord(b"T%d.%d" % (h, i), h, i, "epi.report", status, "") for i in range(n)]


def log_of(s: SyncStorage) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in s.entries(s.first_index(), s.last_index() + 1)]


# -- fresh store and Ready persistence -----------------------------------------


def test_fresh_store(harness: Harness) -> None:
    s = harness.store
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.hard_state() == HardState()
    assert s.applied_index() == 0 and s.tip() is None and s.snapshot() is None
    assert s.chain_id == CHAIN and s.genesis_hash == GENESIS
    init = s.load()
    assert init.entries == () and init.last_index == 0 and init.snapshot_meta is None
    assert s.integrity_check() == []


def test_save_ready_survives_restart(harness: Harness) -> None:
    s = harness.store
    s.save_ready(ents(1, 5), HardState(2, 1, 3))
    s = harness.reopen()
    init = s.load()
    assert init.hard_state == HardState(2, 1, 3)
    assert [e.index for e in init.entries] == [1, 2, 3, 4, 5]
    assert init.entries[2] == ents(3, 3)[0]
    assert s.term(5) == 1 and s.last_index() == 5
    assert s.integrity_check() == []


def test_entry_kinds_and_data_roundtrip(store: SyncStorage) -> None:
    es = [
        Entry(1, 1, EntryKind.NOOP, b""),
        Entry(1, 2, EntryKind.CONF_CHANGE, b"\x00\xff" * 50),
        Entry(2, 3, EntryKind.NORMAL, b"x"),
    ]
    store.save_ready(es)
    assert store.entries(1, 4) == es


def test_conflicting_suffix_is_truncated(harness: Harness) -> None:
    s = harness.store
    s.save_ready(ents(1, 6, term=1), HardState(1, 0, 2))
    s.save_ready(ents(4, 5, term=2))
    assert log_of(s) == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    s = harness.reopen()
    assert log_of(s) == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    assert s.term(5) == 2


def test_truncate_suffix_then_term_of_new_last(harness: Harness) -> None:
    s = harness.store
    s.save_ready([*ents(1, 2, term=1), *ents(3, 5, term=2)])
    s.truncate_suffix(3)
    assert (s.last_index(), s.term(2)) == (2, 1)
    s.append(ents(3, 3, term=3))
    assert s.term(3) == 3
    s = harness.reopen()
    assert log_of(s) == [(1, 1), (2, 1), (3, 3)]
    s.truncate_suffix(9)  # beyond the end: nothing to do
    assert s.last_index() == 3


def test_invalid_appends_are_refused(store: SyncStorage) -> None:
    store.save_ready(ents(1, 3, term=2), HardState(2, 0, 2))
    with pytest.raises(InvalidOperation, match="gap"):
        store.append(ents(5, 6, term=2))
    with pytest.raises(InvalidOperation, match="committed"):
        store.append(ents(2, 3, term=3))
    with pytest.raises(InvalidOperation, match="term"):
        store.append(ents(4, 4, term=1))
    with pytest.raises(InvalidOperation, match="contiguous"):
        store.append([Entry(2, 4), Entry(2, 6)])
    assert log_of(store) == [(1, 2), (2, 2), (3, 2)]


def test_hard_state_rules(store: SyncStorage) -> None:
    store.save_ready(ents(1, 3), HardState(3, 2, 1))
    with pytest.raises(InvalidOperation, match="vote"):
        store.save_ready(hard_state=HardState(3, 5, 1))
    with pytest.raises(InvalidOperation, match="term"):
        store.save_ready(hard_state=HardState(2, 0, 1))
    with pytest.raises(InvalidOperation, match="ahead of the durable log"):
        store.save_ready(hard_state=HardState(3, 2, 4))
    store.save_ready(hard_state=HardState(4, 0, 3))  # a new term clears the vote
    store.save_ready(hard_state=HardState(4, 7, 3))  # ... and a vote from 0 is fine
    assert store.hard_state() == HardState(4, 7, 3)


def test_failed_ready_changes_nothing(harness: Harness) -> None:
    s = harness.store
    s.save_ready(ents(1, 3), HardState(1, 1, 1))
    with pytest.raises(InvalidOperation):
        s.save_ready(ents(4, 6), HardState(1, 9, 1))  # entries fine, vote change is not
    assert s.last_index() == 3 and s.hard_state() == HardState(1, 1, 1)
    s = harness.reopen()
    assert s.last_index() == 3 and log_of(s)[-1] == (3, 1)
    s.save_ready(ents(4, 6), HardState(1, 1, 5))  # and the store is still usable
    assert s.last_index() == 6


def test_group_commit_and_its_atomicity(harness: Harness) -> None:
    s = harness.store
    s.save_batches(
        [
            ReadyBatch(ents(1, 3), HardState(1, 1, 0)),
            ReadyBatch(ents(4, 5), HardState(1, 1, 2)),
            ReadyBatch(ents(5, 6, term=2), HardState(2, 0, 3)),
        ]
    )
    assert log_of(s) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]
    assert s.hard_state() == HardState(2, 0, 3)
    with pytest.raises(InvalidOperation):
        s.save_batches([ReadyBatch(ents(7, 8, term=2)), ReadyBatch(ents(20, 21, term=2))])
    s = harness.reopen()
    assert s.last_index() == 6 and s.hard_state() == HardState(2, 0, 3)


# -- reads ---------------------------------------------------------------------


def test_entries_bounded_by_count_and_bytes(store: SyncStorage) -> None:
    store.save_ready(ents(1, 10, size=84))  # 100 bytes each with the 16-byte overhead
    assert len(store.entries(1, 11)) == 10
    assert [e.index for e in store.entries(3, 6)] == [3, 4, 5]
    assert [e.index for e in store.entries(1, 11, max_bytes=250)] == [1, 2]
    assert [e.index for e in store.entries(1, 11, max_bytes=300)] == [1, 2, 3]
    assert [e.index for e in store.entries(4, 11, max_bytes=1)] == [4]  # at least one
    assert store.entries(5, 5) == []
    with pytest.raises(LogUnavailable):
        store.entries(5, 12)
    with pytest.raises(LogUnavailable):
        store.term(11)


# -- snapshots and compaction --------------------------------------------------


def _commit_and_apply(s: SyncStorage, last: int, commit: int, term: int = 1) -> None:
    s.save_ready(ents(1, last, term=term), HardState(term, 1, commit))
    s.set_applied(commit, conf(1, 2, 3))


def test_compaction_needs_snapshot_and_keeps_boundary_term(harness: Harness) -> None:
    s = harness.store
    _commit_and_apply(s, 10, 8)
    with pytest.raises(InvalidOperation, match="snapshot"):
        s.compact(5)
    s.save_snapshot(Snapshot(SnapshotMeta(6, 1, conf(1, 2, 3)), b"state@6"))
    with pytest.raises(InvalidOperation):
        s.compact(7)
    s.compact(6)
    assert (s.first_index(), s.last_index(), s.term(6)) == (7, 10, 1)
    with pytest.raises(LogCompacted):
        s.term(5)
    with pytest.raises(LogCompacted):
        s.entries(6, 8)
    s.compact(3)  # already compacted: no-op
    s = harness.reopen()
    assert (s.first_index(), s.last_index(), s.term(6)) == (7, 10, 1)
    init = s.load()
    assert init.first_index == 7 and [e.index for e in init.entries] == [7, 8, 9, 10]
    assert init.snapshot_meta == SnapshotMeta(6, 1, conf(1, 2, 3))
    snap = s.snapshot()
    assert snap is not None and snap.data == b"state@6"
    with pytest.raises(InvalidOperation, match="older"):
        s.save_snapshot(Snapshot(SnapshotMeta(5, 1, conf(1)), b""))
    assert s.integrity_check() == []


def test_local_snapshot_must_not_pass_applied(store: SyncStorage) -> None:
    _commit_and_apply(store, 10, 4)
    with pytest.raises(InvalidOperation, match="applied"):
        store.save_snapshot(Snapshot(SnapshotMeta(6, 1, conf(1)), b""))
    with pytest.raises(InvalidOperation, match="term"):
        store.save_snapshot(Snapshot(SnapshotMeta(4, 9, conf(1)), b""))


def test_installed_snapshot_matching_log_keeps_suffix(harness: Harness) -> None:
    """Raft Fig. 13 rule 7 (hashicorp/raft#697): a matching entry keeps the log after it."""
    s = harness.store
    s.save_ready(ents(1, 10, term=2), HardState(2, 1, 3))
    snap = Snapshot(SnapshotMeta(7, 2, conf(4, 5)), b"leader-state")
    s.save_ready(hard_state=HardState(2, 1, 7), snapshot=snap)
    assert (s.first_index(), s.last_index(), s.term(7)) == (8, 10, 2)
    assert s.conf_state() == conf(4, 5)
    s = harness.reopen()
    assert log_of(s) == [(8, 2), (9, 2), (10, 2)] and s.conf_state() == conf(4, 5)


def test_installed_snapshot_not_matching_discards_log(harness: Harness) -> None:
    s = harness.store
    s.save_ready(ents(1, 5, term=1), HardState(1, 1, 2))
    snap = Snapshot(SnapshotMeta(20, 3, conf(1, 2)), b"far ahead")
    s.save_ready(ents(21, 22, term=3), HardState(3, 0, 21), snap)
    assert (s.first_index(), s.last_index(), s.term(20)) == (21, 22, 3)
    s = harness.reopen()
    assert log_of(s) == [(21, 3), (22, 3)] and s.hard_state() == HardState(3, 0, 21)
    with pytest.raises(InvalidOperation, match="older"):
        s.save_ready(snapshot=Snapshot(SnapshotMeta(10, 1, conf(1)), b""))
    assert s.applied_index() == 0  # the application reinstalls its state: install_state
    s.install_state([(b"a", b"1"), (b"b", b"2")], 20, conf(1, 2), (7, b"H7"))
    assert s.applied_index() == 20 and s.tip() == (7, b"H7") and s.get(b"b") == b"2"
    s.apply_block(block(8, b"H7", 21), txs(8, 1), {}, 21)
    assert s.tip() == (8, b"H8")


# -- blocks, verdicts and state ----------------------------------------------------


def _chain(s: SyncStorage, n: int) -> None:
    s.save_ready(ents(1, n + 1), HardState(1, 1, n + 1))
    prev = b""
    for h in range(n):
        writes: dict[bytes, bytes | None] = {b"k/%d" % h: b"v%d" % h, b"last": b"%d" % h}
        s.apply_block(block(h, prev, h + 1), txs(h, 3), writes, h + 1)
        prev = b"H%d" % h


def test_blocks_and_queries(harness: Harness) -> None:
    s = harness.store
    _chain(s, 5)
    s = harness.reopen()
    assert s.tip() == (4, b"H4") and s.applied_index() == 5
    assert s.block_by_height(2) == block(2, b"H1", 3)
    assert s.block_by_hash(b"H3") == block(3, b"H2", 4)
    assert s.block_by_height(9) is None and s.block_by_hash(b"nope") is None
    assert [b.height for b in s.blocks(1, 4)] == [1, 2, 3]
    assert s.tx(b"T3.2") == TxRecord(b"T3.2", 3, 2, "epi.report", "applied", "")
    assert s.tx(b"none") is None
    assert s.block_txs(1) == txs(1, 3)
    assert s.get(b"last") == b"4" and s.get(b"k/0") == b"v0"
    assert s.load().tip == (4, b"H4")
    assert s.integrity_check() == []


def test_block_chain_rules(store: SyncStorage) -> None:
    _chain(store, 2)
    with pytest.raises(InvalidOperation, match="follow"):
        store.apply_block(block(3, b"H1", 3), [], {}, 3)
    with pytest.raises(InvalidOperation, match="prev_hash"):
        store.apply_block(block(2, b"H0", 3), [], {}, 3)
    with pytest.raises(InvalidOperation, match="applied"):
        store.apply_block(block(2, b"H1", 1), [], {}, 1)
    with pytest.raises(InvalidOperation, match="commit"):
        store.apply_block(block(2, b"H1", 9), [], {}, 9)
    with pytest.raises(InvalidOperation, match="position"):
        store.apply_block(block(2, b"H1", 3), [*txs(2, 2), txs(2, 1)[0]], {}, 3)
    assert store.tip() == (1, b"H1") and store.block_by_height(2) is None


def test_tx_lookup_prefers_the_applied_verdict(store: SyncStorage) -> None:
    store.save_ready(ents(1, 3), HardState(1, 1, 3))
    dup = b"DUP"
    store.apply_block(block(0), [TxRecord(dup, 0, 0, "t", "applied")], {}, 1)
    store.apply_block(block(1, b"H0"), [TxRecord(dup, 1, 0, "t", "rejected", "replay")], {}, 2)
    got = store.tx(dup)
    assert got is not None and got.status == "applied" and got.height == 0
    store.apply_block(block(2, b"H1"), [TxRecord(b"R", 2, 0, "t", "rejected", "no")], {}, 3)
    got = store.tx(b"R")
    assert got is not None and (got.status, got.reason) == ("rejected", "no")


def test_state_writes_deletes_and_scan(store: SyncStorage) -> None:
    store.save_ready(ents(1, 2), HardState(1, 1, 2))
    w: dict[bytes, bytes | None] = {
        b"a/1": b"1",
        b"a/2": b"2",
        b"a\xff": b"ff",
        b"a\xff\xff/x": b"ffff",
        b"b": b"b",
        b"": b"empty-key",
    }
    store.apply_block(block(0), [], w, 1)
    assert list(store.scan(b"a/")) == [(b"a/1", b"1"), (b"a/2", b"2")]
    assert list(store.scan(b"a\xff")) == [(b"a\xff", b"ff"), (b"a\xff\xff/x", b"ffff")]
    assert [k for k, _ in store.scan(b"")] == sorted(w)
    assert list(store.scan(b"a", limit=2)) == [(b"a/1", b"1"), (b"a/2", b"2")]
    assert list(store.scan(b"zz")) == []
    store.apply_block(block(1, b"H0"), [], {b"a/1": None, b"b": b"B", b"nope": None}, 2)
    assert store.get(b"a/1") is None and store.get(b"b") == b"B"
    assert [k for k, _ in store.scan(b"a/")] == [b"a/2"]


def test_apply_block_with_reads_state_and_commits_atomically(harness: Harness) -> None:
    s = harness.store
    s.save_ready(ents(1, 3), HardState(1, 1, 3))
    s.apply_block(block(0), [], {b"n": b"1"}, 1)

    def executor(h: int) -> Callable[[StateReader], ExecResult]:
        def execute(r: StateReader) -> ExecResult:
            n = int(r.get(b"n") or b"0")
            assert list(r.scan(b"n")) == [(b"n", b"%d" % n)]
            return txs(h, 2), {b"n": b"%d" % (n + 1)}

        return execute

    out_txs, out_writes = s.apply_block_with(block(1, b"H0", 2), executor(1), 2)
    assert out_writes == {b"n": b"2"} and list(out_txs) == txs(1, 2)

    def boom(r: StateReader) -> ExecResult:
        assert r.get(b"n") == b"2"
        raise RuntimeError("engine bug")

    with pytest.raises(RuntimeError, match="engine bug"):
        s.apply_block_with(block(2, b"H1", 3), boom, 3)
    s = harness.reopen()
    assert s.tip() == (1, b"H1") and s.get(b"n") == b"2" and s.applied_index() == 2
    assert s.block_txs(1) == txs(1, 2)
    s.apply_block_with(block(2, b"H1", 3), executor(2), 3)  # still usable
    assert s.get(b"n") == b"3"


def test_set_applied_and_conf_state(harness: Harness) -> None:
    s = harness.store
    s.save_ready(ents(1, 4), HardState(1, 1, 3))
    s.set_applied(2)
    s.set_applied(3, conf(1, 2))
    with pytest.raises(InvalidOperation, match="commit"):
        s.set_applied(4)
    with pytest.raises(InvalidOperation, match="back"):
        s.set_applied(1)
    s = harness.reopen()
    assert s.applied_index() == 3 and s.conf_state() == conf(1, 2)
    assert s.load().conf_state == conf(1, 2)


def test_mixed_batches_truncated_and_compacted_inside_a_batch(harness: Harness) -> None:
    """A Ready's entries are stored together by SQLite (one row per batch): terms and kinds
    mixed inside a batch, a conflicting suffix and the compaction point both falling
    in the middle of one, and what survives a reopen."""
    s = harness.store
    kinds = [EntryKind.NOOP, EntryKind.NORMAL, EntryKind.CONF_CHANGE, EntryKind.NORMAL]
    first = [Entry(1 + i // 3, i, kinds[i % 4], b"d%d" % i * (i % 5)) for i in range(1, 11)]
    s.save_ready(first, HardState(4, 1, 3))  # terms 1,1,2,2,2,3,3,3,4,4
    s.save_ready(ents(11, 14, term=4), HardState(4, 1, 4))
    assert s.entries(1, 15) == [*first, *ents(11, 14, term=4)]
    assert [s.term(i) for i in (2, 3, 5, 6, 9, 10, 12)] == [1, 2, 2, 3, 4, 4, 4]
    assert s.entries(4, 7, max_bytes=1) == [first[3]]
    # A leader of term 5 overwrites from 8 (inside the first batch): 8..14 go.
    s.save_ready([Entry(5, 8, EntryKind.NORMAL, b"new8"), Entry(5, 9)], HardState(5, 0, 4))
    assert log_of(s) == [(i, 1 + i // 3) for i in range(1, 8)] + [(8, 5), (9, 5)]
    s.truncate_suffix(6)  # inside what is left of the first batch
    assert (s.last_index(), s.term(5)) == (5, 2)
    s.save_ready(ents(6, 12, term=5), HardState(5, 0, 9))
    s.set_applied(9)
    s.save_snapshot(Snapshot(SnapshotMeta(7, 5, conf(1)), b"s7"))
    s.compact(4)  # inside the first batch
    assert (s.first_index(), s.term(4), s.term(5)) == (5, 2, 2)
    with pytest.raises(LogCompacted):
        s.entries(4, 6)
    assert s.entries(5, 7) == [first[4], ents(6, 6, term=5)[0]]
    s = harness.reopen()
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 12, 2)
    assert [e.index for e in s.load().entries] == list(range(5, 13))
    assert s.entries(5, 6) == [first[4]] and s.entries(8, 13) == ents(8, 12, term=5)
    s.compact(7)  # inside the second batch
    s = harness.reopen()
    assert log_of(s) == [(i, 5) for i in range(8, 13)] and s.term(7) == 5
    assert s.integrity_check() == []


def test_apply_blocks_with_several_blocks_in_one_transaction(harness: Harness) -> None:
    s = harness.store
    s.save_ready(ents(1, 8), HardState(1, 1, 7))
    s.apply_block(block(0), [], {b"n": b"1"}, 1)
    seen: list[int] = []

    def executor(h: int) -> Callable[[StateReader], ExecResult]:
        def execute(r: StateReader) -> ExecResult:
            n = int(r.get(b"n") or b"0")
            seen.append(n)
            return txs(h, 2), {b"n": b"%d" % (n + 1), b"h/%d" % h: b"x"}

        return execute

    out = s.apply_blocks_with(
        [(block(1, b"H0", 2), executor(1), 2), (block(2, b"H1", 4), executor(2), 4)], 5
    )
    assert seen == [1, 2], "each block sees the state the one before it left"
    assert [dict(w) for _, w in out] == [{b"n": b"2", b"h/1": b"x"}, {b"n": b"3", b"h/2": b"x"}]
    assert s.tip() == (2, b"H2") and s.applied_index() == 5 and s.get(b"n") == b"3"

    def boom(r: StateReader) -> ExecResult:
        assert r.get(b"h/3") == b"x", "sees the first block of this call"
        raise RuntimeError("engine bug")

    refused: list[tuple[list[tuple[BlockRecord, Callable[[StateReader], ExecResult], int]],
                        int | None, type[Exception]]] = [
        ([(block(3, b"H2", 6), executor(3), 6), (block(4, b"H3", 7), boom, 7)], None,
         RuntimeError),
        ([(block(3, b"H2", 6), executor(3), 6), (block(4, b"H9", 7), executor(4), 7)], None,
         InvalidOperation),  # does not follow block 3
        ([(block(3, b"H2", 6), executor(3), 6)], 8, InvalidOperation),  # ahead of commit
        ([(block(3, b"H2", 6), executor(3), 6)], 5, InvalidOperation),  # goes back
    ]
    for jobs, applied, err in refused:
        with pytest.raises(err):
            s.apply_blocks_with(jobs, applied)
        assert s.tip() == (2, b"H2") and s.applied_index() == 5 and s.get(b"n") == b"3"
        assert s.block_by_height(3) is None and s.get(b"h/3") is None
    s = harness.reopen()
    assert s.tip() == (2, b"H2") and s.applied_index() == 5 and s.get(b"n") == b"3"
    assert s.block_txs(2) == txs(2, 2) and s.block_by_height(1) == block(1, b"H0", 2)
    assert s.apply_blocks_with([], 6) == [] and s.applied_index() == 6
    assert s.integrity_check() == []


def test_refusals_are_kept_answerable_bounded_and_survive_restart(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hzp2p.storage import Refusal, interfaces, memory, sqlite

    s = harness.store
    r1 = Refusal(b"\x01" * 32, "epi.report", "epi.report: value must be an integer",
                 (("value", "must be an integer"), ("", "missing field(s): period")), 5)
    s.record_refusals([r1])
    assert s.refusal(r1.tx_hash) == r1
    assert s.refusal(b"\x02" * 32) is None
    again = Refusal(r1.tx_hash, "epi.report", "later", (), 6)  # the same hash refused again
    s.record_refusals([again])
    assert s.refusal(r1.tx_hash) == again
    s = harness.reopen()
    assert s.refusal(r1.tx_hash) == again  # a restarted node still answers
    # bounded: the oldest go first
    for mod in (interfaces, memory, sqlite):
        monkeypatch.setattr(mod, "REFUSALS_KEPT", 3, raising=False)
    batch = [Refusal(bytes([i]) * 32, "t", "r", (), i) for i in range(10, 15)]
    s.record_refusals(batch)
    kept = [r.tx_hash[0] for r in batch if s.refusal(r.tx_hash) is not None]
    assert kept == [12, 13, 14]
    assert s.refusal(r1.tx_hash) is None
