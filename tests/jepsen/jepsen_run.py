"""One Jepsen-style run: a seeded nemesis against real daemons while CLI clients submit,
then a checker over the recorded history and every node's chain.

The nemesis applies its faults one at a time, each followed by a heal:

  leader_isolated   the leader alone on its own bridge
  leader_minority   the leader and one other node cut off from the other three
  random_split      a random minority (1 or 2 nodes) cut off; the leader may be on either side
  sigstop           SIGSTOP a node (the leader or, by the seed, any), SIGCONT at the heal
  sigkill_restart   SIGKILL the leader, start it again at the heal
  after_heal        two followers cut off for 7-12 s and healed; one second after the heal
                    (before the cluster has necessarily converged) the leader and a third
                    node are cut off, so the new majority needs the links the first split
                    broke (the slow case issue 22 measured: TCP's retransmission back-off
                    keeps such links dead for seconds after a heal)

For each fault it reports the time from the fault to a leader on the majority side (a
node there leading at a newer term, or the old leader if it stayed there) and the time
from the heal until every node names the same leader and has caught up with the height
held when the heal began. Clients run `hzp2p admin submit epi.report` through random
nodes with every other node as --fallback, recording each operation (node, report id,
start, end, outcome). The checker then asks: is every acknowledged transaction applied
exactly once on every node, is every applied report one a client submitted (its hash is
the one its node signs deterministically for it), are the chains identical, does
`admin verify` pass everywhere, and does every daemon shut down cleanly?
"""

from __future__ import annotations

import json
import random
import signal
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import trio
from jepsen_cluster import NetnsCluster

from hzp2p.admin.client import AdminClientError, open_admin_client
from hzp2p.admin.protocol import AdminError
from hzp2p.ledger.genesis import load_genesis
from hzp2p.node.keys import load_signing_key
from hzp2p.node.submit import IdempotentSigner

KINDS = ("leader_isolated", "leader_minority", "random_split", "sigstop", "sigkill_restart",
         "after_heal")
PARTITIONS = ("leader_isolated", "leader_minority", "random_split", "after_heal")
POLL_S = 0.1
STATUS_TIMEOUT_S = 0.5
CONVERGE_TIMEOUT_S = 30.0


@dataclass
class Op:
    op_id: int
    client: int
    node: int
    report_id: str
    start_s: float
    end_s: float = 0.0
    exit: int | None = None
    status: str | None = None
    tx_hash: str | None = None
    error: str | None = None


@dataclass
class Fault:
    kind: str
    targets: list[int]
    majority: list[int]
    old_leader: int
    old_term: int
    start_s: float
    duration_s: float
    new_leader: int | None = None
    new_leader_s: float | None = None
    heal_s: float = 0.0
    converge_s: float | None = None
    ready_s: float | None = None
    """sigkill_restart: from the restart until the daemon answers on its admin socket."""


@dataclass
class Result:
    seed: int
    faults: list[Fault] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    height: int = 0

    def acked(self) -> list[Op]:
        return [o for o in self.ops if o.exit == 0 and o.status == "committed"]

    def table(self) -> str:
        lines = [f"seed {self.seed}: {len(self.ops)} submits, {len(self.acked())} acknowledged, "
                 f"final height {self.height}",
                 f"{'fault':<18} {'targets':<8} {'dur s':>5} {'old':>3} {'new':>3} "
                 f"{'new leader s':>12} {'converge s':>10} {'(restart s)':>11}"]
        for f in self.faults:
            nl = "-" if f.new_leader_s is None else f"{f.new_leader_s:.2f}"
            cv = "-" if f.converge_s is None else f"{f.converge_s:.2f}"
            rs = "" if f.ready_s is None else f"{f.ready_s:.2f}"
            lines.append(f"{f.kind:<18} {','.join(map(str, f.targets)):<8} {f.duration_s:>5.1f} "
                         f"{f.old_leader:>3} {f.new_leader or '-':>3} {nl:>12} {cv:>10} {rs:>11}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"seed": self.seed, "height": self.height, "problems": self.problems,
                           "faults": [asdict(f) for f in self.faults],
                           "ops": [asdict(o) for o in self.ops]}, indent=1)


class JepsenRun:
    def __init__(self, cluster: NetnsCluster, seed: int, *, faults: int, clients: int,
                 fault_s: tuple[float, float], wait_s: float,
                 kinds: tuple[str, ...] = KINDS) -> None:
        self.c = cluster
        self.kinds = kinds
        self.schedule: list[str] = []
        self.rng = random.Random(seed)
        self.result = Result(seed)
        self.n_faults = faults
        self.n_clients = clients
        self.fault_s = fault_s
        self.wait_s = wait_s
        self.latest: dict[int, tuple[float, dict[str, Any] | None]] = {
            k: (0.0, None) for k in cluster.ids
        }
        self.t0 = 0.0

    def now(self) -> float:
        return trio.current_time() - self.t0

    # ---------------------------------------------------------------- observation
    async def _watch(self, k: int) -> None:
        while True:
            try:
                async with open_admin_client(self.c.sockets[k], connect_timeout_s=1.0) as cl:
                    while True:
                        t = self.now()
                        st = await cl.call("status", timeout_s=STATUS_TIMEOUT_S)
                        self.latest[k] = (t, st)
                        await trio.sleep(POLL_S)
            except (AdminClientError, AdminError, OSError):
                self.latest[k] = (self.now(), None)
                await trio.sleep(POLL_S)

    def fresh(self, k: int, since: float) -> dict[str, Any] | None:
        t, st = self.latest[k]
        return st if t >= since else None

    async def leader(self, timeout_s: float = 30.0) -> tuple[int, int]:
        """The leader every live node agrees on, and its term."""
        with trio.fail_after(timeout_s):
            while True:
                since = self.now() - 2 * POLL_S - STATUS_TIMEOUT_S
                sts = [s for k in self.c.ids if (s := self.fresh(k, since)) is not None]
                leaders = {s["leader_id"] or 0 for s in sts}
                if len(sts) == len(self.c.ids) and len(leaders) == 1 and 0 not in leaders:
                    lead = leaders.pop()
                    st = next((s for s in sts if s["node_id"] == lead), None)
                    if st is not None and st["role"] == "leader":
                        return int(lead), int(st["term"])
                await trio.sleep(POLL_S / 2)

    # ---------------------------------------------------------------- clients
    async def _client(self, n: int, stop: trio.Event) -> None:
        rng = random.Random(self.result.seed * 1000 + n)
        i = 0
        while not stop.is_set():
            k = rng.choice(self.c.ids)
            op = Op(len(self.result.ops), n, k, f"j{self.result.seed}-{n}-{i}", self.now())
            i += 1
            self.result.ops.append(op)
            payload = {"report_id": op.report_id, "region": "r", "metric": "cases",
                       "value": op.op_id, "period": "p"}
            argv = [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(self.c.config(k)),
                    "--json", "submit", "epi.report", "--payload", json.dumps(payload),
                    "--wait", str(self.wait_s)]
            for j in self.c.ids:
                if j != k:
                    argv += ["--fallback", str(self.c.config(j))]
            done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                          check=False)
            op.end_s, op.exit = self.now(), done.returncode
            try:
                out = json.loads(done.stdout or b"{}")
            except ValueError:
                out = {}
            if "error" in out:
                op.error = f"{out['error'].get('code')}: {out['error'].get('message')}"
            else:
                op.status, op.tx_hash = out.get("status"), out.get("tx_hash")
                if op.exit != 0:
                    op.error = done.stderr.decode(errors="replace").strip()[-300:]

    # ---------------------------------------------------------------- nemesis
    async def _fault(self) -> None:
        ids, rng = self.c.ids, self.rng
        if not self.schedule:  # every kind once per round, in a seeded order
            self.schedule = rng.sample(self.kinds, len(self.kinds))
        kind = self.schedule.pop()
        lead, term = await self.leader()
        others = [k for k in ids if k != lead]
        if kind == "leader_isolated":
            targets = [lead]
        elif kind == "leader_minority":
            targets = [lead, rng.choice(others)]
        elif kind == "random_split":
            targets = rng.sample(ids, rng.choice([1, 2]))
        elif kind == "sigstop":
            targets = [lead if rng.random() < 0.6 else rng.choice(ids)]
        elif kind == "sigkill_restart":
            targets = [lead]
        else:  # after_heal: first cut two followers off, long enough for TCP to back off
            first = rng.sample(others, 2)
            await self._apply("after_heal:split", first, lead, term, rng.uniform(7.0, 12.0),
                              converge=False)
            lead, term = await self.any_leader()
            third = rng.choice([k for k in ids if k != lead and k not in first])
            targets = [lead, third]
        await self._apply(kind, targets, lead, term, rng.uniform(*self.fault_s))

    async def any_leader(self, timeout_s: float = 30.0) -> tuple[int, int]:
        """The node that reports itself leader at the highest term (others may not know yet)."""
        with trio.fail_after(timeout_s):
            while True:
                since = self.now() - 2 * POLL_S - STATUS_TIMEOUT_S
                sts = [s for k in self.c.ids if (s := self.fresh(k, since)) is not None]
                leaders = [s for s in sts if s["role"] == "leader"]
                if leaders:
                    best = max(leaders, key=lambda s: s["term"])
                    return int(best["node_id"]), int(best["term"])
                await trio.sleep(POLL_S / 2)

    async def _apply(self, kind: str, targets: list[int], lead: int, term: int,
                     dur: float, *, converge: bool = True) -> None:
        """Apply one fault for `dur` s, measure the new leader, heal, measure convergence."""
        majority = [k for k in self.c.ids if k not in targets]
        f = Fault(kind, sorted(targets), majority, lead, term, self.now(), dur)
        self.result.faults.append(f)
        if kind.startswith(PARTITIONS):
            await trio.to_thread.run_sync(self.c.lab.partition, [majority, targets])
        elif kind == "sigstop":
            self.c.signal(targets[0], signal.SIGSTOP)
        else:
            self.c.kill(targets[0])
        start = self.now()
        f.start_s = start
        while self.now() < start + dur:
            if f.new_leader is None:
                for k in majority:
                    st = self.fresh(k, start)
                    if st is not None and st["role"] == "leader" and (
                        st["term"] > term or k == lead
                    ):
                        f.new_leader, f.new_leader_s = k, self.latest[k][0] - start
            await trio.sleep(POLL_S / 2)
        height = max((st or {}).get("height", 0) for _, st in self.latest.values())
        if kind.startswith(PARTITIONS):
            await trio.to_thread.run_sync(self.c.lab.heal)
        elif kind == "sigstop":
            self.c.signal(targets[0], signal.SIGCONT)
        else:
            self.c.start(targets[0])
        f.heal_s = self.now()
        if not converge:  # the next fault follows the heal at once
            await trio.sleep(1.0)
            return
        with trio.move_on_after(CONVERGE_TIMEOUT_S):
            while not self._converged(f.heal_s, height):
                if f.ready_s is None and kind == "sigkill_restart":
                    t, st = self.latest[targets[0]]
                    if st is not None and t >= f.heal_s:
                        f.ready_s = t - f.heal_s
                await trio.sleep(POLL_S / 2)
            f.converge_s = self.now() - f.heal_s
        await trio.sleep(0.5)

    def _converged(self, since: float, height: int) -> bool:
        sts = [self.fresh(k, since) for k in self.c.ids]
        if any(s is None for s in sts):
            return False
        leaders = {s["leader_id"] or 0 for s in sts if s is not None}
        return len(leaders) == 1 and 0 not in leaders and all(
            s is not None and s["height"] >= height for s in sts
        )

    async def main(self) -> None:
        self.t0 = trio.current_time()
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for k in self.c.ids:
                nursery.start_soon(self._watch, k)
            await self.leader(60)
            async with trio.open_nursery() as clients:
                for n in range(self.n_clients):
                    clients.start_soon(self._client, n, stop)
                await trio.sleep(1.0)
                for _ in range(self.n_faults):
                    await self._fault()
                stop.set()
            nursery.cancel_scope.cancel()

    # ---------------------------------------------------------------- checker
    async def check(self) -> None:
        c, res = self.c, self.result
        problems = res.problems
        heights: dict[int, int] = {}
        with trio.move_on_after(60):
            while True:
                sts = {}
                for k in c.ids:
                    async with open_admin_client(c.sockets[k]) as cl:
                        sts[k] = await cl.call("status")
                heads = {(s["height"], s.get("head_hash")) for s in sts.values()}
                if len(heads) == 1:
                    heights = {k: s["height"] for k, s in sts.items()}
                    break
                await trio.sleep(0.2)
        if not heights:
            problems.append("the nodes did not converge within 60 s after the last heal")
            return
        height = res.height = heights[c.ids[0]]
        chains: dict[int, list[str]] = {}
        applied: dict[int, dict[str, int]] = {}
        for k in c.ids:
            async with open_admin_client(c.sockets[k]) as cl:
                chains[k], applied[k] = [], {}
                for h in range(1, height + 1):
                    b = await cl.call("block", {"height": h})
                    chains[k].append(b["hash"])
                    for tx in b["txs"]:
                        if tx["type"] == "epi.report" and tx["status"] == "committed":
                            applied[k][tx["tx_hash"]] = applied[k].get(tx["tx_hash"], 0) + 1
                if not (await cl.call("verify", timeout_s=120))["ok"]:
                    problems.append(f"node {k}: admin verify failed")
        if any(ch != chains[c.ids[0]] for ch in chains.values()):
            problems.append("the nodes' chains differ")
        expected = self._expected_hashes()
        submitted = set(expected.values())
        for op in res.ops:
            if op.tx_hash is not None and op.tx_hash != expected[op.op_id]:
                problems.append(f"op {op.op_id}: receipt hash {op.tx_hash} is not the one its "
                                f"node signs ({expected[op.op_id]})")
        for k in c.ids:
            for op in res.acked():
                n = applied[k].get(expected[op.op_id], 0)
                if n != 1:
                    problems.append(f"node {k}: acknowledged op {op.op_id} ({op.report_id}) "
                                    f"applied {n} times")
            for h, n in applied[k].items():
                if h not in submitted:
                    problems.append(f"node {k}: applied {h}, which no client submitted")
                elif n != 1:
                    problems.append(f"node {k}: {h} applied {n} times")

    def _expected_hashes(self) -> dict[int, str]:
        root = self.c.root
        chain_id = load_genesis(root / "genesis.toml").chain_id
        signers = {k: IdempotentSigner(load_signing_key(root / f"node{k}" / "signing.key"),
                                       chain_id) for k in self.c.ids}
        out = {}
        for op in self.result.ops:
            payload = {"report_id": op.report_id, "region": "r", "metric": "cases",
                       "value": op.op_id, "period": "p"}
            out[op.op_id] = signers[op.node].sign("epi.report", payload, None).hash.hex()
        return out

    def shutdown(self) -> None:
        for k in self.c.ids:
            code = self.c.stop(k)
            if code != 0:
                self.result.problems.append(f"node {k}: unclean shutdown (exit {code})")
