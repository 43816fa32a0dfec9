"""Process accounting, etcd and py-spy helpers for benchmarks/vs_pysyncobj.py.

It owns what the side-by-side benchmark needs besides the clusters under test:
CPU seconds and peak memory of a process read from /proc (no psutil), a
3- or 5-node etcd cluster of real `etcd` processes on loopback driven through
its v3 JSON gateway (`/v3/kv/put`) by a minimal keep-alive HTTP/1.1 client on
Trio, and py-spy recordings of running daemons summarised as the functions
with the largest share of samples. Every process started here is killed in a
`finally` (by pid), so a benchmark leaves nothing running.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

CLK_TCK = os.sysconf("SC_CLK_TCK")


def die_with_parent() -> None:
    """preexec_fn: Linux PR_SET_PDEATHSIG, so a child never outlives a killed benchmark."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the comm field: state=0 ... utime=11, stime=12 (fields 14 and 15 of stat(5))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def latency_summary(lat_s: list[float]) -> dict[str, float]:
    return {
        "seq_p50_ms": round(statistics.median(lat_s) * 1000, 2) if lat_s else 0.0,
        "seq_p99_ms": round(percentile(lat_s, 0.99) * 1000, 2),
    }


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL whatever is left; waits for every child."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


# ---------------------------------------------------------------------------- etcd


def etcd_available() -> bool:
    return shutil.which("etcd") is not None


@contextlib.contextmanager
def etcd_cluster(root: Path, nodes: int) -> Iterator[tuple[list[int], list[subprocess.Popen[bytes]]]]:
    """`nodes` etcd members on 127.0.0.1; yields (client ports, processes)."""
    ports = free_ports(2 * nodes)
    client, peer = ports[:nodes], ports[nodes:]
    initial = ",".join(f"e{i}=http://127.0.0.1:{peer[i]}" for i in range(nodes))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(nodes):
            d = root / f"e{i}"
            d.mkdir(parents=True)
            log = open(d / "etcd.log", "ab")  # noqa: SIM115 - handed to the child
            procs.append(subprocess.Popen(
                ["etcd", "--name", f"e{i}", "--data-dir", str(d / "data"),
                 "--listen-client-urls", f"http://127.0.0.1:{client[i]}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client[i]}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"bench-{os.getpid()}", "--log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=die_with_parent,
            ))
            log.close()
        yield client, procs
    finally:
        kill_all(procs)


class _Http:
    """One keep-alive HTTP/1.1 connection: POST JSON, read a Content-Length response."""

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream, self.port, self.buf = stream, port, b""

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        await self.stream.send_all(req + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += await self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(self.buf) < length:
            self.buf += await self._more()
        out, self.buf = self.buf[:length], self.buf[length:]
        return status, out

    async def _more(self) -> bytes:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("etcd closed the connection")
        return data


def _put_body(i: int, value: bytes) -> bytes:
    key = base64.b64encode(b"bench/%d" % i).decode()
    return json.dumps({"key": key, "value": base64.b64encode(value).decode()}).encode()


async def etcd_wait_ready(ports: list[int], timeout_s: float = 30) -> None:
    with trio.fail_after(timeout_s):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", ports[0])
                async with stream:
                    st, _ = await _Http(stream, ports[0]).post("/v3/kv/put", _put_body(-1, b"x"))
                if st == 200:
                    return
            except (OSError, ConnectionError):
                pass
            await trio.sleep(0.2)


async def etcd_load(ports: list[int], ops: int, seq: int, size: int, clients: int,
                    between: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """`ops` concurrent 200-byte puts from `clients` keep-alive connections spread over every
    member, then `seq` sequential puts; each put is answered after the quorum's fsync."""
    value = os.urandom(size)
    todo = iter(range(ops))
    errors = 0

    async def worker(k: int) -> None:
        nonlocal errors
        port = ports[k % len(ports)]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            http = _Http(stream, port)
            for i in todo:
                st, _ = await http.post("/v3/kv/put", _put_body(i, value))
                errors += st != 200

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(clients):
            nursery.start_soon(worker, k)
    elapsed = time.perf_counter() - t0
    between()
    lat: list[float] = []
    stream = await trio.open_tcp_stream("127.0.0.1", ports[0])
    async with stream:
        http = _Http(stream, ports[0])
        for i in range(seq):
            t = time.perf_counter()
            st, _ = await http.post("/v3/kv/put", _put_body(ops + i, value))
            lat.append(time.perf_counter() - t)
            errors += st != 200
    return {"ops_per_s": round(ops / elapsed, 1), "elapsed_s": round(elapsed, 3),
            "errors": errors, **latency_summary(lat)}


# ---------------------------------------------------------------------------- py-spy


def pyspy_path() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start_pyspy(pid: int, out: Path, duration_s: int) -> subprocess.Popen[bytes] | None:
    exe = pyspy_path()
    if exe is None:
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--format", "raw", "-o", str(out), "--rate", "250",
         "--duration", str(duration_s), "--nonblocking", "--threads"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Collapsed stacks -> the functions with the largest self and inclusive share."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    if not path.exists():
        return {"samples": 0, "self": [], "inclusive": []}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n

    def share(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * k / total, 1)) for f, k in c.most_common(top)] if total else []

    return {"samples": total, "self": share(own), "inclusive": share(incl)}


def _short(frame: str) -> str:
    """'func (path/to/mod.py:123)' -> 'mod.py:func'; thread markers are dropped."""
    if frame.startswith("thread ") or frame.startswith("process "):
        return ""
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rsplit("/", 1)[-1]
    return f"{file}:{name}" if file else name
