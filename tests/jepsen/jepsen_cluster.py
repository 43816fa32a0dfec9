"""Real daemons for the Jepsen-style test, each in its own network namespace.

`hzp2p init` writes the consortium; each node's config is then pointed at its
namespace's address (listen, seeds and [net.peer_addresses], which peers dial ahead of
the genesis addresses). `hzp2p run` starts inside the namespace through `ip netns
exec` (which execs, so the child's pid is the daemon's: SIGSTOP / SIGKILL reach it).
Admin sockets are files, so the test and the CLI reach every daemon from the root
namespace whatever the network does. Children die with the test process
(PR_SET_PDEATHSIG) and `close()` kills any still running, by pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from jepsen_netns import PORT, NetLab

from hzp2p.config import load_config
from hzp2p.tools.localcluster import _CHILD

BASE_PYTHONPATH = os.environ.get("HZP2P_JEPSEN_DAEMON_PYTHONPATH", "")
"""A source tree to run the daemons from instead of this one (to measure a baseline)."""


class NetnsCluster:
    def __init__(self, root: Path, lab: NetLab, *, net: tuple[float, float] | None = None) -> None:
        self.root = root
        self.lab = lab
        self.ids = list(lab.nodes)
        subprocess.run(
            [sys.executable, "-m", "hzp2p.cli", "init", str(root), "--nodes", str(len(self.ids)),
             "--base-port", str(PORT)],
            check=True, capture_output=True, timeout=120,
        )
        for k in self.ids:
            self._rewrite(k, net)
        self.sockets = {k: str(load_config(self.config(k)).admin.socket) for k in self.ids}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.env = dict(os.environ)
        if BASE_PYTHONPATH:
            self.env["PYTHONPATH"] = BASE_PYTHONPATH

    def config(self, k: int) -> Path:
        return self.root / f"node{k}" / "config.toml"

    def _rewrite(self, k: int, net: tuple[float, float] | None) -> None:
        path = self.config(k)
        text = path.read_text()
        own = f"{self.lab.address(k)}:{PORT}"
        others = {j: f"{self.lab.address(j)}:{PORT}" for j in self.ids if j != k}
        text = re.sub(r'(?m)^listen = ".*"$', f'listen = "{own}"', text)
        seeds = ", ".join(f'"{a}"' for a in others.values())
        text = re.sub(r"(?m)^seeds = \[.*\]$", f"seeds = [{seeds}]", text)
        if net is not None:
            text += f"\n[net]\nkeepalive_s = {net[0]}\nread_timeout_s = {net[1]}\n"
        text += "\n[net.peer_addresses]\n" + "".join(f'{j} = "{a}"\n' for j, a in others.items())
        path.write_text(text)

    def log_path(self, k: int) -> Path:
        return self.root / f"node{k}" / "stderr.log"

    def start(self, k: int) -> None:
        with open(self.log_path(k), "ab") as err:
            self.procs[k] = subprocess.Popen(
                [*self.lab.exec_prefix(k), sys.executable, "-c", _CHILD, "run", "--config",
                 str(self.config(k))],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=self.env,
                cwd=self.root,  # not the source tree: `python -c` puts the cwd first on sys.path
            )

    def running(self, k: int) -> bool:
        p = self.procs.get(k)
        return p is not None and p.poll() is None

    def signal(self, k: int, sig: signal.Signals) -> None:
        p = self.procs.get(k)
        if p is not None and p.poll() is None:
            p.send_signal(sig)

    def kill(self, k: int) -> None:
        p = self.procs.get(k)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(timeout=10)

    def stop(self, k: int) -> int | None:
        """SIGTERM (after SIGCONT) and wait: the exit status, None if it had to be killed."""
        p = self.procs.get(k)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
                return None
        return p.returncode

    def close(self) -> None:
        for k in list(self.procs):
            with contextlib.suppress(Exception):
                self.kill(k)
