"""Scenario files for `hzp2p sim`: TOML in, frozen dataclasses out, every field validated.

Owns the scenario format (docs/simulations.md has the reference): cluster
shape, workload (rate, mix of transaction types, clients), network (latency
distribution, loss, bandwidth), disk, a fault schedule with times, and the
duration and seed. Both engines (deterministic and live) read the same
`Scenario`. Every error is a `ScenarioError` naming the file and the field
(`faults[2].kind`), so the command can exit 2 with a one-line reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

FAULT_KINDS = (
    "isolate_leader",
    "split",
    "bridge",
    "one_way",
    "flap",
    "crash",
    "pause",
    "slow_disk",
    "lossy",
)
"""isolate_leader: cut the leader off from everyone; split: a minority of voters from the
rest; bridge: every node but the target split in two halves that cannot see each other,
while the target (the bridge) sees both; one_way: drop one node's outbound (or inbound) links; flap: a link between two
nodes goes up and down; crash: kill a node (restarted when the fault ends); pause:
freeze a node (SIGSTOP live; cut off in the deterministic engine); slow_disk: fsyncs
take `fsync_ms`; lossy: the whole network loses `loss` of its messages."""

TARGETS = ("leader", "follower", "voter", "learner")
MAX_NODES = 256
MAX_DURATION_S = 3600.0
MAX_FAULTS = 200
MAX_RATE_PER_S = 100_000.0


class ScenarioError(Exception):
    """An invalid scenario: str() is `FILE: FIELD: problem`."""

    def __init__(self, file: str, field_name: str, problem: str) -> None:
        self.file = file
        self.field = field_name
        self.problem = problem
        super().__init__(f"{file}: {field_name}: {problem}")


@dataclass(frozen=True, slots=True)
class Cluster:
    voters: int = 3
    learners: int = 0


@dataclass(frozen=True, slots=True)
class Workload:
    tx_rate_per_s: float = 200.0
    """Transactions offered per second (Poisson arrivals, shared by the clients)."""
    clients: int = 4
    mix: tuple[tuple[str, float], ...] = (("epi.report", 1.0),)
    """(transaction type, weight); weights need not sum to 1."""
    max_batch_txs: int = 256
    """At most this many transactions in one proposal (a block)."""
    block_interval_ms: int = 50
    """A client proposes at most one block per interval (the daemon's ledger.block_interval_ms)."""


@dataclass(frozen=True, slots=True)
class Network:
    latency_ms_min: int = 1
    latency_ms_max: int = 6
    spike_prob: float = 0.0
    """Chance that a message takes up to `spike_ms` instead (the latency's long tail)."""
    spike_ms: int = 60
    loss: float = 0.0
    duplicate: float = 0.0
    bandwidth_mbit_s: float = 0.0
    """Each node's egress, shared by all its links (messages leave one after another);
    0 = unlimited."""
    half_open_ms: int = 0
    """A link healed after a partition stays dead this long (a half-open connection not yet
    noticed: with the daemon's defaults about two keepalives, 2,000 ms); 0 = not modelled."""


@dataclass(frozen=True, slots=True)
class Disk:
    fsync_ms_min: int = 1
    fsync_ms_max: int = 4


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float
    target: str | int = "leader"
    """A node id, or leader / follower / voter / learner (resolved when the fault starts)."""
    minority: int = 1
    """split: voters on the small side."""
    direction: str = "outbound"
    """one_way: outbound (the target's messages are lost) or inbound."""
    period_ms: int = 300
    """flap: the link changes state every period_ms."""
    fsync_ms: int = 200
    """slow_disk: every fsync of the target takes this long."""
    loss: float = 0.3
    """lossy: message loss while the fault lasts."""

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str = ""
    duration_s: float = 10.0
    seed: int = 1
    cluster: Cluster = field(default_factory=Cluster)
    workload: Workload = field(default_factory=Workload)
    network: Network = field(default_factory=Network)
    disk: Disk = field(default_factory=Disk)
    faults: tuple[Fault, ...] = ()
    election_ticks: int = 10
    """Election timeout in ticks (one tick = 10 ms in the deterministic engine)."""
    heartbeat_ticks: int = 2
    source: str = ""

    @property
    def nodes(self) -> int:
        return self.cluster.voters + self.cluster.learners

    def with_seed(self, seed: int) -> Scenario:
        return replace(self, seed=seed)


# ------------------------------------------------------------------ parsing


class _Table:
    """A TOML table being read; knows its path for error messages and rejects unknown keys."""

    def __init__(self, file: str, data: Mapping[str, Any], prefix: str) -> None:
        self.file = file
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(self.file, self.name(key), problem)

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        v = self.get(key)
        if v is None:
            return default
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.error(key, f"must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise self.error(key, f"must be between {lo} and {hi}, got {v}")
        return v

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        v = self.get(key)
        if v is None:
            return default
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise self.error(key, f"must be a number, got {v!r}")
        if not lo <= float(v) <= hi:
            raise self.error(key, f"must be between {lo:g} and {hi:g}, got {v}")
        return float(v)

    def string(self, key: str, default: str | None, choices: tuple[str, ...] = ()) -> str:
        v = self.get(key)
        if v is None:
            if default is None:
                raise self.error(key, "is required")
            return default
        if not isinstance(v, str):
            raise self.error(key, f"must be a string, got {v!r}")
        if choices and v not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def table(self, key: str) -> _Table:
        v = self.get(key)
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise self.error(key, "must be a table")
        return _Table(self.file, v, self.name(key) + ".")

    def finish(self) -> None:
        for key in sorted(set(self.data) - self.used):
            raise self.error(key, "unknown field")


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(p), "(file)", f"cannot read: {exc.strerror}") from None
    return parse_scenario(text, str(p))


def parse_scenario(text: str, file: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(file, "(syntax)", str(exc)) from None
    top = _Table(file, data, "")
    name = top.string("name", Path(file).stem if file != "<scenario>" else None)
    description = top.string("description", "")
    duration_s = top.number("duration_s", 10.0, 0.5, MAX_DURATION_S)
    seed = top.integer("seed", 1, 0, 2**63 - 1)
    election_ticks = top.integer("election_ticks", 10, 3, 1000)
    heartbeat_ticks = top.integer("heartbeat_ticks", 2, 1, 1000)
    if heartbeat_ticks >= election_ticks:
        raise top.error("heartbeat_ticks", f"must be below election_ticks ({election_ticks})")
    cluster = _cluster(top.table("cluster"))
    workload = _workload(top.table("workload"))
    network = _network(top.table("network"))
    disk = _disk(top.table("disk"))
    faults = _faults(top, duration_s, cluster)
    top.finish()
    return Scenario(
        name=name,
        description=description,
        duration_s=duration_s,
        seed=seed,
        cluster=cluster,
        workload=workload,
        network=network,
        disk=disk,
        faults=faults,
        election_ticks=election_ticks,
        heartbeat_ticks=heartbeat_ticks,
        source=file,
    )


def _cluster(t: _Table) -> Cluster:
    voters = t.integer("voters", 3, 1, 51)
    learners = t.integer("learners", 0, 0, MAX_NODES - voters)
    t.finish()
    return Cluster(voters, learners)


def _workload(t: _Table) -> Workload:
    from hzp2p.contracts.engine import load_contracts
    from hzp2p.contracts.registry import PAYLOAD_GENERATORS

    rate = t.number("tx_rate_per_s", 200.0, 0.0, MAX_RATE_PER_S)
    clients = t.integer("clients", 4, 1, 1000)
    max_batch = t.integer("max_batch_txs", 256, 1, 10_000)
    interval = t.integer("block_interval_ms", 50, 0, 60_000)
    mix_t = t.table("mix")
    mix: list[tuple[str, float]] = []
    if mix_t.data:
        load_contracts()
        for tx_type in sorted(mix_t.data):
            w = mix_t.number(tx_type, 0.0, 0.0, 1e9)
            if tx_type not in PAYLOAD_GENERATORS:
                known = ", ".join(sorted(PAYLOAD_GENERATORS))
                raise mix_t.error(tx_type, f"no workload generator for this type (known: {known})")
            if w > 0:
                mix.append((tx_type, w))
        if not mix:
            raise t.error("mix", "needs at least one type with a positive weight")
    mix_t.finish()
    t.finish()
    return Workload(rate, clients, tuple(mix) or (("epi.report", 1.0),), max_batch, interval)


def _network(t: _Table) -> Network:
    lo = t.integer("latency_ms_min", 1, 0, 10_000)
    hi = t.integer("latency_ms_max", max(lo, 6), 0, 10_000)
    if hi < lo:
        raise t.error("latency_ms_max", f"must be >= latency_ms_min ({lo}), got {hi}")
    spike_prob = t.number("spike_prob", 0.0, 0.0, 1.0)
    spike_ms = t.integer("spike_ms", max(hi, 60), 0, 60_000)
    if spike_ms < hi:
        raise t.error("spike_ms", f"must be >= latency_ms_max ({hi}), got {spike_ms}")
    loss = t.number("loss", 0.0, 0.0, 0.9)
    dup = t.number("duplicate", 0.0, 0.0, 0.9)
    bw = t.number("bandwidth_mbit_s", 0.0, 0.0, 1e6)
    half_open = t.integer("half_open_ms", 0, 0, 600_000)
    t.finish()
    return Network(lo, hi, spike_prob, spike_ms, loss, dup, bw, half_open)


def _disk(t: _Table) -> Disk:
    lo = t.integer("fsync_ms_min", 1, 0, 10_000)
    hi = t.integer("fsync_ms_max", max(lo, 4), 0, 10_000)
    if hi < lo:
        raise t.error("fsync_ms_max", f"must be >= fsync_ms_min ({lo}), got {hi}")
    t.finish()
    return Disk(lo, hi)


def _faults(top: _Table, duration_s: float, cluster: Cluster) -> tuple[Fault, ...]:
    raw = top.get("faults")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
        raise top.error("faults", "must be an array of tables ([[faults]])")
    if len(raw) > MAX_FAULTS:
        raise top.error("faults", f"at most {MAX_FAULTS} faults, got {len(raw)}")
    n = cluster.voters + cluster.learners
    out: list[Fault] = []
    for i, item in enumerate(raw):
        t = _Table(top.file, item, f"faults[{i}].")
        kind = t.string("kind", None, FAULT_KINDS)
        at_s = t.number("at_s", 0.0, 0.0, MAX_DURATION_S)
        if at_s >= duration_s:
            raise t.error("at_s", f"must be before the end of the run ({duration_s:g} s)")
        dur = t.number("duration_s", 1.0, 0.01, MAX_DURATION_S)
        tv = t.get("target")
        target: str | int = "leader"
        if tv is not None:
            if isinstance(tv, bool) or not isinstance(tv, str | int):
                raise t.error("target", f"must be a node id or one of {', '.join(TARGETS)}")
            if isinstance(tv, int) and not 1 <= tv <= n:
                raise t.error("target", f"node {tv} does not exist (nodes 1..{n})")
            if isinstance(tv, str) and tv not in TARGETS:
                raise t.error("target", f"must be a node id or one of {', '.join(TARGETS)}")
            target = tv
        if kind in ("crash", "pause") and target == "learner" and not cluster.learners:
            raise t.error("target", "the cluster has no learners")
        minority = t.integer("minority", 1, 1, max(1, (cluster.voters - 1) // 2))
        direction = t.string("direction", "outbound", ("outbound", "inbound"))
        period_ms = t.integer("period_ms", 300, 10, 60_000)
        fsync_ms = t.integer("fsync_ms", 200, 1, 60_000)
        loss = t.number("loss", 0.3, 0.0, 0.9)
        t.finish()
        out.append(Fault(kind, at_s, dur, target, minority, direction, period_ms, fsync_ms, loss))
    return tuple(sorted(out, key=lambda f: f.at_s))
