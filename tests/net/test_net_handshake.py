"""Handshake and session refusals against a real TcpTransport listener, one test per attack."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
import structlog
import trio
from net_helpers import (
    CHAIN,
    expect_closed,
    identities,
    membership_of,
    open_tcp,
    raw_connect,
    wait_until,
)

from hzp2p.net.connection import handshake_initiator, handshake_responder
from hzp2p.net.errors import HandshakeRefused, RemoteProtocolError
from hzp2p.net.framing import encode_frame
from hzp2p.net.handshake import ChainParams, Initiator, Responder
from hzp2p.net.schemas import default_registry
from hzp2p.net.tcp import TcpTransport
from hzp2p.net.transport import NodeIdentity
from hzp2p.raft.messages import Heartbeat

REG = default_registry()
IDS = identities(3)
MEMBERS = membership_of(IDS)


def frame_for(cipher: object, msgs: list[object]) -> bytes:
    return encode_frame(cipher.seal(REG.encode_batch(msgs)), 1 << 20)  # type: ignore[attr-defined]


async def refused_handshake(server: TcpTransport, ini: Initiator) -> None:
    """Send HELLO (and FINISH if we get a reply); the server must close without a session."""
    stream = await raw_connect(server)
    await stream.send_all(encode_frame(ini.hello_frame(), 1024))
    await expect_closed(stream)
    await wait_until(lambda: server.statistics().handshakes_refused >= 1)
    assert server.connected_peers() == frozenset()


async def test_wrong_chain_id_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        with structlog.testing.capture_logs() as logs:
            await refused_handshake(
                server, Initiator(IDS[1], ChainParams("other", CHAIN.genesis_hash), MEMBERS)
            )
        assert any(e.get("reason") == "wrong_chain" for e in logs)


async def test_wrong_genesis_hash_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        await refused_handshake(
            server, Initiator(IDS[1], ChainParams(CHAIN.chain_id, b"\x22" * 32), MEMBERS)
        )


async def test_unknown_key_refused(nursery: trio.Nursery) -> None:
    stranger = NodeIdentity.from_seed(2, b"\x99" * 32)  # claims a member id, but not its key
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        with structlog.testing.capture_logs() as logs:
            await refused_handshake(server, Initiator(stranger, CHAIN, MEMBERS))
        assert any(e.get("reason") == "unknown_key" for e in logs)


async def test_unknown_node_id_refused(nursery: trio.Nursery) -> None:
    stranger = NodeIdentity.from_seed(9, b"\x99" * 32)
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        await refused_handshake(server, Initiator(stranger, CHAIN, MEMBERS))


async def test_claimed_id_not_matching_key_refused(nursery: trio.Nursery) -> None:
    liar = NodeIdentity(2, IDS[2].signing_key)  # node 3's real key, claiming to be node 2
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        with structlog.testing.capture_logs() as logs:
            await refused_handshake(server, Initiator(liar, CHAIN, MEMBERS))
        assert any(e.get("reason") == "id_mismatch" for e in logs)


async def test_bad_signature_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        ini = Initiator(IDS[1], CHAIN, MEMBERS, expected_peer=1)
        stream = await raw_connect(server)
        await stream.send_all(encode_frame(ini.hello_frame(), 1024))
        reply = b""
        with trio.fail_after(5):
            while len(reply) < 4 or len(reply) < 4 + int.from_bytes(reply[:4], "big"):
                reply += await stream.receive_some(4096)
        finish, _ = ini.on_reply(reply[4:])
        sig = bytearray(msgpack.unpackb(finish)[0])
        sig[0] ^= 1
        with structlog.testing.capture_logs() as logs:
            await stream.send_all(encode_frame(msgpack.packb([bytes(sig)]), 1024))
            await expect_closed(stream)
            await wait_until(lambda: server.statistics().handshakes_refused == 1)
        assert any(e.get("reason") == "bad_signature" for e in logs)
        assert server.statistics().handshakes_refused == 1


def test_bad_responder_signature_refused_sans_io() -> None:
    ini = Initiator(IDS[1], CHAIN, MEMBERS, expected_peer=1)
    reply = msgpack.unpackb(Responder(IDS[0], CHAIN, MEMBERS).on_hello(ini.hello_frame()))
    reply[8] = bytes(64)
    with pytest.raises(HandshakeRefused) as err:
        ini.on_reply(msgpack.packb(reply))
    assert err.value.reason == "bad_signature"


def test_responder_other_than_dialled_refused_sans_io() -> None:
    ini = Initiator(IDS[1], CHAIN, MEMBERS, expected_peer=3)
    reply = Responder(IDS[0], CHAIN, MEMBERS).on_hello(ini.hello_frame())
    with pytest.raises(HandshakeRefused) as err:
        ini.on_reply(reply)
    assert err.value.reason == "unexpected_peer"


async def test_dialer_refuses_impostor_server(nursery: trio.Nursery) -> None:
    """A listener at node 2's address with a non-member key is refused by the dialler."""
    impostor = NodeIdentity.from_seed(2, b"\x77" * 32)

    async def fake_server(stream: trio.SocketStream) -> None:
        with contextlib.suppress(RemoteProtocolError, trio.BrokenResourceError):
            await handshake_responder(
                stream, impostor, CHAIN, membership_of([*[*IDS, impostor][:1], impostor])
            )

    listeners = await nursery.start(trio.serve_tcp, fake_server, 0)
    port = listeners[0].socket.getsockname()[1]
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (node1,):
        node1.address_book.add_hint(2, ("127.0.0.1", port))
        node1.membership_changed()
        await wait_until(lambda: node1.statistics().handshakes_refused >= 1)
        assert 2 not in node1.connected_peers()


async def _session(
    server: TcpTransport, me: NodeIdentity = IDS[1]
) -> tuple[trio.SocketStream, object]:
    stream = await raw_connect(server)
    result, _ = await handshake_initiator(stream, me, CHAIN, MEMBERS, server.node_id)
    await wait_until(lambda: me.node_id in server.connected_peers())
    return stream, result.cipher


async def _expect_refused(server: TcpTransport, stream: trio.SocketStream, reason: str) -> None:
    with structlog.testing.capture_logs() as logs:
        await expect_closed(stream)
        await wait_until(lambda: server.statistics().frames_refused >= 1)
    assert any(e.get("reason") == reason and e.get("peer") == 2 for e in logs), logs


async def test_valid_frame_delivered_then_replay_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream, cipher = await _session(server)
        frame = frame_for(cipher, [Heartbeat(1, 2, 1, 0)])
        await stream.send_all(frame)
        with trio.fail_after(5):
            assert await server.receive() == (2, Heartbeat(1, 2, 1, 0))
        await stream.send_all(frame)  # replay
        await _expect_refused(server, stream, "bad_frame")
        assert server.statistics().messages_received >= 1


async def test_reordered_frames_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream, cipher = await _session(server)
        f1 = frame_for(cipher, [Heartbeat(1, 2, 1, 1)])
        f2 = frame_for(cipher, [Heartbeat(1, 2, 1, 2)])
        await stream.send_all(f2 + f1)
        await _expect_refused(server, stream, "bad_frame")


async def test_tampered_ciphertext_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream, cipher = await _session(server)
        frame = bytearray(frame_for(cipher, [Heartbeat(1, 2, 1, 0)]))
        frame[10] ^= 0x40
        await stream.send_all(bytes(frame))
        await _expect_refused(server, stream, "bad_frame")
        with pytest.raises(trio.TooSlowError), trio.fail_after(0.3):
            await server.receive()  # nothing reached the core


async def test_truncated_frame_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream, cipher = await _session(server)
        frame = frame_for(cipher, [Heartbeat(1, 2, 1, 0)])
        body = frame[4:-5]
        await stream.send_all(len(body).to_bytes(4, "big") + body)
        await _expect_refused(server, stream, "bad_frame")


async def test_oversized_frame_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(
        nursery, IDS[:1], MEMBERS, max_frame_bytes=1 << 20, max_batch_bytes=1 << 19
    ) as (server,):
        stream, _ = await _session(server)
        await stream.send_all(((1 << 20) + 1).to_bytes(4, "big") + b"\0" * 64)
        await _expect_refused(server, stream, "oversized_frame")


async def test_spoofed_src_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream, cipher = await _session(server)
        await stream.send_all(frame_for(cipher, [Heartbeat(1, 3, 1, 0)]))  # node 2 speaking as 3
        await _expect_refused(server, stream, "misrouted")


async def test_garbage_before_handshake_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream = await raw_connect(server)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await expect_closed(stream)
        await wait_until(lambda: server.statistics().handshakes_refused == 1)


async def test_small_garbage_frame_before_handshake_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream = await raw_connect(server)
        await stream.send_all(encode_frame(b"\xc1garbage", 1024))
        await expect_closed(stream)
        await wait_until(lambda: server.statistics().handshakes_refused == 1)


async def test_garbage_after_handshake_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream, _ = await _session(server)
        await stream.send_all(b"\x00\x00\x00\x20" + b"\xab" * 32)
        await _expect_refused(server, stream, "bad_frame")


async def test_silent_peer_times_out(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS, handshake_timeout_s=0.3) as (server,):
        with structlog.testing.capture_logs() as logs:
            stream = await raw_connect(server)
            await expect_closed(stream, timeout_s=3)
            await wait_until(lambda: server.statistics().handshakes_refused == 1)
        assert any(e.get("reason") == "handshake_timeout" for e in logs)
        assert server.statistics().handshakes_refused == 1


async def test_silent_peer_after_handshake_times_out(nursery: trio.Nursery) -> None:
    async with open_tcp(
        nursery, IDS[:1], MEMBERS, keepalive_interval_s=0.1, read_timeout_s=0.4
    ) as (server,):
        stream, _ = await _session(server)
        await expect_closed(stream, timeout_s=3)
        await wait_until(lambda: server.connected_peers() == frozenset())
        assert server.statistics().read_timeouts == 1


async def test_frame_replayed_from_an_earlier_session_refused(nursery: trio.Nursery) -> None:
    async with open_tcp(nursery, IDS[:1], MEMBERS) as (server,):
        stream1, cipher1 = await _session(server)
        frame = frame_for(cipher1, [Heartbeat(1, 2, 1, 7)])
        await stream1.send_all(frame)
        with trio.fail_after(5):
            assert await server.receive() == (2, Heartbeat(1, 2, 1, 7))
        await stream1.aclose()
        await wait_until(lambda: server.connected_peers() == frozenset())
        stream2, _ = await _session(server)
        await stream2.send_all(frame)  # same counter (0) but another session's keys
        await _expect_refused(server, stream2, "bad_frame")


async def test_member_whose_key_changes_is_disconnected(nursery: trio.Nursery) -> None:
    mem = membership_of(IDS)
    async with open_tcp(nursery, IDS[:2], mem) as (a, _):
        await wait_until(lambda: a.connected_peers() == {2})
        rotated = NodeIdentity.from_seed(2, b"\x55" * 32)
        mem.set_members({1: IDS[0].node_key, 2: rotated.node_key, 3: IDS[2].node_key})
        a.membership_changed()
        await wait_until(lambda: 2 not in a.connected_peers())
        # node 2 still runs with its old key: every new session is refused
        await wait_until(lambda: a.statistics().handshakes_refused >= 2)
        assert 2 not in a.connected_peers()


async def test_pending_handshakes_are_bounded(nursery: trio.Nursery) -> None:
    async with open_tcp(
        nursery, IDS[:1], MEMBERS, max_pending_handshakes=3, handshake_timeout_s=2.0
    ) as (server,):
        silent = [await raw_connect(server) for _ in range(3)]
        extra = await raw_connect(server)
        await expect_closed(extra, timeout_s=1.5)  # closed long before the handshake timeout
        await wait_until(lambda: server.statistics().handshakes_refused == 1)
        for s in silent:
            await s.aclose()
