"""The production ledger node on every simulated node of `hzp2p fuzz`, its clients and wiring.

Owns how the simulator runs hzp2p.ledgernode.LedgerNode — the same submit tracker,
admission, forwarding, block pipeline, contract engine, apply and receipts as the
daemon — on simulated storage and network:

* each node's state machine is a `LedgerApp`: the KV model of the Raft checks
  (hzp2p.sim.statemachine) for KV entries, and the ledger node for block entries; its
  snapshot holds both, so crashes, restarts and snapshot installs rebuild the ledger
  state exactly as they rebuild the KV state (the node's volatile parts — mempool,
  pipeline, tracker — die with the node, as in the daemon);
* forwards and admission replies travel as `LedgerMsg` on the model network (delays,
  drops, duplicates, partitions);
* every LEDGER_TICK_MS each up node tells its ledger node the Raft role and leader it
  sees and proposes the block the pipeline policy asks for;
* ledger clients submit signed transactions to random nodes, wait for the receipt (a
  bounded wait, then they try again elsewhere) and hand every final receipt to the
  checkers (hzp2p.sim.ledger_checks).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hzp2p.contracts.engine import (
    BlockResult,
    execute_block,
    genesis_state_writes,
    load_contracts,
    state_digest,
)
from hzp2p.contracts.registry import PAYLOAD_GENERATORS
from hzp2p.contracts.state import DictState, Readable
from hzp2p.ledger.block import Block
from hzp2p.ledger.genesis import Genesis, NodeSecrets, make_local_genesis
from hzp2p.ledger.tx import Transaction
from hzp2p.ledgernode.node import (
    Action,
    AdmissionReply,
    ClientReceipt,
    Forward,
    LedgerNode,
    PlantedBugs,
    Propose,
)
from hzp2p.ledgernode.receipts import Receipt, Verdict
from hzp2p.raft.errors import RaftError
from hzp2p.raft.types import Entry, EntryKind, NodeId, Role
from hzp2p.sim.events import EventLoop
from hzp2p.sim.ledger_checks import LedgerChecks
from hzp2p.sim.statemachine import ApplyOutcome, KVStateMachine, decode_request

LEDGER_TICK_MS = 10
LEDGER_CLIENTS = 2
CLIENT_WAIT_MS = 800
"""A client's wait for a receipt before it asks again (at another node)."""
CLIENT_PAUSE_MS = (0, 40)
CONFLICT_PROB = 0.15
"""Chance that a new transaction repeats an earlier report id: the contract rejects one
of the two, so receipts carry both verdicts."""
BLOCK_SIGNER = 1
"""The founding institution whose node key signs the blocks of nodes added later (those
are not institutions of the genesis)."""
GENESIS_SEED = 7
DAY_MS = 86_400_000

BUGS = {
    "early-receipt": PlantedBugs(early_receipt=True),
    "readmit": PlantedBugs(readmit_without_dup_check=True),
}
"""Test-only planted bugs (`hzp2p fuzz --plant-bug NAME`): the checkers must find each."""

_GENESIS: dict[int, tuple[Genesis, dict[int, NodeSecrets], dict[bytes, bytes]]] = {}
_TXS: dict[tuple[int, int, int], Transaction] = {}
MAX_TX_CACHE = 200_000


@dataclass(frozen=True, slots=True)
class LedgerMsg:
    """A ledger message on the model network (src/dst/term as the network expects)."""

    src: NodeId
    dst: NodeId
    term: int
    body: Forward | AdmissionReply


class LedgerHost(Protocol):
    """What the ledger needs of the simulation around it (hzp2p.sim.simulation)."""

    loop: EventLoop
    nodes: dict[NodeId, Any]
    """node id -> SimNode"""

    def send(self, msg: Any) -> None: ...
    def trace(self, *item: object) -> None: ...
    def member_ids(self) -> list[NodeId]: ...


class _SimRaftView:
    """The pipeline's narrow view of a simulated node's core. The KV model's entries
    share the log but never move the ledger's head, so the view skips them: the ledger
    node sees the log as if it carried only its own entries (as in the daemon), else a
    steady KV load would keep the leader from ever being idle."""

    __slots__ = ("_node",)

    def __init__(self, node: Any) -> None:
        self._node = node

    def is_leader(self) -> bool:
        node = self._node
        return bool(node.up and node.core.role == Role.LEADER)

    def last_index(self) -> int:
        node = self._node
        log = node.core.log
        i: int = log.last_index()
        floor = max(node.applied, log.first_index() - 1)
        while i > floor:
            e = log.entry(i)
            if e.kind != EntryKind.NORMAL or decode_request(e.data) is None:
                return i
            i -= 1
        return i

    def current_term(self) -> int:
        term: int = self._node.core.term
        return term


class LedgerApp(KVStateMachine):
    """One node's state machine: the KV model (it is one) plus the ledger node."""

    def __init__(self, hub: SimLedger, node_id: NodeId) -> None:
        super().__init__()
        self.hub = hub
        self.node_id = node_id
        self.ledger = hub.new_ledger_node(node_id)

    def apply(self, entry: Entry) -> ApplyOutcome | None:
        if entry.kind != EntryKind.NORMAL or not entry.data:
            return None
        if decode_request(entry.data) is not None:
            return super().apply(entry)
        applied, actions = self.ledger.apply_entry(entry.index, entry.data)
        if applied is not None and self.node_id:
            self.hub.checks.on_block(self.node_id, applied, state_digest(self.ledger.state))
        self.hub.dispatch(self.node_id, actions)
        return None

    def snapshot(self) -> bytes:
        kv = super().snapshot()
        parts = [struct.pack(">I", len(kv)), kv]
        data = self.ledger.state.data if isinstance(self.ledger.state, DictState) else {}
        for k, v in sorted(data.items()):
            parts.append(struct.pack(">II", len(k), len(v)) + k + v)
        return b"".join(parts)

    def restore(self, data: bytes) -> None:
        if not data:
            super().restore(b"")
            self.ledger.state = DictState(self.hub.genesis_writes)
        else:
            (n,) = struct.unpack_from(">I", data, 0)
            super().restore(data[4 : 4 + n])
            pos, kv = 4 + n, {}
            while pos < len(data):
                kl, vl = struct.unpack_from(">II", data, pos)
                pos += 8
                kv[data[pos : pos + kl]] = data[pos + kl : pos + kl + vl]
                pos += kl + vl
            self.ledger.state = DictState(kv)
        self.hub.dispatch(self.node_id, self.ledger.restored())

    def digest(self) -> str:
        return super().digest() + state_digest(self.ledger.state).hex()[:16]


@dataclass(slots=True)
class _Client:
    client_id: int
    tx: Transaction | None = None
    node: NodeId = 0
    token: int = 0
    attempts: int = 0


class SimLedger:
    """The ledger of one run: genesis, ledger nodes' wiring, clients and checkers."""

    def __init__(self, sim: LedgerHost, institutions: int, rng: random.Random,
                 bugs: PlantedBugs) -> None:
        """`institutions`: the genesis members (nodes 1..institutions; later nodes sign
        their blocks with BLOCK_SIGNER's key)."""
        load_contracts()
        self.sim = sim
        self.rng = rng
        self.bugs = bugs
        n = institutions
        self.n_institutions = n
        cached = _GENESIS.get(n)
        if cached is None:
            g, secrets = make_local_genesis(n, 0, seed=GENESIS_SEED)
            cached = (g, secrets, genesis_state_writes(g))
            _GENESIS[n] = cached
        self.genesis, self.secrets, self.genesis_writes = cached
        self.checks = LedgerChecks()
        self.clients = [_Client(i) for i in range(LEDGER_CLIENTS)]
        self._waiting: dict[tuple[NodeId, bytes], list[_Client]] = {}
        self._issued = 0
        self._issuing = True
        self.submitted = 0
        self.proposals = 0
        self.executed = 0
        self._results: dict[tuple[bytes, bytes], BlockResult] = {}

    # --- nodes --------------------------------------------------------------------------

    def new_ledger_node(self, node_id: NodeId) -> LedgerNode:
        signer = node_id if 1 <= node_id <= self.n_institutions else BLOCK_SIGNER
        return LedgerNode(node_id, self.genesis, DictState(self.genesis_writes),
                          self.secrets[signer].node_key(), signer, bugs=self.bugs,
                          execute=self._execute)

    def _execute(self, reader: Readable, block: Block, genesis: Genesis) -> BlockResult:
        """execute_block, memoised by (state digest before, block hash): the digest commits
        to the whole state, so equal keys are equal inputs of a pure function. The first
        node really executes (every signature, every contract); the others reuse it."""
        key = (state_digest(reader), block.hash)
        res = self._results.get(key)
        if res is None:
            res = execute_block(reader, block, genesis)  # BlockRejected: not memoised
            self._results[key] = res
            self.executed += 1
        return res

    def _app(self, node_id: NodeId) -> LedgerApp | None:
        node = self.sim.nodes.get(node_id)
        if node is None or not node.up or not isinstance(node.sm, LedgerApp):
            return None
        return node.sm

    def now_ms(self) -> int:
        return self.genesis.timestamp_ms + self.sim.loop.now_ms

    def start(self) -> None:
        self.sim.loop.after(LEDGER_TICK_MS, self._tick)
        for c in self.clients:
            self.sim.loop.after(self.rng.randint(*CLIENT_PAUSE_MS) + 1, self._next, c)

    def _tick(self) -> None:
        for nid in sorted(self.sim.nodes):
            self._step_node(nid)
        self.sim.loop.after(LEDGER_TICK_MS, self._tick)

    def _step_node(self, nid: NodeId) -> None:
        app = self._app(nid)
        if app is None:
            return
        node = self.sim.nodes[nid]
        core = node.core
        ledger = app.ledger
        now = self.now_ms()
        self.dispatch(nid, ledger.role_changed(core.role == Role.LEADER, core.leader_id, now))
        view = _SimRaftView(node)
        for _ in range(4):  # a pipelining leader may propose a few blocks in a row
            if self._app(nid) is not app:
                return
            prop = ledger.poll(view, node.applied, now)
            if prop is None:
                return
            self._propose(nid, app, prop)

    def _propose(self, nid: NodeId, app: LedgerApp, prop: Propose) -> None:
        node = self.sim.nodes[nid]
        ledger = app.ledger
        try:
            index, term = node.propose(prop.block.encode())
        except RaftError:
            ledger.proposal_dropped(prop.block, self.now_ms())
            return
        self.proposals += 1
        self.sim.trace("ledger-propose", nid, f"height={prop.block.height} index={index} "
                       f"txs={len(prop.block.txs)}")
        if self._app(nid) is not app:
            return  # crashed meanwhile
        self.dispatch(nid, ledger.proposed(index, term, prop.block, _SimRaftView(node),
                                           node.applied))

    # --- actions and messages -------------------------------------------------------------

    def dispatch(self, nid: NodeId, actions: Sequence[Action]) -> None:
        for a in actions:
            if isinstance(a, ClientReceipt):
                self._deliver_receipt(nid, a.receipt)
            elif isinstance(a, (Forward, AdmissionReply)):
                self.sim.send(LedgerMsg(nid, a.dst, 0, a))
            else:
                raise TypeError(f"unexpected action {a!r} outside poll")

    def deliver(self, msg: LedgerMsg) -> None:
        app = self._app(msg.dst)
        if app is None:
            return
        body = msg.body
        if isinstance(body, Forward):
            out = app.ledger.on_forward(msg.src, body.request_id, body.raw, self.now_ms())
            self.dispatch(msg.dst, out)
            if len(app.ledger.mempool):
                self.sim.loop.after(0, self._step_node, msg.dst)
        else:
            self.dispatch(msg.dst, app.ledger.on_admission_reply(
                body.request_id, body.tx_hash, body.verdict, body.reason))

    def on_crash(self, nid: NodeId) -> None:
        for key in [k for k in self._waiting if k[0] == nid]:
            del self._waiting[key]  # their clients time out and ask elsewhere

    # --- clients ------------------------------------------------------------------------

    def stop_issuing(self) -> None:
        self._issuing = False

    def outstanding(self) -> int:
        return sum(1 for c in self.clients if c.tx is not None)

    def _new_tx(self) -> Transaction:
        i = self._issued
        self._issued += 1
        rid = i
        if i and self.rng.random() < CONFLICT_PROB:
            rid = self.rng.randrange(i)  # the same report id again: one of the two is rejected
        n = self.n_institutions
        signer = 1 + self.rng.randrange(n)
        key = (n, signer, i * 1_000_000 + rid)
        tx = _TXS.get(key)
        if tx is None:
            tx = Transaction.create(
                self.secrets[signer].signing_key(), self.genesis.chain_id, "epi.report",
                dict(PAYLOAD_GENERATORS["epi.report"](rid)), nonce=i + 1,
                valid_from_ms=self.genesis.timestamp_ms,
                valid_until_ms=self.genesis.timestamp_ms + DAY_MS,
            )
            if len(_TXS) < MAX_TX_CACHE:
                _TXS[key] = tx
        return tx

    def _next(self, c: _Client) -> None:
        if c.tx is None:
            if not self._issuing:
                return
            c.tx = self._new_tx()
            c.attempts = 0
            self.submitted += 1
        self._attempt(c)

    def _attempt(self, c: _Client) -> None:
        tx = c.tx
        assert tx is not None
        up = [nid for nid in self.sim.member_ids() if self._app(nid) is not None]
        c.token += 1
        c.attempts += 1
        if not up:
            self.sim.loop.after(CLIENT_WAIT_MS // 4, self._next, c)
            return
        nid = self.rng.choice(up)
        app = self._app(nid)
        assert app is not None
        c.node = nid
        self._waiting.setdefault((nid, tx.hash), []).append(c)
        self.sim.loop.after(CLIENT_WAIT_MS, self._timeout, c, c.token)
        self.sim.trace("ledger-submit", nid, f"client={c.client_id} tx={tx.hash.hex()[:12]}")
        self.dispatch(nid, app.ledger.submit(tx, self.now_ms()))
        if self._app(nid) is app and len(app.ledger.mempool):
            self.sim.loop.after(0, self._step_node, nid)

    def _timeout(self, c: _Client, token: int) -> None:
        if c.token != token or c.tx is None:
            return
        h = c.tx.hash
        waiters = self._waiting.get((c.node, h))
        if waiters is not None and c in waiters:
            waiters.remove(c)
            if not waiters:
                del self._waiting[(c.node, h)]
            app = self._app(c.node)
            if app is not None:
                app.ledger.expire(h)  # the client is told "pending" and asks again
        self._attempt(c)

    def _deliver_receipt(self, nid: NodeId, r: Receipt) -> None:
        clients = self._waiting.pop((nid, r.tx_hash), [])
        app = self._app(nid)
        for c in clients:
            if app is not None:
                app.ledger.release(r.tx_hash)
            if c.tx is None or c.tx.hash != r.tx_hash:
                continue
            self.sim.trace("ledger-receipt", nid, f"client={c.client_id} "
                           f"tx={r.tx_hash.hex()[:12]} {r.verdict.value} h={r.height}")
            if r.verdict is Verdict.PENDING:
                continue
            self.checks.on_receipt(c.client_id, r)
            c.tx = None
            c.token += 1
            self.sim.loop.after(self.rng.randint(*CLIENT_PAUSE_MS) + 1, self._next, c)
