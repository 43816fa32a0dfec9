"""The declared (msgspec) decoders: same bytes as msgpack-python, typed refusals, no GC games.

The codec packs with msgspec and checks frames against declared Structs; these
properties pin what the earlier generated codec guaranteed: every valid message
packs to exactly msgpack-python's bytes and round-trips; a refused frame raises
RemoteProtocolError with one of the known reason tags, the same one whether the
message arrives alone or in a batch (the batch path and the one-by-one path
agree); and decoding leaves the garbage collector alone.
"""

from __future__ import annotations

import gc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_net_codec import SAMPLES

from hzp2p.net.codec import MAX_INT, PROTOCOL_VERSION, MessageRegistry
from hzp2p.net.errors import RemoteProtocolError
from hzp2p.net.schemas import (
    Attestation,
    Attestations,
    PeerRecord,
    PeerRecords,
    SubmitReceipt,
    default_registry,
)
from hzp2p.raft import messages as m
from hzp2p.raft.types import ConfState, Entry, EntryKind, SnapshotMeta

REG = default_registry()
RUNS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
REASONS = {"malformed", "unknown_kind", "invalid", "misrouted"}

u64 = st.integers(min_value=0, max_value=MAX_INT)
small = st.integers(min_value=0, max_value=1 << 40)
node = st.integers(min_value=1, max_value=MAX_INT)


@st.composite
def append_entries(draw: st.DrawFn) -> m.AppendEntries:
    term = draw(st.integers(min_value=1, max_value=1 << 40))
    prev_term = draw(st.integers(min_value=0, max_value=term))
    prev = draw(small)
    n = draw(st.integers(min_value=0, max_value=40))
    terms = sorted(draw(st.lists(st.integers(prev_term, term), min_size=n, max_size=n)))
    entries = tuple(
        Entry(t, prev + 1 + i, draw(st.sampled_from(EntryKind)), draw(st.binary(max_size=300)))
        for i, t in enumerate(terms)
    )
    return m.AppendEntries(term, draw(node), draw(node), prev, prev_term, entries, draw(u64))


@st.composite
def snapshot(draw: st.DrawFn) -> m.InstallSnapshot:
    ids = draw(st.lists(node, unique=True, max_size=20))
    cut = draw(st.integers(min_value=0, max_value=len(ids)))
    conf = ConfState(frozenset(ids[:cut]), frozenset(ids[cut:]))
    term = draw(small)
    meta = SnapshotMeta(draw(u64), draw(st.integers(min_value=0, max_value=term)), conf)
    return m.InstallSnapshot(
        term, draw(node), draw(node), meta, draw(u64), draw(st.binary(max_size=70_000)),
        draw(st.booleans()),
    )


valid_messages = st.one_of(
    append_entries(),
    snapshot(),
    st.builds(m.AppendEntriesResponse, u64, node, node, st.booleans(), u64, u64, u64, u64),
    st.builds(m.Heartbeat, u64, node, node, u64, st.binary(max_size=4096)),
    st.builds(m.RequestVote, u64, node, node, u64, u64, st.booleans(), st.booleans()),
    st.builds(
        SubmitReceipt, u64, st.binary(max_size=64), st.sampled_from(["committed", "pending"]),
        u64, u64, st.text(max_size=1024),
    ),
    st.builds(
        PeerRecords,
        st.lists(
            st.builds(
                PeerRecord, node, st.binary(min_size=32, max_size=32),
                st.text(min_size=1, max_size=253), st.integers(1, 65535), u64,
                st.binary(min_size=64, max_size=64),
            ),
            max_size=5,
        ).map(tuple),
    ),
    st.builds(
        Attestations,
        st.lists(
            st.builds(
                Attestation, u64, st.binary(min_size=32, max_size=32),
                st.binary(min_size=64, max_size=64),
            ),
            max_size=40,
        ).map(tuple),
    ),
)


@RUNS
@given(valid_messages)
def test_valid_messages_pack_as_msgpack_python_does_and_round_trip(msg: Any) -> None:
    packed = REG.encode_message(msg)
    assert packed == msgpack.packb(REG.to_wire(msg), use_bin_type=True)
    assert REG.encode_message(msg) == packed  # again: a shared field now comes from the cache
    assert REG.decode_message(packed) == msg
    assert REG.decode_batch(MessageRegistry.join_batch([packed, packed])) == [msg, msg]


def _outcome(call: Any) -> Any:
    try:
        return ("ok", call())
    except RemoteProtocolError as err:
        assert err.reason in REASONS, err
        return ("refused", err.reason)


def _lists(v: Any) -> Any:
    return [_lists(x) for x in v] if isinstance(v, (list, tuple)) else v


@RUNS
@given(st.sampled_from(SAMPLES), st.data())
def test_refusals_are_typed_and_the_same_alone_or_in_a_batch(msg: Any, data: st.DataObject) -> None:
    """Replace one (possibly nested) field of a valid message with a value of another shape:
    the frame is refused with a known reason tag, whichever decoding path found it."""
    item = _lists(REG.to_wire(msg))
    target: list[Any] = item
    while True:
        idx = data.draw(st.integers(min_value=0, max_value=len(target) - 1))
        if isinstance(target[idx], list) and target[idx] and data.draw(st.booleans()):
            target = target[idx]
            continue
        target[idx] = data.draw(
            st.one_of(
                st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                st.binary(max_size=80), st.text(max_size=20), st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3),
            )
        )
        break
    packed = msgpack.packb(item, use_bin_type=True)
    alone = _outcome(lambda: REG.decode_message(packed))
    good = REG.encode_message(SAMPLES[0])
    batched = _outcome(lambda: REG.decode_batch(MessageRegistry.join_batch([good, packed])))
    if alone[0] == "ok":
        assert batched == ("ok", [SAMPLES[0], alone[1]])
    else:
        assert batched == alone


@pytest.mark.parametrize(
    "item,reason",
    [
        ([4, 5, 2, 1, False, 0, 9, 7], "malformed"),  # a field short
        ([4, 5, 2, 1, False, 0, 9, 7, 3, 0], "malformed"),  # a field too many
        ([99, 1], "unknown_kind"),
        ([True, 5, 2, 1], "unknown_kind"),
        (["7", 5, 2, 1], "unknown_kind"),
        ([7, 5, 2, True], "invalid"),  # a bool where a node id goes
        ([7, 5, 2, 0], "invalid"),  # node id 0
        ([7, 2**63, 2, 1], "invalid"),  # above int64
        ([6, 5, 2, 1, "ctx"], "invalid"),  # str where bytes go
        ([19, 7, b"h", "maybe", 0, 0, ""], "invalid"),  # not a receipt status
        ([19, 7, b"h", b"committed", 0, 0, ""], "invalid"),
        ([8, 5, 1, 2, [1, 1, [[1, 2, 2], []]], 0, b"", True], "invalid"),  # duplicate voter
        ([8, 5, 1, 2, [1, 9, [[1], []]], 0, b"", True], "invalid"),  # snapshot term > term
        ({"kind": 4}, "malformed"),
        ([], "malformed"),
        (7, "malformed"),
    ],
)
def test_each_refusal_has_its_reason(item: Any, reason: str) -> None:
    packed = msgpack.packb(item, use_bin_type=True)
    for call in (
        lambda: REG.decode_message(packed),
        lambda: REG.decode_batch(bytes([PROTOCOL_VERSION]) + msgpack.packb([item])),
    ):
        with pytest.raises(RemoteProtocolError) as err:
            call()
        assert err.value.reason == reason


def test_trailing_bytes_after_the_batch_are_refused() -> None:
    frame = REG.encode_batch(SAMPLES[:2])
    with pytest.raises(RemoteProtocolError) as err:
        REG.decode_batch(frame + b"\x00")
    assert err.value.reason == "malformed"


def test_decoding_leaves_the_garbage_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden() -> None:
        raise AssertionError("the codec must not switch the garbage collector")

    monkeypatch.setattr(gc, "disable", forbidden)
    monkeypatch.setattr(gc, "enable", forbidden)
    frame = REG.encode_batch(SAMPLES)
    assert REG.decode_batch(frame) == SAMPLES
    with pytest.raises(RemoteProtocolError):
        REG.decode_batch(frame[:-3])
