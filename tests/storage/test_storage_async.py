"""The async facade: both implementations through AsyncStorage, the DB thread, cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from storage_helpers import CHAIN, GENESIS

from hzp2p.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from hzp2p.storage import (
    AsyncStorage,
    BlockRecord,
    ExecResult,
    OpenOptions,
    ReadyBatch,
    StateReader,
    StoreClosed,
    SyncStorage,
    TxRecord,
    WrongChain,
    open_sqlite,
)


async def _open(kind: str, tmp: Path) -> AsyncStorage:
    if kind == "memory":
        return AsyncStorage.memory(chain_id=CHAIN, genesis_hash=GENESIS)
    return await AsyncStorage.open_sqlite(str(tmp / "a.db"), CHAIN, GENESIS)


def _block(h: int, prev: bytes = b"") -> BlockRecord:
    return BlockRecord(h, b"H%d" % h, prev, h + 1, b"raw")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_facade_roundtrip(kind: str, tmp_path: Path) -> None:
    async with await _open(kind, tmp_path) as s:
        assert s.chain_id == CHAIN and s.genesis_hash == GENESIS
        await s.save_ready([Entry(1, i, data=b"x") for i in range(1, 6)], HardState(1, 1, 4))
        assert await s.last_index() == 5 and await s.first_index() == 1
        assert await s.term(3) == 1
        assert [e.index for e in await s.entries(2, 4)] == [2, 3]
        init = await s.load()
        assert init.hard_state == HardState(1, 1, 4) and len(init.entries) == 5

        def execute(r: StateReader) -> ExecResult:
            assert r.get(b"k") is None
            return [TxRecord(b"t", 0, 0, "x", "applied")], {b"k": b"v"}

        await s.apply_block_with(_block(0), execute, 1)
        assert await s.tip() == (0, b"H0") and await s.get(b"k") == b"v"
        assert await s.scan(b"") == [(b"k", b"v")]
        tx = await s.tx(b"t")
        assert tx is not None and tx.height == 0
        assert await s.block_by_hash(b"H0") == _block(0)
        assert await s.applied_index() == 1
        assert await s.integrity_check() == []


async def test_sqlite_calls_run_on_one_dedicated_thread(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "a.db"), CHAIN, GENESIS) as s:

        def where(_: SyncStorage) -> int:
            return threading.get_ident()

        ident = await s.call(where)
        assert ident != threading.get_ident()
        assert all([await s.call(where) == ident for _ in range(5)])
    with pytest.raises(StoreClosed):
        await s.get(b"k")


async def test_cancelled_caller_does_not_break_the_transaction(tmp_path: Path) -> None:
    """A task cancelled while its block is being applied: the transaction still completes on
    the DB thread, the task sees Cancelled afterwards, and the connection stays usable."""
    async with open_sqlite(str(tmp_path / "a.db"), CHAIN, GENESIS) as s:
        await s.save_ready([Entry(1, i) for i in range(1, 4)], HardState(1, 1, 3))
        started, release = threading.Event(), threading.Event()

        def slow(r: StateReader) -> ExecResult:
            started.set()
            assert release.wait(10)
            return [TxRecord(b"t0", 0, 0, "x", "applied")], {b"k": b"v"}

        cs = trio.CancelScope()
        got: list[ExecResult] = []

        async def apply() -> None:
            with cs:
                got.append(await s.apply_block_with(_block(0), slow, 1))
                await trio.lowlevel.checkpoint()
                raise AssertionError("not reached: cancelled at the checkpoint")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(apply)
            with trio.fail_after(10):
                await trio.to_thread.run_sync(started.wait)
            cs.cancel()
            await trio.lowlevel.checkpoint()
            release.set()
        assert cs.cancelled_caught and len(got) == 1
        assert await s.tip() == (0, b"H0") and await s.get(b"k") == b"v"
        # Cancelled before the call starts: nothing is submitted.
        with trio.CancelScope() as cs2:
            cs2.cancel()
            await s.save_ready([Entry(1, 4)])
        assert await s.last_index() == 3
        await s.save_ready([Entry(1, 4)])
        assert await s.last_index() == 4 and await s.integrity_check() == []


async def test_engine_failure_rolls_back_and_keeps_connection(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "a.db"), CHAIN, GENESIS) as s:
        await s.save_ready([Entry(1, 1)], HardState(1, 1, 1))

        def boom(r: StateReader) -> ExecResult:
            raise ValueError("bad block")

        with pytest.raises(ValueError, match="bad block"):
            await s.apply_block_with(_block(0), boom, 1)
        assert await s.tip() is None and await s.applied_index() == 0
        await s.apply_block(_block(0), [], {b"a": b"1"}, 1)
        assert await s.tip() == (0, b"H0")


async def test_open_errors_are_typed_through_the_facade(tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    async with open_sqlite(path, CHAIN, GENESIS):
        pass
    with pytest.raises(WrongChain, match="another chain"):
        await AsyncStorage.open_sqlite(path, b"chain-B", GENESIS, OpenOptions(busy_timeout_s=0.1))
    async with open_sqlite(path, None, None) as s:  # any chain: tools like `admin verify`
        assert s.chain_id == CHAIN


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_every_facade_method_reaches_the_store(kind: str, tmp_path: Path) -> None:
    conf = ConfState(frozenset({1, 2}))
    async with await _open(kind, tmp_path) as s:
        await s.save_batches(
            [ReadyBatch([Entry(1, 1), Entry(1, 2)]), ReadyBatch([Entry(1, 3)], HardState(1, 1, 2))]
        )
        await s.append([Entry(2, 4), Entry(2, 5)])
        await s.truncate_suffix(5)
        assert await s.last_index() == 4
        await s.set_applied(1, conf)
        assert await s.conf_state() == conf and await s.hard_state() == HardState(1, 1, 2)
        await s.apply_block(_block(0), [TxRecord(b"a", 0, 0, "x", "rejected", "r")], {}, 2)
        assert await s.block_by_height(0) == _block(0)
        assert await s.blocks(0, 5) == [_block(0)]
        assert await s.block_txs(0) == [TxRecord(b"a", 0, 0, "x", "rejected", "r")]
        snap = Snapshot(SnapshotMeta(2, 1, conf), b"snap")
        await s.save_snapshot(snap)
        assert await s.snapshot() == snap
        await s.compact(2)
        assert await s.first_index() == 3
        await s.install_state([(b"x", b"1")], 2, conf, (0, b"H0"))
        assert await s.scan(b"") == [(b"x", b"1")]
        await s.save_ready(
            [Entry(3, 9)], HardState(3, 0, 9), Snapshot(SnapshotMeta(8, 3, conf), b"s8")
        )
        assert (await s.load()).first_index == 9
        calls: list[int] = []

        def step(h: int) -> Callable[[StateReader], ExecResult]:
            def execute(r: StateReader) -> ExecResult:
                calls.append(h)
                return [], {b"x": b"%d" % h}

            return execute

        out = await s.apply_blocks_with(
            [(_block(1, b"H0"), step(1), 9), (_block(2, b"H1"), step(2), 9)], 9
        )
        assert calls == [1, 2] and [dict(w) for _, w in out] == [{b"x": b"1"}, {b"x": b"2"}]
        assert await s.tip() == (2, b"H2") and await s.get(b"x") == b"2"
