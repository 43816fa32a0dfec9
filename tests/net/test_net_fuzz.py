"""Hypothesis fuzzing of the frame decoder, the session and message validation.

Only RemoteProtocolError may ever escape the pure decoders (>= 10,000 cases in
all), and garbage sent to a real listener never stops it serving other peers.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import msgpack
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net_helpers import expect_closed, identities, open_tcp, raw_connect, wait_until
from test_net_codec import SAMPLES

from hzp2p.net.codec import PROTOCOL_VERSION
from hzp2p.net.errors import RemoteProtocolError
from hzp2p.net.framing import FrameDecoder
from hzp2p.net.handshake import Initiator, Responder
from hzp2p.net.schemas import default_registry
from hzp2p.net.session import SessionCipher
from hzp2p.raft.messages import Heartbeat

REG = default_registry()
FAST = settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=25,
)
shallow = st.one_of(
    scalars, st.lists(st.one_of(scalars, st.lists(scalars, max_size=4)), max_size=4)
)


def _decode(data: bytes, **kw: Any) -> None:
    with contextlib.suppress(RemoteProtocolError):
        REG.decode_batch(data, **kw)


@FAST
@given(st.binary(max_size=300))
def test_fuzz_raw_plaintext(data: bytes) -> None:
    _decode(data)
    _decode(bytes([PROTOCOL_VERSION]) + data)


@FAST
@given(st.integers(min_value=0, max_value=40), st.lists(shallow, max_size=9))
def test_fuzz_structured_messages(kind: int, fields: list[Any]) -> None:
    """Well-formed msgpack of the right shape with arbitrary field values."""
    item = [kind, *fields]
    _decode(bytes([PROTOCOL_VERSION]) + msgpack.packb([item], use_bin_type=True), src=1, dst=2)


@FAST
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_mutated_valid_messages(msg: Any, data: st.DataObject) -> None:
    """Take a valid message and replace one (possibly nested) field with anything."""
    item = REG.to_wire(msg)
    target: list[Any] = item
    while True:
        idx = data.draw(st.integers(min_value=0, max_value=len(target) - 1))
        sub = target[idx]
        if isinstance(sub, list) and sub and data.draw(st.booleans()):
            target = sub
            continue
        target[idx] = data.draw(values)
        break
    _decode(bytes([PROTOCOL_VERSION]) + msgpack.packb([item], use_bin_type=True))


@FAST
@given(st.binary(max_size=200), st.data())
def test_fuzz_bit_flips_of_valid_batch(junk: bytes, data: st.DataObject) -> None:
    good = bytearray(REG.encode_batch(SAMPLES[:6]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(good) - 1))
        good[i] = data.draw(st.integers(min_value=0, max_value=255))
    _decode(bytes(good))
    _decode(bytes(good[: len(good) // 2]) + junk)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.binary(max_size=64), max_size=8), st.integers(min_value=1, max_value=200))
def test_fuzz_frame_decoder_and_session(chunks: list[bytes], max_frame: int) -> None:
    dec = FrameDecoder(max_frame)
    cipher = SessionCipher(b"a" * 32, b"b" * 32)
    try:
        for c in chunks:
            dec.feed(c)
            for body in dec.frames():
                assert len(body) <= max_frame
                REG.decode_batch(cipher.open(body))
    except RemoteProtocolError:
        pass


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_fuzz_handshake_frames(data: bytes) -> None:
    ids = identities(2)
    mem = {i.node_id: i.node_key for i in ids}

    class M:
        def node_key(self, n: int) -> bytes | None:
            return mem.get(n)

        def members(self) -> dict[int, bytes]:
            return mem

    from net_helpers import CHAIN

    for call in (
        lambda: Responder(ids[0], CHAIN, M()).on_hello(data),
        lambda: Initiator(ids[1], CHAIN, M()).on_reply(data),
    ):
        with contextlib.suppress(RemoteProtocolError):
            call()


async def test_garbage_to_listener_does_not_stop_it_serving(nursery: trio.Nursery) -> None:
    rng = random.Random(4)
    ids = identities(2)
    async with open_tcp(nursery, ids) as (a, b):
        await wait_until(lambda: a.connected_peers() == {2})
        for i in range(30):
            stream = await raw_connect(a)
            junk = rng.randbytes(rng.randrange(1, 3000))
            if i % 3 == 0:
                junk = len(junk).to_bytes(4, "big") + junk  # well-framed garbage
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(junk)
            await expect_closed(stream)
        await wait_until(lambda: a.statistics().handshakes_refused == 30)
        b.send_nowait(1, Heartbeat(1, 2, 1, 0))
        with trio.fail_after(5):
            assert await a.receive() == (2, Heartbeat(1, 2, 1, 0))
        assert a.connected_peers() == {2}
