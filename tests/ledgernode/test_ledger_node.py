"""LedgerNode driven by hand, sans IO: submit, forward, admission, block, apply, receipts."""

from __future__ import annotations

from dataclasses import dataclass

from hzp2p.contracts.engine import genesis_state_writes, load_contracts
from hzp2p.contracts.registry import PAYLOAD_GENERATORS
from hzp2p.contracts.state import DictState
from hzp2p.ledger.genesis import Genesis, NodeSecrets, make_local_genesis
from hzp2p.ledger.tx import Transaction
from hzp2p.ledgernode.node import (
    AdmissionReply,
    ClientReceipt,
    Forward,
    LedgerNode,
    PlantedBugs,
)
from hzp2p.ledgernode.receipts import Verdict
from hzp2p.ledgernode.tracker import TxState


@dataclass
class FakeRaft:
    """A Raft view whose log holds exactly what the test appended."""

    leader: bool = True
    last: int = 0
    term: int = 1

    def is_leader(self) -> bool:
        return self.leader

    def last_index(self) -> int:
        return self.last

    def current_term(self) -> int:
        return self.term


def _setup(bugs: PlantedBugs | None = None) -> tuple[Genesis, dict[int, NodeSecrets],
                                                      LedgerNode, LedgerNode]:
    load_contracts()
    bugs = bugs or PlantedBugs()
    g, secrets = make_local_genesis(3, seed=5)
    writes = genesis_state_writes(g)
    nodes = [LedgerNode(k, g, DictState(writes), secrets[k].node_key(), k, bugs=bugs)
             for k in (1, 2)]
    return g, secrets, nodes[0], nodes[1]


def _tx(g: Genesis, secrets: dict[int, NodeSecrets], i: int, rid: int | None = None) -> Transaction:
    return Transaction.create(secrets[3].signing_key(), g.chain_id, "epi.report",
                              dict(PAYLOAD_GENERATORS["epi.report"](i if rid is None else rid)),
                              nonce=i + 1, valid_from_ms=0, valid_until_ms=86_400_000)


def test_forwarded_submit_lands_with_the_applied_verdict() -> None:
    g, secrets, leader, follower = _setup()
    raft = FakeRaft()
    assert leader.role_changed(True, 1, 0) == []
    assert follower.role_changed(False, 1, 0) == []
    tx = _tx(g, secrets, 0)
    (fwd,) = follower.submit(tx, 10)
    assert isinstance(fwd, Forward) and fwd.dst == 1
    assert follower.tracker.state(tx.hash) is TxState.FORWARDED
    (reply,) = leader.on_forward(2, fwd.request_id, fwd.raw, 11)
    assert isinstance(reply, AdmissionReply) and reply.verdict is Verdict.PENDING
    prop = leader.poll(raft, 0, 12)
    assert prop is not None and [t.hash for t in prop.block.txs] == [tx.hash]
    raft.last = 1
    assert leader.proposed(1, 1, prop.block, raft, 0) == []
    data = prop.block.encode()
    for node in (leader, follower):
        applied, actions = node.apply_entry(1, data)
        assert applied is not None and applied.result is not None
    assert leader.blocks_applied == follower.blocks_applied == 1
    # the follower's waiting client gets the committed receipt
    (got,) = actions
    assert isinstance(got, ClientReceipt)
    assert (got.receipt.verdict, got.receipt.height, got.receipt.index) == (Verdict.COMMITTED, 1, 0)
    # a second forward of the same transaction is a duplicate, never queued again
    (again,) = leader.on_forward(2, 99, fwd.raw, 20)
    assert isinstance(again, AdmissionReply) and again.verdict is Verdict.PENDING
    assert len(leader.mempool) == 0


def test_contract_rejection_is_a_rejected_receipt_and_refusals_are_final() -> None:
    g, secrets, leader, _ = _setup()
    raft = FakeRaft()
    leader.role_changed(True, 1, 0)
    a, b = _tx(g, secrets, 1), _tx(g, secrets, 2, rid=1)  # same report id
    assert leader.submit(a, 1) == [] and leader.submit(b, 1) == []
    prop = leader.poll(raft, 0, 2)
    assert prop is not None
    raft.last = 1
    leader.proposed(1, 1, prop.block, raft, 0)
    _, actions = leader.apply_entry(1, prop.block.encode())
    verdicts = {r.receipt.tx_hash: r.receipt.verdict for r in actions
                if isinstance(r, ClientReceipt)}
    assert sorted(v.value for v in verdicts.values()) == ["committed", "rejected"]


def test_planted_readmit_bug_admits_an_applied_transaction_again() -> None:
    g, secrets, leader, _ = _setup(PlantedBugs(readmit_without_dup_check=True))
    raft = FakeRaft()
    leader.role_changed(True, 1, 0)
    tx = _tx(g, secrets, 5)
    leader.on_forward(2, 1, tx.encode(), 1)
    prop = leader.poll(raft, 0, 2)
    assert prop is not None
    raft.last = 1
    leader.proposed(1, 1, prop.block, raft, 0)
    leader.apply_entry(1, prop.block.encode())
    leader.on_forward(2, 2, tx.encode(), 3)  # the re-forward after a leader change
    assert tx.hash in leader.mempool  # the bug: a correct node answers "duplicate"
