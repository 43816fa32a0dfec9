"""The live engine of `hzp2p sim`: real `hzp2p run` daemons, a relay, real clients, real faults.

Owns one live run of a scenario: an `hzp2p init`-style consortium in
--out/cluster (hzp2p.tools.localcluster), every node pair routed through the
fault-injecting relay (hzp2p.sim.relay) via [net.peer_addresses] with no seeds,
so neither dialling nor discovery bypasses it; load from real clients that
submit pre-signed transactions over the admin sockets (a few connections, many
pipelined calls each; a call that fails is retried with the same transaction,
which the ledger never applies twice); faults at wall-clock times (relay blocks
for partitions and one-way links, SIGSTOP/SIGCONT for pauses, SIGKILL and a
restart for crashes). A sampler polls every node's status for the leader, the
elections, lag, time to a new leader and time to converge. After the load, all
faults heal and the run checks black-box safety: at most one leader seen per
term, every node's chain verifies and all heads agree, and every acknowledged
transaction sits exactly once in the chain at the height its receipt named.
Every child process is killed in `finally`, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from hzp2p.admin.client import AdminClientError, AdminConnectionLost, open_admin_client
from hzp2p.admin.protocol import AdminError
from hzp2p.contracts.engine import load_contracts
from hzp2p.contracts.registry import PAYLOAD_GENERATORS, PAYLOAD_ROLES
from hzp2p.ledger.genesis import load_genesis
from hzp2p.ledger.tx import Transaction
from hzp2p.node.keys import load_signing_key
from hzp2p.sim.network import bridge_halves, partition_links
from hzp2p.sim.record import FaultRecord, RunRecord
from hzp2p.sim.relay import RETRANSMIT_MS, Link, Relay
from hzp2p.sim.scenario import Fault, Scenario
from hzp2p.tools.localcluster import ClusterError, LocalCluster

LIVE_TICK_MS = 50
POLL_S = 0.1
SAMPLE_S = 0.05
LAG_EVERY = 2  # samples
START_TIMEOUT_S = 40.0
DRAIN_S = 10.0
CONVERGE_TIMEOUT_S = 40.0
SUBMIT_WAIT_S = 8.0
MAX_INFLIGHT_PER_CLIENT = 512
MAX_RESUBMITS = 1_000_000
MAX_LIVE_NODES = 9
"""Each ordered pair gets a relay port and each node a process: keep live clusters small."""

ProgressFn = Callable[[float], None]
Errors = (AdminClientError, AdminError, OSError)


class LiveError(Exception):
    """The live cluster could not be set up or run (not a safety verdict)."""


class LiveRun:
    def __init__(self, scn: Scenario, root: Path, progress: ProgressFn | None) -> None:
        if scn.nodes > MAX_LIVE_NODES:
            raise LiveError(f"{scn.nodes} nodes: the live engine runs at most {MAX_LIVE_NODES}")
        self.scn = scn
        self.progress = progress
        if root.exists():
            shutil.rmtree(root)
        self.cluster = LocalCluster(
            root,
            scn.cluster.voters,
            scn.cluster.learners,
            election_ticks=scn.election_ticks,
            tick_ms=LIVE_TICK_MS,
        )
        self.ids = self.cluster.ids
        self.voters = self.ids[: scn.cluster.voters]
        targets = {}
        for k, f in self.cluster.files.items():
            host, _, port = f.address.rpartition(":")
            targets[k] = (host, int(port))
        self.rng = random.Random(scn.seed)
        self.relay = Relay(targets, scn.network, random.Random(scn.seed + 1))
        self.rec = RunRecord(engine="live", scenario=scn.name, seed=scn.seed)
        self.rec.node_ids = list(self.ids)
        self.status: dict[int, dict[str, Any] | None] = {k: None for k in self.ids}
        self.paused: set[int] = set()
        self.crashed: set[int] = set()
        self.t0 = 0.0
        self.issuing = True
        self.inflight = 0
        self.retry: list[tuple[str, str, float]] = []
        self.txs: list[tuple[str, str]] = []
        self.acked: dict[str, int] = {}  # tx hash -> height in its receipt
        self.rejected = 0
        self.resubmits = 0
        self.leader_of_term: dict[int, int] = {}
        self.last_leader: int | None = None
        self.loss_open: list[FaultRecord] = []
        self.heal_open: list[tuple[FaultRecord, int]] = []
        self.last_height: dict[int, int] = {k: 0 for k in self.ids}

    def now_ms(self) -> int:
        return int((trio.current_time() - self.t0) * 1000)

    # --- setup -------------------------------------------------------------------------

    def _write_configs(self) -> None:
        for k, f in self.cluster.files.items():
            text = f.config.read_text(encoding="utf-8")
            lines = [
                ln if not ln.startswith("seeds = ") else "seeds = []" for ln in text.splitlines()
            ]
            lines += ["", "[net]", "keepalive_s = 0.5", "read_timeout_s = 2.0", "",
                      "[net.peer_addresses]"]  # fmt: skip
            lines += [f'{j} = "127.0.0.1:{self.relay.ports[(k, j)]}"' for j in self.ids if j != k]
            f.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _presign(self) -> None:
        load_contracts()
        scn, w = self.scn, self.scn.workload
        root = self.cluster.root
        genesis = load_genesis(root / "genesis.toml")
        keys = {
            k: load_signing_key(f.directory / "signing.key") for k, f in self.cluster.files.items()
        }
        signers: dict[str, list[int]] = {}
        for t, _ in w.mix:
            roles = PAYLOAD_ROLES.get(t, ())
            ids = [i.inst_id for i in genesis.institutions
                   if not roles or any(r in i.roles for r in roles)]  # fmt: skip
            if not ids:
                raise LiveError(f"workload.mix: {t} needs a member with role {'/'.join(roles)}")
            signers[t] = ids
        n = int(w.tx_rate_per_s * scn.duration_s * 1.2) + 50
        types = self.rng.choices([t for t, _ in w.mix], [x for _, x in w.mix], k=n)
        now = int(time.time() * 1000)
        counters: dict[str, int] = {}
        for t in types:
            i = counters.get(t, 0)
            counters[t] = i + 1
            ids = signers[t]
            tx = Transaction.create(keys[ids[i % len(ids)]], genesis.chain_id, t,
                                    PAYLOAD_GENERATORS[t](i), nonce=i + 1,
                                    valid_from_ms=now - 60_000, valid_until_ms=now + 3_600_000)  # fmt: skip
            self.txs.append((tx.encode().hex(), tx.hash.hex()))
        self.txs.reverse()  # pop() from the end in order

    # --- observing -----------------------------------------------------------------------

    async def _poll(self, k: int) -> None:
        while True:
            try:
                async with open_admin_client(self.cluster.sockets[k], connect_timeout_s=1.0) as cl:
                    while True:
                        self.status[k] = await cl.call("status", timeout_s=1.0)
                        await trio.sleep(POLL_S)
            except Errors:
                self.status[k] = None
            await trio.sleep(0.2)

    def leader(self) -> int | None:
        best: tuple[int, int] | None = None
        for s in self.status.values():
            if s is not None and s["role"] == "leader" and (best is None or s["term"] > best[0]):
                best = (s["term"], s["node_id"])
        return best[1] if best else None

    async def _sampler(self) -> None:
        n = 0
        while True:
            now = self.now_ms()
            for s in self.status.values():
                if s is not None and s["role"] == "leader":
                    first = self.leader_of_term.setdefault(s["term"], s["node_id"])
                    if first != s["node_id"] and not any(
                        v["property"] == "election safety" for v in self.rec.violations
                    ):
                        self.rec.violations.append({"property": "election safety", "at_ms": now,
                            "detail": f"nodes {first} and {s['node_id']} both led term {s['term']}"})  # fmt: skip
                if s is not None:
                    self.last_height[s["node_id"]] = s["height"]
            leader = self.leader()
            if leader != self.last_leader:
                st = self.status.get(leader) if leader else None
                self.rec.leader_changes.append((now, leader or 0, st["term"] if st else 0))
                self.last_leader = leader
            if leader is not None:
                for fr in list(self.loss_open):
                    if leader != fr.leader_lost:
                        fr.new_leader_ms, fr.new_leader = now - fr.start_ms, leader
                        self.loss_open.remove(fr)
            for item in list(self.heal_open):
                fr, target = item
                up = [k for k in self.ids if k not in self.crashed and k not in self.paused]
                hs = [self.status[k]["height"] if self.status[k] else -1 for k in up]  # type: ignore[index]
                if hs and min(hs) >= target:
                    fr.converged_ms = now - fr.end_ms
                    self.heal_open.remove(item)
            n += 1
            if n % LAG_EVERY == 0 and self.issuing:
                top = max(self.last_height.values())
                self.rec.lag.append((now, [top - self.last_height[k] for k in self.ids]))
            if self.progress is not None and n % 10 == 0 and self.issuing:
                self.progress(min(0.99, now / 1000 / self.scn.duration_s))
            await trio.sleep(SAMPLE_S)

    # --- load --------------------------------------------------------------------------

    async def _client(self, c: int) -> None:
        w = self.scn.workload
        rng = random.Random(self.scn.seed * 1000 + c)
        mean_gap = w.clients / w.tx_rate_per_s if w.tx_rate_per_s > 0 else 0.0
        if mean_gap <= 0:
            return
        nodes = self.voters[c % len(self.voters) :] + self.voters[: c % len(self.voters)]
        sem = trio.Semaphore(MAX_INFLIGHT_PER_CLIENT)
        next_t = trio.current_time()
        attempt = 0
        while self.issuing:
            k = nodes[attempt % len(nodes)]
            attempt += 1
            try:
                async with (
                    open_admin_client(self.cluster.sockets[k], connect_timeout_s=1.0) as cl,
                    trio.open_nursery() as calls,
                ):
                    while self.issuing:
                        next_t = max(
                            next_t + rng.expovariate(1 / mean_gap), trio.current_time() - 1
                        )
                        await trio.sleep_until(next_t)
                        if self.retry:
                            item = self.retry.pop()
                        elif self.txs:
                            raw, h = self.txs.pop()
                            item = (raw, h, trio.current_time())
                        else:
                            break
                        await sem.acquire()
                        calls.start_soon(self._submit, cl, item, sem, calls.cancel_scope)
            except Errors:
                pass
            await trio.sleep(0.05)

    async def _submit(
        self, cl: Any, item: tuple[str, str, float], sem: trio.Semaphore, scope: trio.CancelScope
    ) -> None:
        done = False
        self.inflight += 1
        try:
            r = await cl.call("submit_raw", {"tx": item[0], "wait_s": SUBMIT_WAIT_S},
                              timeout_s=SUBMIT_WAIT_S + 2)  # fmt: skip
            st = r.get("status") if isinstance(r, dict) else None
            if st == "committed":
                self.acked[item[1]] = int(r["height"])
                now = trio.current_time()
                self.rec.tx_acks.append(((now - self.t0) * 1000, (now - item[2]) * 1000))
                done = True
            elif st == "rejected":
                self.rejected += 1
                done = True
        except AdminConnectionLost:
            scope.cancel()  # this connection is gone: the client reconnects elsewhere
        except Errors:
            pass
        finally:
            self.inflight -= 1
            sem.release()
            if not done and self.resubmits < MAX_RESUBMITS:
                self.resubmits += 1
                self.retry.append(item)  # same tx again: never applied twice

    # --- faults ------------------------------------------------------------------------

    def _resolve(self, f: Fault) -> int | None:
        if isinstance(f.target, int):
            return f.target
        leader = self.leader()
        live = [k for k in self.ids if k not in self.crashed and k not in self.paused]
        pool = {
            "leader": [leader] if leader else [],
            "follower": [v for v in self.voters if v != leader and v in live],
            "voter": [v for v in self.voters if v in live],
            "learner": [v for v in self.ids if v not in self.voters and v in live],
        }[f.target]
        return self.rng.choice(pool) if pool else None

    def _pair_links(self, group: list[int], rest: list[int]) -> set[Link]:
        return {(a, b) for a in group for b in rest} | {(b, a) for a in group for b in rest}

    async def _fault(self, f: Fault) -> None:
        await trio.sleep_until(self.t0 + f.at_s)
        end_s = min(f.end_s, self.scn.duration_s)
        leader = self.leader()
        target = self._resolve(f) if f.kind not in ("split", "lossy") else None
        fr = FaultRecord(f.kind, self.now_ms(), int(end_s * 1000), str(f.target))
        self.rec.faults.append(fr)
        if f.kind not in ("split", "lossy") and target is None:
            fr.detail = "no such node at this time: skipped"
            return
        others = [k for k in self.ids if k != target]
        links: set[Link] = set()
        flap: trio.CancelScope | None = None
        if f.kind == "isolate_leader":
            assert target is not None
            links = self._pair_links([target], others)
            fr.detail = f"node {target} cut off"
        elif f.kind == "split":
            pool = (
                [v for v in self.voters if v != leader] if f.target == "follower" else self.voters
            )
            minority = set(self.rng.sample(pool, min(f.minority, len(pool))))
            if f.target == "leader" and leader is not None and leader not in minority:
                minority.discard(max(minority))
                minority.add(leader)
            links = self._pair_links(sorted(minority), [k for k in self.ids if k not in minority])
            fr.detail = f"minority {sorted(minority)}"
            target = leader if leader in minority else None
        elif f.kind == "bridge":
            assert target is not None
            halves = bridge_halves(target, self.ids, self.rng)
            links = set(partition_links(halves))
            fr.detail = f"node {target} bridges {halves[0]} and {halves[1]}"
            target = None  # the bridge keeps every link: not a leader loss by itself
        elif f.kind == "one_way":
            links = {(target, b) if f.direction == "outbound" else (b, target) for b in others}  # type: ignore[misc]
            fr.detail = f"node {target} {f.direction} links dropped"
            target = target if f.direction == "outbound" else None
        elif f.kind == "pause":
            assert target is not None
            self.cluster.procs[target].send_signal(signal.SIGSTOP)
            self.paused.add(target)
            fr.detail = f"node {target} paused (SIGSTOP)"
        elif f.kind == "crash":
            assert target is not None
            self.cluster.kill(target)
            self.crashed.add(target)
            fr.detail = f"node {target} killed (SIGKILL)"
        elif f.kind == "lossy":
            self.relay.loss = f.loss
            fr.detail = f"loss {f.loss:.0%} (as {RETRANSMIT_MS} ms retransmissions)"
        elif f.kind == "flap":
            peer = next((v for v in self.voters if v != target), None)
            if peer is None:
                fr.detail = "no peer to flap with: skipped"
                return
            fr.detail = f"link {target}<->{peer} every {f.period_ms} ms"
            flap = trio.CancelScope()
            pair = self._pair_links([target], [peer])  # type: ignore[list-item]
            target = None  # as in the deterministic engine: a flap is not a leader loss
        else:  # slow_disk
            fr.detail = "slow_disk is not available in the live engine: skipped"
            return
        if target is not None and target == leader:
            fr.leader_lost = leader
            self.loss_open.append(fr)
        if links:
            self.relay.block(links)
        if flap is not None:
            down = False
            with flap, trio.move_on_at(self.t0 + end_s):
                while True:
                    down = not down
                    (self.relay.block if down else self.relay.unblock)(pair)
                    await trio.sleep(f.period_ms / 1000)
            if down:
                self.relay.unblock(pair)
        else:
            await trio.sleep_until(self.t0 + end_s)
        self._undo(f, target, links)
        fr.end_ms = self.now_ms()
        self.heal_open.append((fr, max(self.last_height.values())))

    def _undo(self, f: Fault, target: int | None, links: set[Link]) -> None:
        if links:
            self.relay.unblock(links)
        if f.kind == "lossy":
            self.relay.loss = self.scn.network.loss
        for k in sorted(self.paused if f.kind == "pause" else ()):
            self._resume(k)
        if f.kind == "crash":
            for k in sorted(self.crashed):
                self.crashed.discard(k)
                self.cluster.start(k)

    def _resume(self, k: int) -> None:
        with contextlib.suppress(ProcessLookupError, KeyError):
            self.cluster.procs[k].send_signal(signal.SIGCONT)
        self.paused.discard(k)

    # --- checks --------------------------------------------------------------------------

    async def _call(
        self, k: int, method: str, params: dict[str, Any], timeout_s: float = 10.0
    ) -> Any:
        async with open_admin_client(self.cluster.sockets[k], connect_timeout_s=2.0) as cl:
            return await cl.call(method, params, timeout_s=timeout_s)

    async def _converge(self) -> int | None:
        # Status samples can be 100 ms old: the heads must agree at or above every height a
        # receipt named, on two polls in a row (a race here once made acks look lost).
        floor = max(self.acked.values(), default=0)
        deadline = trio.current_time() + CONVERGE_TIMEOUT_S
        agreed: tuple[int, str] | None = None
        while trio.current_time() < deadline:
            sts = [self.status[k] for k in self.ids]
            if all(s is not None for s in sts):
                heads = {(s["height"], s["head_hash"]) for s in sts if s is not None}
                head = next(iter(heads))
                if len(heads) == 1 and head[0] >= floor and self.leader() is not None:
                    if agreed == head:
                        return int(head[0])
                    agreed = head
            await trio.sleep(2 * POLL_S)
        return None

    def _violation(self, prop: str, detail: str) -> None:
        self.rec.violations.append({"property": prop, "detail": detail, "at_ms": self.now_ms()})

    async def _check(self) -> None:
        height = await self._converge()
        if height is None:
            self._violation("liveness", f"nodes did not converge within {CONVERGE_TIMEOUT_S:g} s "
                            f"after healing: {self.last_height}")  # fmt: skip
            return
        for k in self.ids:
            v = await self._call(k, "verify", {}, timeout_s=60)
            if not v.get("ok"):
                self._violation(
                    "divergent committed blocks", f"node {k}: chain does not verify: {v}"
                )
        seen: dict[str, int] = {}
        dup: list[str] = []
        unreadable: list[str] = []
        async with open_admin_client(self.cluster.sockets[self.ids[0]]) as cl:
            lim = trio.Semaphore(64)

            async def one(h: int) -> None:
                async with lim:
                    try:
                        b = await cl.call("block", {"height": h}, timeout_s=30)
                    except Errors as exc:
                        unreadable.append(f"{h}: {exc}")
                        return
                for t in b["txs"]:
                    if t.get("status") == "committed":
                        if t["tx_hash"] in seen:
                            dup.append(t["tx_hash"])
                        seen[t["tx_hash"]] = h

            async with trio.open_nursery() as n:
                for h in range(1, height + 1):
                    n.start_soon(one, h)
        if unreadable:
            self._violation("liveness", f"{len(unreadable)} blocks unreadable: {unreadable[0]}")
        if dup:
            self._violation("tx applied twice", f"{len(dup)} txs committed twice, e.g. {dup[0]}")
        lost = [h for h, at in self.acked.items() if seen.get(h) != at]
        if lost:
            views = []
            for k in self.ids:
                try:
                    views.append(f"n{k}={await self._call(k, 'tx', {'tx_hash': lost[0]})}")
                except Errors as exc:
                    views.append(f"n{k}: {exc}")
            try:
                b = await self._call(self.ids[0], "block", {"height": self.acked[lost[0]]})
                views.append(f"block {b['height']} on n{self.ids[0]}: {b['txs']}")
            except Errors as exc:
                views.append(f"block: {exc}")
            views.append(f"scan saw it at {seen.get(lost[0])}; scanned {len(seen)} txs")
            self.rec.extra["lost_tx_views"] = views
            self._violation("acknowledged write lost", f"{len(lost)} acknowledged txs missing or "
                            f"moved, e.g. {lost[0]} (receipt height {self.acked[lost[0]]}, "
                            f"chain {seen.get(lost[0])})")  # fmt: skip
        self.rec.extra.update(height=height, blocks_checked=height, txs_in_chain=len(seen))

    # --- the run -------------------------------------------------------------------------

    async def main(self) -> None:
        scn = self.scn
        async with trio.open_nursery() as nursery:
            await self.relay.start(nursery)
            self._write_configs()
            self.cluster.start_all()
            for k in self.ids:
                nursery.start_soon(self._poll, k)
            for _ in range(int(START_TIMEOUT_S / 0.1)):
                if self.leader() is not None and all(s is not None for s in self.status.values()):
                    break
                await trio.sleep(0.1)
            if self.leader() is None:
                raise LiveError(
                    f"no leader within {START_TIMEOUT_S:g} s; logs in {self.cluster.root}"
                )
            self._presign()
            self.t0 = trio.current_time()
            wall0 = time.perf_counter()
            nursery.start_soon(self._sampler)
            async with trio.open_nursery() as load:
                for c in range(scn.workload.clients):
                    load.start_soon(self._client, c)
                for f in scn.faults:
                    load.start_soon(self._fault, f)
                await trio.sleep_until(self.t0 + scn.duration_s)
                self.issuing = False
                for _ in range(int(DRAIN_S / 0.05)):
                    if not self.inflight:
                        break
                    await trio.sleep(0.05)
                load.cancel_scope.cancel()
            for k in sorted(self.paused):
                self._resume(k)
            for k in sorted(self.crashed):
                self.crashed.discard(k)
                self.cluster.start(k)
            self.relay.blocked.clear()
            self.relay.loss = scn.network.loss
            try:
                await self._check()
            except Errors as exc:
                self._violation("liveness", f"post-run checks failed: {exc}")
            self.rec.wall_seconds = time.perf_counter() - wall0
            nursery.cancel_scope.cancel()
        if self.progress is not None:
            self.progress(1.0)

    def finish(self) -> RunRecord:
        rec = self.rec
        rec.sim_seconds = self.scn.duration_s
        rec.tx_acks = sorted(a for a in rec.tx_acks if a[0] <= self.scn.duration_s * 1000)
        rec.tx_acks_total = len(self.acked)
        rec.elections = len(self.leader_of_term)
        rec.extra.update(
            rejected=self.rejected,
            resubmits=self.resubmits,
            relay_bytes=self.relay.bytes_relayed,
            relay_connections=self.relay.connections,
            processes=len(self.ids),
        )
        return rec


def run_live(scn: Scenario, root: Path, progress: ProgressFn | None = None) -> RunRecord:
    run = LiveRun(scn, root, progress)
    try:
        trio.run(run.main)
    except (ClusterError, LiveError) as exc:
        raise LiveError(str(exc)) from exc
    except BaseExceptionGroup as eg:  # trio wraps errors raised inside nurseries
        sub = eg.subgroup((ClusterError, LiveError))
        if sub is None:
            raise
        leaf: BaseException = sub
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise LiveError(str(leaf)) from eg
    finally:
        for k in list(run.paused):
            with contextlib.suppress(Exception):
                run.cluster.procs[k].send_signal(signal.SIGCONT)
        run.cluster.close()
        leftover = [p.pid for p in run.cluster.procs.values() if p.poll() is None]
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return run.finish()
