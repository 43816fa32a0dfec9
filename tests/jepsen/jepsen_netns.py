"""Network namespaces for the Jepsen-style test: one per node, joined through bridges.

A "switch" namespace holds NODES bridges (br0 .. br{N-1}) and one veth pair per node
(`hK` in the switch, `eth0` in node K's namespace, address 10.77.0.K/24). All nodes
start on br0. A partition moves nodes' links to other bridges: packets across groups
are then dropped silently (no reset, no ICMP), which leaves established TCP
connections half-open, as a real switch failure or firewall drop does. `heal()` moves
every link back to br0. Every name carries a per-run tag (the test process's pid), so
parallel runs never collide, and `destroy()` deletes every namespace the run made (the
veths and bridges go with them); namespaces of dead earlier runs are removed too.
Nothing is created in the root namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

PREFIX = "hzj"
SUBNET = "10.77.0"
PORT = 7000


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None if they can)."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}probe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.decode(errors='replace').strip()}"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", probe)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _remove_stale() -> None:
    """Namespaces left by earlier runs whose process is gone (a killed test run)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        m = re.match(rf"({PREFIX}(\d+)\w*)", line.strip())
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", m.group(1))


class NetLab:
    """The namespaces and bridges of one run; use as a context manager."""

    def __init__(self, nodes: Sequence[int]) -> None:
        self.nodes = list(nodes)
        tag = f"{PREFIX}{os.getpid()}"
        self.switch = f"{tag}sw"
        self.ns = {k: f"{tag}n{k}" for k in self.nodes}
        self.made: list[str] = []
        self.placement = {k: 0 for k in self.nodes}

    def address(self, k: int) -> str:
        return f"{SUBNET}.{k}"

    def create(self) -> None:
        _remove_stale()
        sw = self.switch
        _ip("netns", "add", sw)
        self.made.append(sw)
        _ip("link", "set", "lo", "up", ns=sw)
        for b in range(len(self.nodes)):
            _ip("link", "add", f"br{b}", "type", "bridge", "forward_delay", "0", ns=sw)
            _ip("link", "set", f"br{b}", "up", ns=sw)
        for k in self.nodes:
            ns = self.ns[k]
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("link", "add", f"h{k}", "type", "veth", "peer", "name", "eth0", "netns", ns, ns=sw)
            _ip("link", "set", f"h{k}", "master", "br0", ns=sw)
            _ip("link", "set", f"h{k}", "up", ns=sw)
            _ip("addr", "add", f"{self.address(k)}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Each group on its own bridge; nodes in no group stay where they are."""
        for b, group in enumerate(groups):
            for k in group:
                if self.placement[k] != b:
                    _ip("link", "set", f"h{k}", "master", f"br{b}", ns=self.switch)
                    self.placement[k] = b

    def heal(self) -> None:
        self.partition([self.nodes])

    def exec_prefix(self, k: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns[k]]

    def destroy(self) -> None:
        for ns in reversed(self.made):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                _ip("netns", "del", ns)
        self.made.clear()

    def __enter__(self) -> NetLab:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
