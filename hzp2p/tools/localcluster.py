"""A local cluster of real `hzp2p run` processes: start, kill, restart, ask, wait, tear down.

It owns process management for the demo and the integration tests, so both
drive real daemons the same way: `hzp2p init` layout in a directory, one child
process per node (stderr to DIR/nodeK/stderr.log), admin calls through the
node's socket, and bounded waits (every wait has a deadline). `close()` kills
every child it started (by pid), so nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from hzp2p.admin.client import AdminClientError, call_sync
from hzp2p.admin.protocol import AdminError
from hzp2p.config import load_config
from hzp2p.node.keys import load_signing_key, write_key_file
from hzp2p.tools.scaffold import NodeFiles, write_consortium

POLL_S = 0.1


_CHILD = """
import ctypes, runpy, signal
try:  # Linux: die with the process that started us, so no daemon outlives a killed run
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
runpy.run_module("hzp2p.cli", run_name="__main__", alter_sys=True)
"""
"""`python -c _CHILD run --config CFG` is `hzp2p run --config CFG` that dies with its parent.
(The parent is the *thread* that started it: call `start` from the main thread.)"""


class ClusterError(Exception):
    """A wait ran out or a node misbehaved; str() says what and where the logs are."""


def free_base_port(count: int, host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A base port such that base .. base+count-1 are all free right now."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20000, 60000 - count)
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((host, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise ClusterError("no free port range found")


class LocalCluster:
    """Real daemons in `root` (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        nodes: int,
        learners: int = 0,
        *,
        election_ticks: int = 10,
        tick_ms: int = 50,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        base = free_base_port(nodes + learners)
        self.files: dict[int, NodeFiles] = {
            f.node_id: f
            for f in write_consortium(
                self.root, nodes, learners, base_port=base, tick_ms=tick_ms,
                election_ticks=election_ticks,
            )
        }
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._env = dict(os.environ if env is None else env)
        self.sockets = {k: str(load_config(f.config).admin.socket) for k, f in self.files.items()}

    @property
    def ids(self) -> list[int]:
        return sorted(self.files)

    def config(self, k: int) -> Path:
        return self.files[k].config

    def log_path(self, k: int) -> Path:
        return self.files[k].directory / "stderr.log"

    # ---------------------------------------------------------------- processes
    def start(self, k: int) -> None:
        if k in self.procs and self.procs[k].poll() is None:
            raise ClusterError(f"node {k} is already running")
        err = open(self.log_path(k), "ab")  # noqa: SIM115 - handed to the child
        try:
            self.procs[k] = subprocess.Popen(
                [sys.executable, "-c", _CHILD, "run", "--config", str(self.config(k))],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self._env,
            )
        finally:
            err.close()

    def start_all(self, ids: Iterable[int] | None = None) -> None:
        for k in ids or self.ids:
            self.start(k)

    def running(self, k: int) -> bool:
        p = self.procs.get(k)
        return p is not None and p.poll() is None

    def kill(self, k: int) -> None:
        """SIGKILL: a crash (no clean shutdown)."""
        p = self.procs.get(k)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)

    def stop(self, k: int, timeout_s: float = 10.0) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit status (None if it was killed)."""
        p = self.procs.get(k)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
                return None
        return p.returncode

    def close(self) -> None:
        """Stop every child this cluster started (SIGTERM, then SIGKILL)."""
        for k in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(k, timeout_s=5.0)
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(Exception):
                    p.kill()
                    p.wait(timeout=5)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare_node(self, node_id: int, roles: tuple[str, ...] = ("hospital",)) -> NodeFiles:
        """Files for a node that is not in the genesis (an institution to be admitted by vote):
        fresh keys, a config seeded with every existing node. Start it with `start(node_id)`."""
        if node_id in self.files:
            raise ClusterError(f"node {node_id} already exists")
        port = free_base_port(1)
        d = self.root / f"node{node_id}"
        (d / "data").mkdir(parents=True)
        write_key_file(d / "signing.key", SigningKey.generate())
        write_key_file(d / "node.key", SigningKey.generate())
        seeds = ", ".join(f'"{f.address}"' for f in self.files.values())
        (d / "config.toml").write_text(
            f"node_id = {node_id}\n"
            'genesis = "../genesis.toml"\ndata_dir = "data"\n'
            f'listen = "127.0.0.1:{port}"\nseeds = [{seeds}]\n'
            'signing_key = "signing.key"\nnode_key = "node.key"\n'
            "[raft]\ntick_ms = 50\nheartbeat_ticks = 2\n",
            encoding="utf-8",
        )
        files = NodeFiles(node_id, d, d / "config.toml", f"127.0.0.1:{port}", roles, False)
        self.files[node_id] = files
        self.sockets[node_id] = str(load_config(files.config).admin.socket)
        return files

    def verify_keys_hex(self, node_id: int) -> tuple[str, str]:
        """(signing key, node key) of a node, as the hex verify keys governance wants."""
        d = self.files[node_id].directory
        return (
            bytes(load_signing_key(d / "signing.key").verify_key).hex(),
            bytes(load_signing_key(d / "node.key").verify_key).hex(),
        )

    # ---------------------------------------------------------------- asking
    def call(self, k: int, method: str, params: dict[str, Any] | None = None,
             timeout_s: float = 10.0) -> Any:
        return call_sync(self.sockets[k], method, params or {}, timeout_s=timeout_s)

    def try_call(self, k: int, method: str, params: dict[str, Any] | None = None,
                 timeout_s: float = 5.0) -> Any:
        """Like call, but None when the node cannot answer (down, starting, error)."""
        if not self.running(k):
            return None
        try:
            return self.call(k, method, params, timeout_s)
        except (AdminClientError, AdminError, OSError):
            return None

    def status(self, k: int) -> dict[str, Any] | None:
        st = self.try_call(k, "status")
        return st if isinstance(st, dict) else None

    def wait_for(self, what: str, cond: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout_s:g}s waiting for {what}; "
                                   f"logs in {self.root}/nodeK/stderr.log")
            time.sleep(POLL_S)

    def leader(self, among: Iterable[int] | None = None) -> int | None:
        """The leader, if the running nodes among `among` agree on one for the highest term."""
        sts = [s for k in (among or self.ids) if (s := self.status(k)) is not None]
        leaders = [s for s in sts if s["role"] == "leader"]
        if not leaders:
            return None
        best = max(leaders, key=lambda s: s["term"])
        if all(s["term"] <= best["term"] for s in sts):
            return int(best["node_id"])
        return None

    def wait_leader(self, timeout_s: float = 20.0, among: Iterable[int] | None = None) -> int:
        ids = list(among or self.ids)
        return int(self.wait_for("a leader", lambda: self.leader(ids), timeout_s))

    def wait_up(self, timeout_s: float = 20.0, ids: Iterable[int] | None = None) -> int:
        """Every node in `ids` answers on its admin socket and names the same leader; returns it.

        `wait_leader` returns as soon as a quorum has elected someone, which can be before a
        slower node's admin socket is listening; call this before driving every node."""
        nodes = list(ids or self.ids)

        def agreed() -> int | None:
            sts = [self.status(k) for k in nodes]
            leaders = {s.get("leader_id") if s is not None else None for s in sts}
            return leaders.pop() if len(leaders) == 1 else None

        return int(self.wait_for("every node to be up and to know the leader", agreed, timeout_s))

    def wait_converged(self, timeout_s: float = 20.0, ids: Iterable[int] | None = None,
                       min_height: int = 0) -> int:
        """All `ids` report the same height (>= min_height) and head hash; returns the height."""
        nodes = list(ids or self.ids)

        def same() -> int | None:
            sts = [self.status(k) for k in nodes]
            if any(s is None for s in sts):
                return None
            heads = {(s["height"], s.get("head_hash")) for s in sts if s is not None}
            if len(heads) != 1:
                return None
            h = next(iter(heads))[0]
            return int(h) + 1 if h >= min_height else None  # +1: height 0 is truthy-safe

        return int(self.wait_for("nodes to converge", same, timeout_s)) - 1

    def chain(self, k: int, height: int) -> list[str]:
        """Block hashes 1..height as node k holds them."""
        return [self.call(k, "block", {"height": h})["hash"] for h in range(1, height + 1)]

    def submit(self, k: int, tx_type: str, payload: dict[str, Any], wait_s: float = 10.0,
               idempotency_key: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"type": tx_type, "payload": payload, "wait_s": wait_s}
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        result: dict[str, Any] = self.call(k, "submit", params, timeout_s=wait_s + 5)
        return result
