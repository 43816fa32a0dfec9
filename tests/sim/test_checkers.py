"""The checkers fire on synthetic bad histories (and stay quiet on good ones)."""

from __future__ import annotations

import pytest

from hzp2p.raft.ready import Ready
from hzp2p.raft.types import ConfState, Entry, HardState
from hzp2p.sim.checkers import Checkers, SimulationFailure, Violation
from hzp2p.sim.statemachine import ApplyOutcome, KVStateMachine, encode_request
from hzp2p.sim.store import DurableStore


def _ready(entries: tuple[Entry, ...] = (), hs: HardState | None = None) -> Ready:
    return Ready(None, hs, entries, None, (), (), (), ())


def _cluster(n: int = 3) -> tuple[Checkers, dict[int, DurableStore]]:
    ch = Checkers()
    stores = {
        i: DurableStore(base_conf=ConfState(frozenset(range(1, n + 1)))) for i in range(1, n + 1)
    }
    for i, st in stores.items():
        ch.log.register(i, st)
        ch.apply.on_restart(i, 0)
    return ch, stores


def _persist(ch: Checkers, stores: dict[int, DurableStore], node: int, rd: Ready) -> None:
    removed = stores[node].persist(rd)
    ch.log.on_persist(node, stores[node], removed, rd)


def _req(client: int, seq: int, attempt: int = 1) -> bytes:
    return encode_request(client, seq, attempt, 0, b"v")


E1 = Entry(term=1, index=1, data=_req(1, 1))
E2 = Entry(term=1, index=2, data=_req(1, 2))
E2B = Entry(term=2, index=2, data=_req(2, 1))


def test_two_leaders_in_one_term() -> None:
    ch = Checkers()
    ch.election.on_leader(1, 3)
    ch.election.on_leader(1, 3)  # the same leader seen again is fine
    ch.election.on_leader(2, 4)
    with pytest.raises(Violation, match="election safety"):
        ch.election.on_leader(3, 3)


def test_log_matching_detects_same_index_and_term_with_different_prefix() -> None:
    ch, stores = _cluster()
    _persist(ch, stores, 1, _ready((E1, Entry(term=2, index=2, data=b"x"))))
    other_first = Entry(term=1, index=1, data=b"different")
    with pytest.raises(Violation, match="log matching"):
        _persist(ch, stores, 2, _ready((other_first, Entry(term=2, index=2, data=b"x"))))


def test_changed_committed_entry_via_durable_commit() -> None:
    ch, stores = _cluster()
    _persist(ch, stores, 1, _ready((E1, E2), HardState(1, 1, 2)))
    with pytest.raises(Violation, match="committed entry changed"):
        _persist(ch, stores, 2, _ready((E1, E2B), HardState(2, 2, 2)))


def test_changed_committed_entry_via_apply() -> None:
    ch, _ = _cluster()
    sm1, sm2 = KVStateMachine(), KVStateMachine()
    ch.apply.on_apply(1, E1, sm1.apply(E1), None)
    ch.apply.on_apply(1, E2, sm1.apply(E2), None)
    ch.apply.on_apply(2, E1, sm2.apply(E1), None)
    with pytest.raises(Violation, match="committed entry changed"):
        ch.apply.on_apply(2, E2B, sm2.apply(E2B), None)


def test_truncating_a_durably_committed_entry() -> None:
    ch, stores = _cluster()
    _persist(ch, stores, 1, _ready((E1, E2), HardState(1, 1, 2)))
    with pytest.raises(Violation, match="committed entry lost"):
        _persist(ch, stores, 1, _ready((E2B,)))


def test_truncating_a_known_committed_entry_on_another_node() -> None:
    ch, stores = _cluster()
    _persist(ch, stores, 1, _ready((E1, E2), HardState(1, 1, 2)))
    _persist(ch, stores, 2, _ready((E1, E2), HardState(1, 1, 0)))  # node 2 holds E2, commit 0
    with pytest.raises(Violation, match="committed entry lost"):
        _persist(ch, stores, 2, _ready((E2B,)))


def test_commit_ahead_of_log_and_backwards() -> None:
    ch, stores = _cluster()
    with pytest.raises(Violation, match="commit ahead of durable log"):
        _persist(ch, stores, 1, _ready((E1,), HardState(1, 1, 2)))
    ch, stores = _cluster()
    _persist(ch, stores, 1, _ready((E1, E2), HardState(1, 1, 2)))
    with pytest.raises(Violation, match="went backwards"):
        _persist(ch, stores, 1, _ready((), HardState(1, 1, 1)))


def test_applying_a_non_durable_entry() -> None:
    ch, stores = _cluster()
    _persist(ch, stores, 1, _ready((E1,)))
    ch.apply.on_apply(1, E1, None, stores[1])
    with pytest.raises(Violation, match="non-durable"):
        ch.apply.on_apply(1, E2, None, stores[1])


def test_apply_gap() -> None:
    ch, _ = _cluster()
    with pytest.raises(Violation, match="apply order"):
        ch.apply.on_apply(1, E2, None, None)


def test_double_apply_of_one_request() -> None:
    ch, _ = _cluster()
    ch.apply.on_apply(1, E1, ApplyOutcome((1, 1), 1, duplicate=False), None)
    again = Entry(term=1, index=2, data=_req(1, 1, attempt=2))
    with pytest.raises(Violation, match="applied twice"):
        ch.apply.on_apply(1, again, ApplyOutcome((1, 1), 2, duplicate=False), None)


def test_duplicate_retry_is_fine_when_deduped() -> None:
    ch, _ = _cluster()
    sm = KVStateMachine()
    again = Entry(term=1, index=2, data=_req(1, 1, attempt=2))
    ch.apply.on_apply(1, E1, sm.apply(E1), None)
    ch.apply.on_apply(1, again, sm.apply(again), None)
    ch.apply.on_ack(1, (1, 1), 1)
    ch.apply.check_all_acked_applied([1])


def test_lost_acked_write_is_caught_at_apply_and_at_the_end() -> None:
    ch, _ = _cluster()
    sm1 = KVStateMachine()
    ch.apply.on_apply(1, E1, sm1.apply(E1), None)
    ch.apply.on_ack(1, (1, 1), 1)
    # Node 3 never applies it: the end-of-run check fires.
    with pytest.raises(Violation, match="acknowledged write lost"):
        ch.apply.check_all_acked_applied([1, 3])
    # Node 2 applies something else at the acked index (history rewritten under it).
    ch.log.committed.pop(1)  # pretend the canonical record was lost too
    other = Entry(term=2, index=1, data=_req(2, 1))
    with pytest.raises(Violation, match="acknowledged write lost"):
        ch.apply.on_apply(2, other, KVStateMachine().apply(other), None)


def test_ack_for_unapplied_or_reordered_requests() -> None:
    ch, _ = _cluster()
    with pytest.raises(Violation, match="acknowledgement mismatch"):
        ch.apply.on_ack(1, (1, 1), 1)
    ch, _ = _cluster()
    sm = KVStateMachine()
    ch.apply.on_apply(1, E1, sm.apply(E1), None)
    ch.apply.on_apply(1, E2, sm.apply(E2), None)
    ch.apply.on_ack(1, (1, 2), 2)
    with pytest.raises(Violation, match="reordered"):
        ch.apply.on_ack(1, (1, 1), 1)


def test_stale_read() -> None:
    ch, _ = _cluster()
    sm = KVStateMachine()
    ch.apply.on_apply(1, E1, sm.apply(E1), None)
    ch.apply.on_apply(1, E2, sm.apply(E2), None)
    ch.apply.on_ack(1, (1, 2), 2)
    ch.apply.on_read(1, read_index=2, must_see=ch.apply.max_acked_index, applied=2)
    with pytest.raises(Violation, match="stale read"):
        ch.apply.on_read(2, read_index=1, must_see=ch.apply.max_acked_index, applied=2)
    with pytest.raises(Violation, match="stale read"):
        ch.apply.on_read(2, read_index=2, must_see=2, applied=1)


def test_failure_report_names_seed_property_and_replay() -> None:
    f = SimulationFailure(
        seed=1234,
        voters=5,
        prop="election safety",
        detail="two leaders in term 3",
        replay="hzp2p fuzz --seeds 1 --start 1234 --voters 5 --verbose",
        trace_tail=["t=1 crash 2"],
    )
    text = str(f)
    assert "seed=1234" in text and "election safety" in text
    assert "hzp2p fuzz --seeds 1 --start 1234 --voters 5 --verbose" in text
