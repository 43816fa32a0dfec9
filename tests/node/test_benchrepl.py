"""The replication benchmark mode: opaque entries never look like blocks and never touch state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

from hzp2p.admin.protocol import AdminError
from hzp2p.ledger.genesis import make_local_genesis
from hzp2p.node import opaque as benchrepl
from hzp2p.node.applier import Applier, bootstrap
from hzp2p.raft.types import Entry, EntryKind, HardState
from hzp2p.storage import AsyncStorage
from hzp2p.tools.localcluster import LocalCluster


def test_magic_is_never_the_first_byte_of_msgpack() -> None:
    import msgpack

    samples: tuple[object, ...] = ([b"h", b"s", []], [1, 2, 3], {}, b"", 0)
    for obj in samples:
        assert not benchrepl.is_opaque(msgpack.packb(obj, use_bin_type=True))
    assert benchrepl.is_opaque(benchrepl.OPAQUE_MAGIC + b"x" * 199)


def test_enabled_only_with_the_environment_flag() -> None:
    assert not benchrepl.enabled({})
    assert not benchrepl.enabled({benchrepl.BENCH_ENV: "0"})
    assert benchrepl.enabled({benchrepl.BENCH_ENV: "1"})


async def test_applier_treats_opaque_entries_as_noops() -> None:
    genesis, _ = make_local_genesis(3, 0, "127.0.0.1", 7100)
    storage = AsyncStorage.memory(chain_id=genesis.chain_id.encode(), genesis_hash=genesis.hash)
    await bootstrap(storage, genesis)
    applier = Applier(storage, genesis)
    await applier.load()
    head = applier.head
    entries = [Entry(1, 1, EntryKind.NOOP)] + [
        Entry(1, i, EntryKind.NORMAL, benchrepl.OPAQUE_MAGIC + bytes(199)) for i in range(2, 50)
    ]
    await storage.save_ready(entries, HardState(1, 1, 49))
    await applier.apply(cast(Any, None), entries)
    assert applier.applied_index == 49
    assert await storage.applied_index() == 49
    assert applier.head == head and applier.blocks_applied == 0 and applier.blocks_refused == 0
    # a run of opaque entries only: the applied index moves in memory, not on disk (harmless
    # to re-apply after a restart); the next NOOP stores past them
    more = [Entry(1, i, EntryKind.NORMAL, benchrepl.OPAQUE_MAGIC + b"x") for i in range(50, 60)]
    await storage.save_ready(more, HardState(1, 1, 59))
    await applier.apply(cast(Any, None), more)
    assert applier.applied_index == 59 and await storage.applied_index() == 49
    await storage.save_ready([Entry(1, 60, EntryKind.NOOP)], HardState(1, 1, 60))
    await applier.apply(cast(Any, None), [Entry(1, 60, EntryKind.NOOP)])
    assert applier.applied_index == 60 and await storage.applied_index() == 60


@pytest.mark.slow
def test_raft_propose_on_a_real_daemon(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 1, env={**os.environ, benchrepl.BENCH_ENV: "1"}) as c:
        c.start_all()
        c.wait_leader(30)
        r = c.call(1, "raft_propose", {"data": "ab" * 199, "count": 300})
        assert r["last_index"] - r["first_index"] == 299
        st = c.status(1)
        assert st is not None and st["applied_index"] >= r["last_index"] and st["height"] == 0
        assert c.call(1, "verify")["ok"]
    with LocalCluster(tmp_path / "d", 1) as c:
        c.start_all()
        c.wait_leader(30)
        with pytest.raises(AdminError) as err:
            c.call(1, "raft_propose", {"data": "ab"})
        assert err.value.code == "unknown_method"
