"""Fake daemon handlers and a threaded admin server shared by the admin tests."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from hzp2p.admin.protocol import AdminError
from hzp2p.admin.server import AdminServer

TX_HASH = "ab" * 32

BLOCK = {
    "height": 3,
    "hash": "cd" * 32,
    "prev_hash": "ef" * 32,
    "merkle_root": "01" * 32,
    "proposer": 1,
    "timestamp": 1_700_000_000_000,
    "txs": [{"tx_hash": TX_HASH, "type": "epi.report", "status": "committed"}],
}


class FakeDaemon:
    """Handlers shaped like the daemon's, with canned answers; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.seen_reports: set[str] = set()

    async def status(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("status", dict(params)))
        return {
            "node_id": 1,
            "role": "leader",
            "term": 4,
            "leader_id": 1,
            "commit_index": 17,
            "applied_index": 17,
            "height": 3,
            "peers": [2, 3],
        }

    async def peers(self, params: Mapping[str, Any]) -> Any:
        return {
            "peers": [
                {"node_id": 2, "address": "127.0.0.1:7002", "role": "voter", "connected": True, "match_index": 17},
                {"node_id": 3, "address": "127.0.0.1:7003", "role": "voter", "connected": False, "match_index": None},
            ]
        }

    async def members(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("members", dict(params)))
        return {"members": [{"inst_id": 1, "name": "Health Commission", "roles": ["authority"], "voter": True}]}

    async def block(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("block", dict(params)))
        if params["height"] != 3:
            raise AdminError("not_found", f"no such block: height {params['height']}")
        return BLOCK

    async def tx(self, params: Mapping[str, Any]) -> Any:
        if params["tx_hash"] != TX_HASH:
            raise AdminError("not_found", "unknown transaction")
        return {"tx_hash": TX_HASH, "status": "committed", "height": 3, "index": 0, "type": "epi.report", "reason": None}

    async def verify(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("verify", dict(params)))
        if params.get("integrity"):
            return {"ok": False, "height": 3, "blocks_checked": 2, "first_bad_height": 2, "reason": "merkle root mismatch"}
        return {"ok": True, "height": 3, "blocks_checked": 3, "first_bad_height": None, "reason": None}

    async def metrics(self, params: Mapping[str, Any]) -> Any:
        return {"text": "# HELP hzp2p_raft_term Current term.\n# TYPE hzp2p_raft_term gauge\nhzp2p_raft_term 4\n"}

    async def submit(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("submit", dict(params)))
        payload = params["payload"]
        if params["type"] == "bad.type":
            return {"tx_hash": TX_HASH, "status": "rejected", "height": None, "index": None, "reason": "unknown transaction type"}
        if params["type"] == "slow.type":
            return {"tx_hash": TX_HASH, "status": "pending", "height": None, "index": None, "reason": None}
        if params["type"] == "follower.type":
            raise AdminError("not_leader", "no leader known", leader_id=2, hint="retry")
        return {"tx_hash": TX_HASH, "status": "committed", "height": 4, "index": len(payload), "reason": None}

    async def transfer_leader(self, params: Mapping[str, Any]) -> Any:
        return {"target": params["node_id"]}

    async def add_learner(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("add_learner", dict(params)))
        return {"tx_hash": TX_HASH, "status": "committed", "height": 5, "index": 0, "reason": None, "node_id": 7}

    async def promote(self, params: Mapping[str, Any]) -> Any:
        return {"tx_hash": TX_HASH, "status": "committed", "height": 6, "index": 0, "reason": None}

    async def remove(self, params: Mapping[str, Any]) -> Any:
        raise AdminError("rejected", "removing node 1 would leave no quorum")

    async def subject_records(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("subject_records", dict(params)))
        return {"subject": params["subject"], "records": [{"tx_hash": TX_HASH, "type": "lab.result", "height": 3}]}

    async def lot_history(self, params: Mapping[str, Any]) -> Any:
        return {"lot": params["lot"], "events": []}

    async def access_log(self, params: Mapping[str, Any]) -> Any:
        raise RuntimeError("boom")

    async def submit_raw(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("submit_raw", dict(params)))
        if params["tx"].startswith("dead"):
            raise AdminError("bad_request", "submit_raw: transaction signature does not verify")
        if params["tx"].startswith("beef"):
            return {"tx_hash": TX_HASH, "status": "rejected", "height": None, "index": None, "reason": "duplicate report_id"}
        return {"tx_hash": TX_HASH, "status": "committed", "height": 4, "index": 0, "reason": None}

    async def state_scan(self, params: Mapping[str, Any]) -> Any:
        self.calls.append(("state_scan", dict(params)))
        rows = [["0101", "aa"], ["0102", "bb"], ["0201", "cc"]]
        prefix = "" if params["prefix"] == "-" else params["prefix"]
        items = [r for r in rows if r[0].startswith(prefix)]
        return {"items": items[: params.get("limit", 10_000)]}

    def register_all(self, server: AdminServer) -> None:
        for method in (
            "status", "peers", "members", "block", "tx", "verify", "metrics", "submit",
            "transfer_leader", "add_learner", "promote", "remove", "subject_records",
            "lot_history", "access_log", "submit_raw", "state_scan",
        ):
            server.register(method, getattr(self, method))


class ThreadedServer:
    """An AdminServer with fake handlers on its own Trio loop in a thread (for sync CLI tests)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.daemon = FakeDaemon()
        self.server = AdminServer(socket_path)
        self.daemon.register_all(self.server)
        self._started = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                await nursery.start(self.server.serve)
                self._started.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
            self._started.set()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._started.wait(30), "admin server did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None and self._scope is not None
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(30)


