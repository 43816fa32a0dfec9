"""The LtHash state digest: lane arithmetic, incremental == full recomputation, overlays' scan."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hzp2p.contracts import digest
from hzp2p.contracts.digest import (
    DIGEST_KEY,
    EMPTY_VECTOR,
    DigestAccumulator,
    digest_of_vector,
    vector_of_items,
)
from hzp2p.contracts.state import DictState, Overlay


def naive_vector(items: list[tuple[bytes, bytes]], mult: int = 1) -> bytes:
    lanes = [0] * 1024
    for k, v in items:
        h = hashlib.shake_256(b"hzp2p/state/v1" + len(k).to_bytes(4, "big") + k + v).digest(2048)
        for i in range(1024):
            lanes[i] = (lanes[i] + mult * int.from_bytes(h[2 * i : 2 * i + 2], "little")) % 65536
    return b"".join(x.to_bytes(2, "little") for x in lanes)


def test_matches_naive_lanes() -> None:
    items = [(b"k%d" % i, b"v%d" % i) for i in range(5)]
    assert vector_of_items(items) == naive_vector(items)


def test_many_adds_stay_exact_across_normalisation() -> None:
    acc = DigestAccumulator()
    for _ in range(61_000):
        acc.add(b"k", b"v")
    assert acc.vector() == naive_vector([(b"k", b"v")], 61_000)


def test_order_independent_and_removal_inverts() -> None:
    a = DigestAccumulator()
    a.add(b"a", b"1")
    a.add(b"b", b"2")
    b = DigestAccumulator()
    b.add(b"b", b"2")
    b.add(b"a", b"1")
    assert a.vector() == b.vector()
    a.remove(b"a", b"1")
    a.remove(b"b", b"2")
    assert a.vector() == EMPTY_VECTOR
    assert digest_of_vector(EMPTY_VECTOR) != digest_of_vector(b.vector())
    # a key/value boundary shift gives a different element
    c = DigestAccumulator()
    c.add(b"ab", b"c")
    d = DigestAccumulator()
    d.add(b"a", b"bc")
    assert c.vector() != d.vector()


ops = st.lists(
    st.tuples(st.sampled_from([b"a", b"b", b"c", b"dd", b"e"]), st.none() | st.binary(max_size=4)),
    max_size=40,
)


@given(st.lists(ops, max_size=6))
def test_incremental_equals_recomputed(batches: list[list[tuple[bytes, bytes | None]]]) -> None:
    state: dict[bytes, bytes] = {}
    vector = EMPTY_VECTOR
    for batch in batches:
        acc = DigestAccumulator(vector)
        for k, v in batch:
            old = state.get(k)
            if old is not None:
                acc.remove(k, old)
                del state[k]
            if v is not None:
                acc.add(k, v)
                state[k] = v
        vector = acc.vector()
        assert vector == vector_of_items(sorted(state.items()))
    assert vector_of_items([(DIGEST_KEY, b"x"), *state.items()]) == vector


@given(
    st.dictionaries(st.sampled_from([b"p/a", b"p/b", b"p/c", b"q/a", b"p/d"]), st.binary(max_size=2)),
    ops,
    ops,
    st.sampled_from([b"", b"p/", b"q", b"p/b"]),
    st.none() | st.integers(0, 4),
)
def test_overlay_scan_matches_model(
    base: dict[bytes, bytes],
    block_ops: list[tuple[bytes, bytes | None]],
    tx_ops: list[tuple[bytes, bytes | None]],
    prefix: bytes,
    limit: int | None,
) -> None:
    model = dict(base)
    blk = Overlay(DictState(base))
    tx = Overlay(blk)
    for ov, batch in ((blk, block_ops), (tx, tx_ops)):
        for k, v in batch:
            if v is None:
                ov.delete(k)
                model.pop(k, None)
            else:
                ov.put(k, v)
                model[k] = v
    expect = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
    if limit is not None:
        expect = expect[:limit]
    assert list(tx.scan(prefix, limit)) == expect
    for k in (b"a", b"p/a", b"p/d", b"q/a"):
        assert tx.get(k) == model.get(k)
    tx.merge_into(blk)
    assert list(blk.scan(prefix, limit)) == expect


# --- the batched update (issue 9): add_many / remove_many, with and without numpy ---------

pairs_st = st.lists(
    st.tuples(st.binary(min_size=1, max_size=6), st.binary(max_size=6)), max_size=12
)


@pytest.mark.parametrize("numpy_sums", [True, False], ids=["numpy", "pure-python"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["add", "remove", "add_many", "remove_many"]), pairs_st), max_size=8))
def test_batched_updates_equal_the_lane_by_lane_reference(
    numpy_sums: bool, monkeypatch: pytest.MonkeyPatch, steps: list[tuple[str, list[tuple[bytes, bytes]]]]
) -> None:
    if numpy_sums and digest._numpy() is None:
        pytest.skip("numpy is not installed")
    monkeypatch.setattr(digest, "_NP", digest._numpy() if numpy_sums else None)
    start = naive_vector([(b"seed", b"1"), (b"seed", b"2")])
    acc = DigestAccumulator(start)
    lanes = [int.from_bytes(start[2 * i : 2 * i + 2], "little") for i in range(1024)]
    for op, pairs in steps:
        if op == "add":
            for k, v in pairs:
                acc.add(k, v)
        elif op == "remove":
            for k, v in pairs:
                acc.remove(k, v)
        else:
            getattr(acc, op)(pairs)
        sign = 1 if op.startswith("add") else -1
        delta = naive_vector(pairs)
        for i in range(1024):
            lanes[i] = (lanes[i] + sign * int.from_bytes(delta[2 * i : 2 * i + 2], "little")) % 65536
    assert acc.vector() == b"".join(x.to_bytes(2, "little") for x in lanes)


def test_pure_python_batch_normalises_past_the_pending_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "_NP", None)
    acc = DigestAccumulator()
    acc.add_many([(b"k", b"v")] * 61_000)
    acc.remove_many([(b"k", b"v")] * 5)
    assert acc.vector() == naive_vector([(b"k", b"v")], 60_995)


def test_numpy_batches_count_once_towards_the_pending_limit() -> None:
    if digest._numpy() is None:
        pytest.skip("numpy is not installed")
    acc = DigestAccumulator()
    for _ in range(3):
        acc.add_many([(b"k", b"v")] * 30_000)  # each batch enters as one summed element
    acc.remove_many([(b"k", b"v")] * 10)
    assert acc.vector() == naive_vector([(b"k", b"v")], 89_990)
