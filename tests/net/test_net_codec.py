"""Codec: every kind round-trips; every field is validated; the registry takes new kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from hzp2p.net.codec import MAX_INT, PROTOCOL_VERSION, MessageRegistry, binary, uint
from hzp2p.net.errors import LocalProtocolError, RemoteProtocolError
from hzp2p.net.framing import FrameDecoder, encode_frame
from hzp2p.net.schemas import (
    Blob,
    ForwardSubmit,
    PeerRecord,
    PeerRecords,
    ReadIndexRequest,
    ReadIndexResponse,
    SubmitReceipt,
    default_registry,
)
from hzp2p.raft import messages as m
from hzp2p.raft.types import ConfState, Entry, EntryKind, SnapshotMeta

REG = default_registry()
CONF = ConfState(frozenset({1, 2, 3}), frozenset({4}))
SAMPLES: list[Any] = [
    m.RequestVote(5, 1, 2, 10, 4, pre_vote=True, transfer=False),
    m.RequestVoteResponse(5, 2, 1, granted=True, pre_vote=True),
    m.AppendEntries(
        5, 1, 2, 9, 4, (Entry(4, 10, EntryKind.NORMAL, b"x" * 200), Entry(5, 11, EntryKind.NOOP)), 9
    ),
    m.AppendEntries(5, 1, 2, 0, 0, (), 0),
    m.AppendEntriesResponse(5, 2, 1, False, 0, 9, 7, 3),
    m.Heartbeat(5, 1, 2, 8, b"ctx"),
    m.HeartbeatResponse(5, 2, 1, b"ctx"),
    m.TimeoutNow(5, 1, 2),
    m.InstallSnapshot(5, 1, 2, SnapshotMeta(100, 4, CONF), 0, b"chunk", True),
    m.InstallSnapshotResponse(5, 2, 1, 100, 5, 100, False),
    PeerRecords((PeerRecord(3, b"k" * 32, "10.0.0.3", 7000, 2, b"s" * 64),)),
    Blob("bench", b"\0" * 1000),
    ForwardSubmit(7, b"tx-bytes", 2500),
    SubmitReceipt(7, b"h" * 32, "committed", 12, 3, ""),
    ReadIndexRequest(b"f2:17"),
    ReadIndexResponse(b"f2:17", 42, ok=True),
    ReadIndexResponse(b"f2:17"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_roundtrip(msg: Any) -> None:
    assert REG.decode_batch(REG.encode_batch([msg])) == [msg]
    assert REG.decode_message(REG.encode_message(msg)) == msg


def test_batch_of_everything_roundtrips_and_is_encoded_once() -> None:
    parts = [REG.encode_message(x) for x in SAMPLES * 3]
    assert REG.decode_batch(MessageRegistry.join_batch(parts)) == SAMPLES * 3
    assert REG.decode_batch(MessageRegistry.join_batch([])) == []


def wire(msg: Any) -> list[Any]:
    return REG.to_wire(msg)


def refuse(item: Any, reason: str | None = None) -> None:
    data = bytes([PROTOCOL_VERSION]) + msgpack.packb([item], use_bin_type=True)
    with pytest.raises(RemoteProtocolError) as err:
        REG.decode_batch(data)
    if reason:
        assert err.value.reason == reason


HB = wire(m.Heartbeat(5, 1, 2, 8, b""))


@pytest.mark.parametrize(
    "index,value",
    [
        (1, -1),
        (1, True),
        (1, 1.5),
        (1, MAX_INT + 1),
        (2, 0),
        (3, -2),
        (4, "8"),
        (5, "ctx"),
        (5, b"x" * 5000),
    ],
)
def test_heartbeat_field_validation(index: int, value: Any) -> None:
    bad = list(HB)
    bad[index] = value
    refuse(bad, "invalid")


def test_bools_must_be_bools() -> None:
    rv = wire(m.RequestVote(5, 1, 2, 10, 4))
    rv[6] = 1
    refuse(rv, "invalid")


def test_nested_entry_validation() -> None:
    ae = wire(SAMPLES[2])
    for i, v in [(0, -1), (1, "x"), (2, 9), (3, "text"), (2, True)]:
        bad = [list(e) for e in ae[6]]
        bad[0][i] = v
        refuse([*ae[:6], bad, ae[7]], "invalid")
    refuse([*ae[:6], [[4, 10, 0]], ae[7]], "invalid")  # short entry


def test_append_entries_must_be_contiguous_and_term_bounded() -> None:
    refuse(wire(m.AppendEntries(5, 1, 2, 9, 4, (Entry(4, 11),), 9)), "invalid")
    refuse(wire(m.AppendEntries(5, 1, 2, 9, 4, (Entry(6, 10),), 9)), "invalid")
    refuse(wire(m.AppendEntries(5, 1, 2, 9, 4, (Entry(5, 10), Entry(4, 11)), 9)), "invalid")


def test_conf_state_validation() -> None:
    snap = wire(SAMPLES[8])
    for voters, learners in [([1, 1], []), ([1], [1]), ([0], []), ([1], "x"), ([True], [])]:
        bad = list(snap)
        bad[4] = [100, 4, [voters, learners]]
        refuse(bad, "invalid")


def test_unknown_and_malformed_refused() -> None:
    refuse([200, 1, 2], "unknown_kind")
    refuse([True, 1, 2], "unknown_kind")
    refuse([], "malformed")
    refuse({"kind": 1}, "malformed")
    refuse(HB[:-1], "malformed")
    refuse([*HB, 0], "malformed")
    for data in [
        b"",
        b"\x02\x90",
        b"\x01\xc1",
        b"\x01\x91",
        b"\x01\x05",
        b"\x01\x91\xd6\xff" + b"\0" * 4,
    ]:
        with pytest.raises(RemoteProtocolError):
            REG.decode_batch(data)


def test_misrouted_message_refused() -> None:
    data = REG.encode_batch([SAMPLES[5]])
    assert REG.decode_batch(data, src=1, dst=2) == [SAMPLES[5]]
    with pytest.raises(RemoteProtocolError, match="misrouted"):
        REG.decode_batch(data, src=3, dst=2)
    with pytest.raises(RemoteProtocolError, match="misrouted"):
        REG.decode_batch(data, src=1, dst=3)


def test_receipt_status_is_checked() -> None:
    refuse(wire(SubmitReceipt(7, b"h", "maybe")), "invalid")


def test_read_index_fields_are_checked() -> None:
    assert wire(ReadIndexRequest(b"c")) == [20, b"c"]
    assert wire(ReadIndexResponse(b"c", 9, True)) == [21, b"c", 9, True]
    for ctx in (b"", b"x" * 65, "ctx", 5):
        refuse([20, ctx], "invalid")
        refuse([21, ctx, 9, True], "invalid")
    refuse([21, b"c", -1, True], "invalid")
    refuse([21, b"c", 9, 1], "invalid")
    refuse([21, b"c", 9, False], "invalid")  # a refusal carries no index
    refuse([20, b"c", 1], "malformed")
    refuse([21, b"c", 9], "malformed")


def test_registry_accepts_daemon_kinds_and_refuses_misuse() -> None:
    @dataclass(frozen=True, slots=True)
    class Gossip:
        round: int
        payload: bytes

    reg = default_registry()
    reg.register(64, Gossip, [uint(), binary(16)])
    assert reg.decode_batch(reg.encode_batch([Gossip(3, b"ab")])) == [Gossip(3, b"ab")]
    with pytest.raises(RemoteProtocolError):
        REG.decode_batch(reg.encode_batch([Gossip(3, b"ab")]))  # a node without the kind refuses it
    with pytest.raises(LocalProtocolError):
        reg.register(64, Gossip, [uint(), binary(16)])
    with pytest.raises(LocalProtocolError):
        reg.register(65, Gossip, [uint()])
    with pytest.raises(LocalProtocolError):
        REG.encode_message(Gossip(1, b""))
    with pytest.raises(LocalProtocolError):
        REG.encode_message(object())


def test_frame_decoder_splits_and_joins() -> None:
    frames = [b"", b"a", b"bc" * 100, b"z" * 5000]
    stream = b"".join(encode_frame(f, 1 << 16) for f in frames)
    for step in (1, 3, 7, 4096, len(stream)):
        dec = FrameDecoder(1 << 16)
        got: list[bytes] = []
        for i in range(0, len(stream), step):
            dec.feed(stream[i : i + step])
            got.extend(dec.frames())
        assert got == frames
        assert dec.buffered_bytes == 0


def test_frame_decoder_refuses_oversized_before_buffering() -> None:
    dec = FrameDecoder(100)
    dec.feed((101).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="oversized"):
        dec.next_frame()
    with pytest.raises(RemoteProtocolError):
        dec.feed(b"more")
    with pytest.raises(LocalProtocolError):
        encode_frame(b"x" * 101, 100)


def test_shared_entries_are_packed_once_and_give_the_same_bytes() -> None:
    reg = default_registry()
    entries = tuple(Entry(4, 10 + i, EntryKind.NORMAL, bytes([i]) * 50) for i in range(20))
    to2 = m.AppendEntries(5, 1, 2, 9, 4, entries, 9)
    to3 = m.AppendEntries(5, 1, 3, 9, 4, entries, 8)
    plain = [msgpack.packb(reg.to_wire(x), use_bin_type=True) for x in (to2, to3)]
    assert [reg.encode_message(to2), reg.encode_message(to3)] == plain  # miss, then hit
    assert [reg.decode_message(p) for p in plain] == [to2, to3]
    # An equal but distinct tuple, and a list, are packed afresh (identity only).
    again = m.AppendEntries(5, 1, 2, 9, 4, tuple(entries), 9)
    assert reg.encode_message(again) == plain[0]
    listed = m.AppendEntries(5, 1, 2, 9, 4, list(entries), 9)  # type: ignore[arg-type]
    assert reg.encode_message(listed) == plain[0]
    # The cache holds only a few tuples, and evicted ones still encode right.
    others = [tuple(Entry(4, 10 + i, data=bytes([k])) for i in range(16)) for k in range(8)]
    for o in others:
        reg.encode_message(m.AppendEntries(5, 1, 2, 9, 4, o, 9))
    assert 0 < len(reg._shared) <= 4 and all(x is not entries for x, _ in reg._shared)
    assert reg.encode_message(to3) == plain[1]
    short = m.AppendEntries(5, 1, 2, 9, 4, entries[:3], 9)  # short: packed whole, not cached
    assert reg.encode_message(short) == msgpack.packb(reg.to_wire(short), use_bin_type=True)


def test_entries_decode_inline_with_each_field_checked() -> None:
    ae = REG.to_wire(m.AppendEntries(5, 1, 2, 9, 4, (Entry(4, 10, EntryKind.NOOP, b"x"),), 9))
    assert REG.decode_message(msgpack.packb(ae)).entries[0].kind is EntryKind.NOOP
    for bad in ([4, 10, 7, b"x"], [4, 10, True, b"x"], [4, 10, 0, "x"], [4, -1, 0, b"x"],
                [4, 10, 0, b"x", 1], 7):
        refuse([*ae[:6], [bad], ae[7]], "invalid")
