"""Property-based tests: random append / truncate / commit / snapshot / compact / install /
read sequences, run against a trivial list model and both store implementations."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import CHAIN, GENESIS

from hzp2p.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from hzp2p.storage import (
    BlockRecord,
    InvalidOperation,
    LogUnavailable,
    MemoryStorage,
    OpenOptions,
    SqliteStorage,
    StorageError,
    SyncStorage,
)

SCALE = int(os.environ.get("HZP2P_PROP_SCALE", "1"))  # more examples on demand
Action = Callable[[SyncStorage], object]
CONF = ConfState(frozenset({1, 2, 3}))


def entry(index: int, term: int) -> Entry:
    return Entry(term, index, data=b"%d:%d" % (index, term) * (index % 4))


class Model:
    """The log as a plain list of terms; log[k] is the term of index start + 1 + k."""

    def __init__(self) -> None:
        self.start = 0
        self.start_term = 0
        self.log: list[int] = []
        self.commit = 0
        self.hs_term = 0
        self.applied = 0
        self.snap = 0

    @property
    def first(self) -> int:
        return self.start + 1

    @property
    def last(self) -> int:
        return self.start + len(self.log)

    def term(self, i: int) -> int:
        return self.start_term if i == self.start else self.log[i - self.start - 1]

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return [entry(i, self.term(i)) for i in range(lo, hi)]

    # Each step returns (action on a store, expected error type or None) and, when no error
    # is expected, updates the model.

    def append(self, off: int, n: int, bump: int) -> tuple[Action, type[Exception] | None]:
        e0 = self.first + min(off, len(self.log))
        t = self.term(e0 - 1) + bump
        es = [entry(i, t) for i in range(e0, e0 + n)]
        if e0 <= self.last and e0 <= self.commit:
            return (lambda s: s.append(es)), InvalidOperation
        del self.log[e0 - self.first :]
        self.log += [t] * n
        self.hs_term = max(self.hs_term, t)
        return (lambda s: s.append(es)), None

    def gap(self) -> tuple[Action, type[Exception] | None]:
        es = [entry(self.last + 2, self.hs_term + 1)]
        return (lambda s: s.append(es)), InvalidOperation

    def truncate(self, off: int) -> tuple[Action, type[Exception] | None]:
        idx = self.first + off
        if idx <= self.last and idx <= self.commit:
            return (lambda s: s.truncate_suffix(idx)), InvalidOperation
        del self.log[idx - self.first :]
        return (lambda s: s.truncate_suffix(idx)), None

    def set_commit(self, off: int) -> tuple[Action, type[Exception] | None]:
        c = min(self.commit + off, max(self.last, self.snap))
        self.commit = c
        hs = HardState(self.hs_term, 0, c)
        return (lambda s: s.save_ready(hard_state=hs)), None

    def snapshot(self, off: int) -> tuple[Action, type[Exception] | None]:
        self.applied = self.commit
        idx = min(self.snap + off, self.applied)
        snap = Snapshot(SnapshotMeta(idx, self.term(idx), CONF), b"s%d" % idx)
        applied = self.applied
        self.snap = idx

        def act(s: SyncStorage) -> None:
            s.set_applied(applied)
            s.save_snapshot(snap)

        return act, None

    def compact(self, off: int) -> tuple[Action, type[Exception] | None]:
        idx = self.start + off
        if idx <= self.start:
            return (lambda s: s.compact(idx)), None
        if idx > self.last:
            return (lambda s: s.compact(idx)), LogUnavailable
        if idx > self.snap:
            return (lambda s: s.compact(idx)), InvalidOperation
        self.start_term = self.term(idx)
        del self.log[: idx - self.start]
        self.start = idx
        return (lambda s: s.compact(idx)), None

    def install(self, match: bool, off: int, bump: int) -> tuple[Action, type[Exception] | None]:
        if match and self.log:
            idx = self.first + off % len(self.log)
            t = self.term(idx)
            if idx < self.snap:
                snap = Snapshot(SnapshotMeta(idx, t, CONF), b"")
                return (lambda s: s.save_ready(snapshot=snap)), InvalidOperation
            del self.log[: idx - self.start]
        else:
            idx = max(self.last, self.snap) + 1 + off
            t = self.hs_term + bump
            self.log = []
        self.start, self.start_term, self.snap = idx, t, idx
        self.hs_term = max(self.hs_term, t)
        self.commit = max(self.commit, idx)
        snap = Snapshot(SnapshotMeta(idx, t, CONF), b"leader")
        hs = HardState(self.hs_term, 0, self.commit)
        return (lambda s: s.save_ready(hard_state=hs, snapshot=snap)), None


small = st.integers(0, 6)
OPS = st.one_of(
    st.tuples(st.just("append"), small, st.integers(1, 5), st.integers(0, 2)),
    st.tuples(st.just("gap")),
    st.tuples(st.just("truncate"), small),
    st.tuples(st.just("commit"), small),
    st.tuples(st.just("snapshot"), small),
    st.tuples(st.just("compact"), small),
    st.tuples(st.just("install"), st.booleans(), small, st.integers(0, 2)),
    st.tuples(st.just("read"), small, small, st.sampled_from([None, 1, 30, 100])),
)


def check_same(m: Model, s: SyncStorage) -> None:
    assert (s.first_index(), s.last_index()) == (m.first, m.last)
    assert [s.term(i) for i in range(m.start, m.last + 1)] == [
        m.term(i) for i in range(m.start, m.last + 1)
    ]
    assert s.entries(m.first, m.last + 1) == m.entries(m.first, m.last + 1)
    assert s.hard_state().commit == m.commit


def run(ops: list[tuple[object, ...]], s: SyncStorage) -> Model:
    m = Model()
    for op in ops:
        name, args = op[0], op[1:]
        if name == "read":
            lo_off, n, max_bytes = args
            assert isinstance(lo_off, int) and isinstance(n, int)
            assert max_bytes is None or isinstance(max_bytes, int)
            lo = m.first + min(lo_off, len(m.log))
            hi = min(lo + n, m.last + 1)
            want = m.entries(lo, hi)
            if max_bytes is not None:
                size, k = 0, 0
                for k, e in enumerate(want):
                    size += e.size_bytes()
                    if k > 0 and size > max_bytes:
                        break
                else:
                    k = len(want)
                want = want[:k] if k else want[:1]
            assert s.entries(lo, hi, max_bytes) == want
            continue
        step = getattr(m, {"commit": "set_commit"}.get(str(name), str(name)))
        action, error = step(*args)
        if error is None:
            action(s)
        else:
            with pytest.raises(error):
                action(s)
        check_same(m, s)
    return m


@settings(max_examples=400 * SCALE)
@given(st.lists(OPS, max_size=40))
def test_memory_log_matches_model(ops: list[tuple[object, ...]]) -> None:
    s = MemoryStorage(CHAIN, GENESIS)
    run(ops, s)
    assert s.integrity_check() == []


@settings(max_examples=200 * SCALE)
@given(st.lists(OPS, max_size=40))
def test_sqlite_log_matches_model(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp" if Path("/var/tmp").is_dir() else None) as d:
        path = str(Path(d) / "p.db")
        opts = OpenOptions(durable=False)  # same semantics, no fsync: many examples, fast
        s = SqliteStorage(path, CHAIN, GENESIS, opts)
        try:
            m = run(ops, s)
        finally:
            s.close()
        s = SqliteStorage(path, CHAIN, GENESIS, opts)
        try:
            check_same(m, s)
            init = s.load()
            assert init.entries == tuple(m.entries(m.first, m.last + 1))
            assert s.integrity_check() == []
        finally:
            s.close()


def test_model_refusals_are_storage_errors() -> None:
    assert issubclass(InvalidOperation, StorageError) and issubclass(LogUnavailable, StorageError)


KEYS = st.binary(max_size=3).map(lambda b: bytes((0x00, 0x7F, 0xFF)[x % 3] for x in b))
WRITES = st.dictionaries(KEYS, st.one_of(st.none(), st.binary(max_size=4)), max_size=8)


def _state_run(s: SyncStorage, blocks: list[dict[bytes, bytes | None]], prefixes: list[bytes]) -> None:
    s.save_ready([Entry(1, i) for i in range(1, len(blocks) + 2)], HardState(1, 1, len(blocks) + 1))
    model: dict[bytes, bytes] = {}
    prev = b""
    for h, writes in enumerate(blocks):
        s.apply_block(BlockRecord(h, b"h%d" % h, prev, h + 1, b""), [], writes, h + 1)
        prev = b"h%d" % h
        for k, v in writes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        for p in prefixes:
            want = sorted((k, v) for k, v in model.items() if k.startswith(p))
            assert list(s.scan(p)) == want
            assert list(s.scan(p, limit=2)) == want[:2]
            assert s.get(p) == model.get(p)


@settings(max_examples=100 * SCALE)
@given(st.lists(WRITES, max_size=6), st.lists(KEYS, min_size=1, max_size=4))
def test_state_scan_matches_a_dict(
    blocks: list[dict[bytes, bytes | None]], prefixes: list[bytes]
) -> None:
    _state_run(MemoryStorage(CHAIN, GENESIS), blocks, prefixes)
    with tempfile.TemporaryDirectory(dir="/var/tmp" if Path("/var/tmp").is_dir() else None) as d:
        s = SqliteStorage(str(Path(d) / "s.db"), CHAIN, GENESIS, OpenOptions(durable=False))
        try:
            _state_run(s, blocks, prefixes)
        finally:
            s.close()
