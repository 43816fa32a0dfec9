"""In-memory storage: the reference implementation and the simulator's store.

Synchronous and free of Trio, so the deterministic simulator can drive it from
its own event loop (wrap it in `AsyncStorage.memory(...)` for Trio code). It
models durability the way SQLite provides it: every mutating call is one
transaction that either completes entirely or (when it raises) leaves nothing
behind, using an undo log. The simulator models a crash by keeping the object
and rebuilding its Raft core from `load()`: everything a call returned from is
"durable", nothing else exists.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from hzp2p.raft.types import ConfState, Entry, HardState, Snapshot
from hzp2p.storage import rules
from hzp2p.storage.errors import InvalidOperation, LogCompacted, LogUnavailable, StoreClosed
from hzp2p.storage.interfaces import (
    REFUSALS_KEPT,
    TX_REJECTED,
    BlockExecutor,
    BlockJob,
    BlockRecord,
    ExecResult,
    InitialState,
    ReadyBatch,
    Refusal,
    TxRecord,
    Writes,
)


class MemoryStorage:
    """`SyncStorage` held in dicts and lists."""

    def __init__(self, chain_id: bytes, genesis_hash: bytes) -> None:
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._hs = HardState()
        self._conf = ConfState()
        self._applied = 0
        self._snap: Snapshot | None = None
        self._start = 0  # compaction point: first_index - 1
        self._start_term = 0
        self._log: list[Entry] = []
        self._state: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []  # sorted keys of _state
        self._blocks: dict[int, BlockRecord] = {}
        self._by_hash: dict[bytes, int] = {}
        self._txs: dict[int, list[TxRecord]] = {}
        self._tx_index: dict[bytes, list[TxRecord]] = {}
        self._tip: tuple[int, bytes] | None = None
        self._refusals: dict[bytes, Refusal] = {}  # insertion order: oldest first
        self._undo: list[Callable[[], None]] | None = None
        self._closed = False

    # -- transactions --------------------------------------------------------

    @contextmanager
    def _txn(self) -> Iterator[None]:
        if self._closed:
            raise StoreClosed("memory store is closed")
        assert self._undo is None, "memory store transactions do not nest"
        self._undo = []
        try:
            yield
        except BaseException:
            for undo in reversed(self._undo):
                undo()
            raise
        finally:
            self._undo = None

    def _push(self, undo: Callable[[], None]) -> None:
        assert self._undo is not None, "write outside a transaction"
        self._undo.append(undo)

    def _set(self, attr: str, value: object) -> None:
        old = getattr(self, attr)
        setattr(self, attr, value)
        self._push(lambda: setattr(self, attr, old))

    def _log_cut(self, pos: int) -> None:
        removed = self._log[pos:]
        del self._log[pos:]
        self._push(lambda: self._log.extend(removed))

    def _log_drop_prefix(self, k: int) -> None:
        removed = self._log[:k]
        del self._log[:k]

        def undo() -> None:
            self._log[0:0] = removed

        self._push(undo)

    def _log_extend(self, entries: Sequence[Entry]) -> None:
        n = len(self._log)
        self._log.extend(entries)

        def undo() -> None:
            del self._log[n:]

        self._push(undo)

    def _state_put(self, key: bytes, value: bytes | None) -> None:
        old = self._state.get(key)
        if value is None:
            if old is None:
                return
            del self._state[key]
            del self._keys[bisect.bisect_left(self._keys, key)]
        else:
            if old is None:
                bisect.insort(self._keys, key)
            self._state[key] = value
        self._push(lambda: self._state_restore(key, old))

    def _state_restore(self, key: bytes, old: bytes | None) -> None:
        present = key in self._state
        if old is None:
            if present:
                del self._state[key]
                del self._keys[bisect.bisect_left(self._keys, key)]
        else:
            if not present:
                bisect.insort(self._keys, key)
            self._state[key] = old

    # -- meta ----------------------------------------------------------------

    @property
    def chain_id(self) -> bytes:
        return self._chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._genesis_hash

    def close(self) -> None:
        self._closed = True

    def integrity_check(self) -> list[str]:
        problems: list[str] = []
        for pos, e in enumerate(self._log):
            if e.index != self._start + 1 + pos:
                problems.append(f"log entry at position {pos} has index {e.index}")
                break
        if self._hs.commit > self.last_index():
            problems.append("commit index ahead of the log")
        for height, block in self._blocks.items():
            if self._by_hash.get(block.block_hash) != height:
                problems.append(f"block {height} missing from the hash index")
            if any(t.height != height for t in self._txs.get(height, [])):
                problems.append(f"block {height} has foreign tx rows")
        if self._keys != sorted(self._state):
            problems.append("state key index out of order")
        return problems

    # -- hard state ----------------------------------------------------------

    def hard_state(self) -> HardState:
        return self._hs

    def conf_state(self) -> ConfState:
        return self._conf

    def applied_index(self) -> int:
        return self._applied

    def _commit_bound(self) -> int:
        return max(self._hs.commit, self._snap.meta.index if self._snap else 0)

    def set_applied(self, index: int, conf_state: ConfState | None = None) -> None:
        with self._txn():
            rules.check_applied(index, self._applied, self._commit_bound())
            self._set("_applied", index)
            if conf_state is not None:
                self._set("_conf", conf_state)

    # -- log -----------------------------------------------------------------

    def first_index(self) -> int:
        return self._start + 1

    def last_index(self) -> int:
        return self._start + len(self._log)

    def term(self, index: int) -> int:
        if index == self._start:
            return self._start_term
        if index < self._start:
            raise LogCompacted(index, self.first_index(), self.last_index())
        if index > self.last_index():
            raise LogUnavailable(index, self.first_index(), self.last_index())
        return self._log[index - self._start - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        if lo < self.first_index():
            raise LogCompacted(lo, self.first_index(), self.last_index())
        if hi > self.last_index() + 1 or lo > hi:
            raise LogUnavailable(hi - 1, self.first_index(), self.last_index())
        out = self._log[lo - self._start - 1 : hi - self._start - 1]
        if max_bytes is not None and out:
            size = 0
            for n, e in enumerate(out):
                size += e.size_bytes()
                if n > 0 and size > max_bytes:
                    return out[:n]
        return out

    def _append(self, entries: Sequence[Entry]) -> None:
        entries = rules.trim_compacted(entries, self.first_index())
        if not entries:
            return
        e0 = entries[0].index
        last = self.last_index()
        prev_term = self.term(e0 - 1) if e0 - 1 <= last else None
        rules.check_entries(entries, self.first_index(), last, prev_term)
        if e0 <= last:
            rules.check_truncate(e0, self.first_index(), last, self._hs.commit)
            self._log_cut(e0 - self._start - 1)
        self._log_extend(entries)

    def append(self, entries: Sequence[Entry]) -> None:
        with self._txn():
            self._append(entries)

    def truncate_suffix(self, index: int) -> None:
        with self._txn():
            if index > self.last_index():
                return
            rules.check_truncate(index, self.first_index(), self.last_index(), self._hs.commit)
            self._log_cut(index - self._start - 1)

    def compact(self, index: int) -> None:
        with self._txn():
            if index <= self._start:
                return
            if index > self.last_index():
                raise LogUnavailable(index, self.first_index(), self.last_index())
            if self._snap is None or self._snap.meta.index < index:
                raise InvalidOperation(f"compacting to {index} needs a snapshot at or beyond it")
            term = self.term(index)
            self._log_drop_prefix(index - self._start)
            self._set("_start", index)
            self._set("_start_term", term)

    # -- snapshots -----------------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        return self._snap

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._txn():
            self._check_local_snapshot(snapshot)
            self._set("_snap", snapshot)

    def _check_local_snapshot(self, snapshot: Snapshot) -> None:
        m = snapshot.meta
        if self._snap is not None and m.index < self._snap.meta.index:
            raise InvalidOperation(f"snapshot at {m.index} is older than the stored one")
        if m.index > self._applied:
            raise InvalidOperation(f"snapshot at {m.index} is ahead of applied {self._applied}")
        if m.index >= self._start and m.index <= self.last_index() and self.term(m.index) != m.term:
            raise InvalidOperation(f"snapshot term {m.term} does not match the log at {m.index}")

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        m = snapshot.meta
        if self._snap is not None and m.index < self._snap.meta.index:
            raise InvalidOperation(f"snapshot at {m.index} is older than the stored one")
        keep = (
            self.first_index() <= m.index <= self.last_index() and self.term(m.index) == m.term
        )
        if keep:
            self._log_drop_prefix(m.index - self._start)
        else:
            self._log_cut(0)
        self._set("_start", m.index)
        self._set("_start_term", m.term)
        self._set("_snap", snapshot)
        self._set("_conf", m.conf)

    # -- Ready ---------------------------------------------------------------

    def _save(self, batch: ReadyBatch) -> None:
        if batch.snapshot is not None:
            self._install_snapshot(batch.snapshot)
        if batch.entries:
            self._append(batch.entries)
        if batch.hard_state is not None:
            last = max(self.last_index(), self._snap.meta.index if self._snap else 0)
            rules.check_hard_state(self._hs, batch.hard_state, last)
            self._set("_hs", batch.hard_state)

    def save_ready(
        self,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        with self._txn():
            self._save(ReadyBatch(entries, hard_state, snapshot))

    def save_batches(self, batches: Sequence[ReadyBatch]) -> None:
        with self._txn():
            for batch in batches:
                self._save(batch)

    def load(self) -> InitialState:
        return InitialState(
            hard_state=self._hs,
            conf_state=self._conf,
            snapshot_meta=self._snap.meta if self._snap else None,
            first_index=self.first_index(),
            entries=tuple(self._log),
            applied_index=self._applied,
            tip=self._tip,
        )

    # -- blocks --------------------------------------------------------------

    def _apply_block(
        self, block: BlockRecord, txs: Sequence[TxRecord], writes: Writes, applied_index: int
    ) -> None:
        rules.check_block(block, txs, self._tip)
        rules.check_applied(applied_index, self._applied, self._commit_bound())
        if block.block_hash in self._by_hash:
            raise InvalidOperation(f"block hash of height {block.height} is already stored")
        rows = sorted(txs, key=lambda t: t.position)
        self._blocks[block.height] = block
        self._by_hash[block.block_hash] = block.height
        self._txs[block.height] = rows
        for t in rows:
            self._tx_index.setdefault(t.tx_hash, []).append(t)

        def undo() -> None:
            del self._blocks[block.height]
            del self._by_hash[block.block_hash]
            del self._txs[block.height]
            for t in reversed(rows):
                lst = self._tx_index[t.tx_hash]
                lst.pop()
                if not lst:
                    del self._tx_index[t.tx_hash]

        self._push(undo)
        for key in sorted(writes):
            self._state_put(key, writes[key])
        self._set("_tip", (block.height, block.block_hash))
        self._set("_applied", applied_index)

    def apply_block(
        self, block: BlockRecord, txs: Sequence[TxRecord], writes: Writes, applied_index: int
    ) -> None:
        with self._txn():
            self._apply_block(block, txs, writes, applied_index)

    def apply_block_with(
        self, block: BlockRecord, execute: BlockExecutor, applied_index: int
    ) -> ExecResult:
        with self._txn():
            result = execute(self)
            txs, writes = result
            self._apply_block(block, txs, writes, applied_index)
            return result

    def apply_blocks_with(
        self, jobs: Sequence[BlockJob], applied_index: int | None = None
    ) -> list[ExecResult]:
        out: list[ExecResult] = []
        with self._txn():
            for block, execute, index in jobs:
                result = execute(self)  # sees the blocks before it (applied in this txn)
                self._apply_block(block, result[0], result[1], index)
                out.append(result)
            if applied_index is not None:
                rules.check_applied(applied_index, self._applied, self._commit_bound())
                self._set("_applied", applied_index)
        return out

    def block_by_height(self, height: int) -> BlockRecord | None:
        return self._blocks.get(height)

    def block_by_hash(self, block_hash: bytes) -> BlockRecord | None:
        height = self._by_hash.get(block_hash)
        return None if height is None else self._blocks[height]

    def blocks(self, lo: int, hi: int) -> list[BlockRecord]:
        return [self._blocks[h] for h in range(lo, hi) if h in self._blocks]

    def tip(self) -> tuple[int, bytes] | None:
        return self._tip

    def tx(self, tx_hash: bytes) -> TxRecord | None:
        return rules.pick_verdict(self._tx_index.get(tx_hash, []))

    def block_txs(self, height: int) -> list[TxRecord]:
        return list(self._txs.get(height, []))

    # -- admission refusals --------------------------------------------------

    def record_refusals(self, refusals: Sequence[Refusal]) -> None:
        if self._closed:
            raise StoreClosed("memory store is closed")
        kept = self._refusals
        for r in refusals:
            kept.pop(r.tx_hash, None)
            kept[r.tx_hash] = r
        while len(kept) > REFUSALS_KEPT:
            del kept[next(iter(kept))]

    def refusal(self, tx_hash: bytes) -> Refusal | None:
        return self._refusals.get(tx_hash)

    def refusals_page(
        self, lo_ms: int, hi_ms: int, before: tuple[int, bytes] | None, limit: int
    ) -> list[Refusal]:
        found = sorted((r for r in self._refusals.values() if lo_ms <= r.at_ms <= hi_ms
                        and (before is None or (r.at_ms, r.tx_hash) < before)),
                       key=lambda r: (r.at_ms, r.tx_hash), reverse=True)
        return found[:limit]

    def rejected_page(
        self, lo_h: int, hi_h: int, before: tuple[int, int] | None, limit: int
    ) -> list[TxRecord]:
        out: list[TxRecord] = []
        for h in sorted((h for h in self._txs if lo_h <= h <= hi_h), reverse=True):
            for t in sorted(self._txs[h], key=lambda t: t.position, reverse=True):
                if t.status == TX_REJECTED and (before is None or (h, t.position) < before):
                    out.append(t)
                    if len(out) >= limit:
                        return out
        return out

    # -- contract state ------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._state.get(key)

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        # Materialised so a later write cannot disturb an iteration in progress.
        out: list[tuple[bytes, bytes]] = []
        i = bisect.bisect_left(self._keys, prefix)
        while i < len(self._keys) and (limit is None or len(out) < limit):
            key = self._keys[i]
            if not key.startswith(prefix):
                break
            out.append((key, self._state[key]))
            i += 1
        return iter(out)

    def install_state(
        self,
        pairs: Iterable[tuple[bytes, bytes]],
        applied_index: int,
        conf_state: ConfState,
        tip: tuple[int, bytes] | None,
    ) -> None:
        with self._txn():
            if applied_index > self._commit_bound():
                raise InvalidOperation(f"state at {applied_index} is ahead of commit")
            for key in list(self._keys):
                self._state_put(key, None)
            for key, value in pairs:
                self._state_put(key, value)
            self._set("_applied", applied_index)
            self._set("_conf", conf_state)
            self._set("_tip", tip)
