"""Opaque Raft entries and the replication-benchmark mode that proposes them.

It owns how such entries are recognised (the applier and the pre-verifier skip
them) and the `raft_propose` admin method. Production defines both; the
benchmark only uses them: benchmarks/vs_pysyncobj.py compares the replication
layer (Raft core, driver, durable SQLite log with fsync, encrypted transport)
with PySyncObj, and for that needs entries that skip the ledger: no
transaction, no block, no contract.

* The method exists only on a daemon started with HZP2P_BENCH_REPLICATION=1 in
  its environment (`BENCH_ENV`); an ordinary daemon answers `unknown_method`.
* An opaque entry is `OPAQUE_MAGIC + data`. 0xC1 is the one byte msgpack
  never uses, so no encoded block (a msgpack array) starts with it and no block
  can be mistaken for an opaque entry or the other way round.
* Every node's applier treats an opaque entry like a NOOP: it only advances
  the applied index (durably, batched with its neighbours). Nothing reaches the
  ledger's state, so the chain and its state digest stay verifiable.
* `raft_propose {data: hex, count?: int}` proposes `count` entries (the same
  payload each time, all at once with `core.propose_many`) on the leader and answers once this node has applied the
  last of them: `{first_index, last_index}`. Durability is the daemon's normal
  path: an entry is applied only once committed, i.e. fsynced on a quorum.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from hzp2p.admin.protocol import AdminError, Param
from hzp2p.raft.errors import NotLeader, ProposalDropped

if TYPE_CHECKING:
    from hzp2p.admin.server import AdminServer

BENCH_ENV = "HZP2P_BENCH_REPLICATION"
OPAQUE_MAGIC = b"\xc1"
MAX_COUNT = 10_000
MAX_DATA_BYTES = 64 * 1024
DROPPED_BACKOFF_S = 0.005
DEFAULT_WAIT_S = 30.0

PARAMS = (
    Param("data", "hex", max_len=2 * MAX_DATA_BYTES),
    Param("count", "int", required=False, min_value=1),
    Param("wait_s", "float", required=False, min_value=0),
)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """The replication benchmark mode is switched on for this process."""
    env = os.environ if environ is None else environ
    return env.get(BENCH_ENV, "") not in ("", "0")


def is_opaque(data: bytes) -> bool:
    """An entry proposed by `raft_propose` (never a block: see the module docstring)."""
    return data[:1] == OPAQUE_MAGIC


def register(
    server: AdminServer,
    *,
    propose_many: Callable[[list[bytes]], tuple[int, int]],
    wake: Callable[[], None],
    wait_applied: Callable[[int], Awaitable[None]],
    max_uncommitted_bytes: int,
) -> None:
    """Add `raft_propose` to the admin server (call only when `enabled()`).

    `propose_many` is the driver's proposal of several entries at once (first and last
    index), `wake` nudges its ready loop, `wait_applied` waits for this node's applier."""

    async def raft_propose(params: Mapping[str, Any]) -> Any:
        count = int(params.get("count", 1))
        if count > MAX_COUNT:
            raise AdminError("bad_request", f"raft_propose: count must be <= {MAX_COUNT}")
        wait_s = float(params.get("wait_s", DEFAULT_WAIT_S))
        entry = OPAQUE_MAGIC + bytes.fromhex(params["data"])
        if count * (len(entry) + 16) > max_uncommitted_bytes // 2:
            raise AdminError("bad_request", "raft_propose: count x size exceeds half of "
                             "raft.max_uncommitted_bytes; send smaller batches")
        first = last = 0
        with trio.move_on_after(wait_s) as scope:
            while True:
                try:  # one append per follower for the lot (core.propose_many)
                    first, last = propose_many([entry] * count)
                    break
                except ProposalDropped:
                    # the uncommitted-bytes bound: let the pipeline drain, then retry
                    await trio.sleep(DROPPED_BACKOFF_S)
                except NotLeader as exc:
                    raise AdminError("not_leader", str(exc), leader_id=exc.leader_id or None,
                                     hint="send raft_propose to the leader") from None
                finally:
                    wake()
            await wait_applied(last)
        if scope.cancelled_caught:
            raise AdminError("timeout", f"raft_propose: not applied within {wait_s:g} s")
        return {"first_index": first, "last_index": last}

    server.register("raft_propose", raft_propose, PARAMS)
