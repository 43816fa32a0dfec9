"""The leader's admission of forwarded transactions runs the contracts' stateless checks too.

A follower checks what it receives before forwarding, but a leader must not trust that:
a forwarded transaction whose payload fails its contract's stateless check is refused at
the leader's door, with every problem, and never reaches the mempool.
"""

from __future__ import annotations

import time
from typing import cast

from nacl.signing import SigningKey

from hzp2p.client import Client
from hzp2p.contracts.engine import genesis_state_writes, load_contracts
from hzp2p.contracts.state import DictState
from hzp2p.ledger.genesis import make_local_genesis
from hzp2p.ledger.tx import Transaction
from hzp2p.node.submit import Refused, _admit_batch
from hzp2p.storage import SyncStorage


def test_forwarded_transactions_pass_the_stateless_check_at_the_leader() -> None:
    load_contracts()
    genesis, secrets = make_local_genesis(3, 0, seed=3)
    state = cast(SyncStorage, DictState(genesis_state_writes(genesis)))
    member = Client(SigningKey(secrets[1].signing_seed), genesis.chain_id, 1)
    now = int(time.time() * 1000)
    good = member.tx("epi.report", {"report_id": "r1", "region": "north", "metric": "cases",
                                    "value": 3, "period": "w1"}, now)
    marked = member.tx("epi.report", {"report_id": "r2", "region": "north", "metric": "cases",
                                      "value": "x", "name": "Zhang San"}, now)
    out = _admit_batch([good.encode(), marked.encode()], genesis.chain_id, now)(state)
    assert out[0] == (good.hash, out[0][1]) and isinstance(out[0][1], Transaction)
    h, res = out[1]
    assert h == marked.hash
    tx_type, why = cast(tuple[str, Refused], res)
    assert tx_type == "epi.report" and not why.duplicate
    fields = sorted(f for f, _ in why.problems)
    assert fields == ["", "", "value"], why.problems  # unknown name, missing period, bad value
    assert "Zhang San" not in repr(why)
