"""The sans-IO ledger node's parts: the submit tracker's state table and the receipt type."""

from __future__ import annotations

import pytest

from hzp2p.ledgernode.receipts import Receipt, Refused, Verdict
from hzp2p.ledgernode.tracker import InvalidTransition, SubmitTracker, TxState
from hzp2p.storage import TxRecord

H = b"\x01" * 32


def test_forwarded_proposed_landed() -> None:
    t = SubmitTracker()
    t.received(H)
    assert t.state(H) is TxState.RECEIVED
    t.checked(H)
    t.sent(H, queued=False)
    assert t.state(H) is TxState.FORWARDED
    t.proposed([H])
    assert t.state(H) is TxState.PROPOSED
    r = Receipt(H, Verdict.COMMITTED, 3, 0, None, "epi.report")
    assert t.landed(r) is True
    assert t.landed(r) is False  # final: a second verdict is not taken
    assert t.outcome(H) == r
    assert t.take(H) == r and H not in t


def test_leader_change_sends_live_entries_again() -> None:
    t = SubmitTracker()
    for h in (H, b"\x02" * 32):
        t.received(h)
        t.sent(h, queued=True)
    t.refused(b"\x02" * 32, Refused("bad signer"))
    assert t.resend_all() == [H]
    assert t.state(H) is TxState.CHECKED
    assert t.state(b"\x02" * 32) is TxState.REFUSED


def test_transitions_outside_the_table_are_refused() -> None:
    t = SubmitTracker()
    t.received(H)
    assert t.expired(H).verdict is Verdict.PENDING
    tracked = t._txs[H]
    with pytest.raises(InvalidTransition):
        t._move(tracked, TxState.QUEUED)  # expired is final


def test_two_waiters_share_one_entry_until_both_let_go() -> None:
    t = SubmitTracker()
    t.received(H)
    t.received(H)
    t.release(H)
    assert H in t
    t.release(H)
    assert H not in t


def test_receipt_shapes_match_the_admin_socket() -> None:
    rec = TxRecord(H, 7, 2, "epi.report", "rejected", "report_id taken")
    assert Receipt.of_record(H, rec).as_dict() == {
        "tx_hash": H.hex(), "status": "rejected", "height": 7, "index": 2,
        "reason": "report_id taken", "type": "epi.report",
    }
    assert Receipt.of_record(H, rec).record() == rec
    refused = Receipt.refused(H, Refused("bad", (("a", "x"), ("a", "y"), ("", "z"))))
    assert refused.as_dict()["problems"] == {"a": "x; y", "payload": "z"}
    assert Receipt.pending(H).as_dict() == {
        "tx_hash": H.hex(), "status": "pending", "height": None, "index": None, "reason": None,
    }
    assert Receipt.refused(b"", Refused("unsigned")).as_dict()["tx_hash"] is None
