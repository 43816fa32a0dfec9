"""The Transport contract, run against both TcpTransport and SimTransport."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from net_helpers import identities, membership_of, open_transports, wait_until

from hzp2p.net.errors import LocalProtocolError
from hzp2p.net.schemas import Blob, ForwardSubmit, SubmitReceipt
from hzp2p.net.transport import Transport
from hzp2p.raft.messages import AppendEntries, AppendEntriesResponse, Heartbeat, RequestVote
from hzp2p.raft.types import Entry

KINDS = ["tcp", "sim"]
IDS = identities(3)


async def recv(t: Any, timeout_s: float = 5.0) -> tuple[int, Any]:
    with trio.fail_after(timeout_s):
        return await t.receive()  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", KINDS)
async def test_implements_the_protocol(kind: str, nursery: trio.Nursery) -> None:
    async with open_transports(kind, nursery, IDS) as ts:
        for t, i in zip(ts, IDS, strict=True):
            assert isinstance(t, Transport)
            assert t.node_id == i.node_id
            assert t.connected_peers() == {1, 2, 3} - {i.node_id}


@pytest.mark.parametrize("kind", KINDS)
async def test_raft_message_delivered_with_authenticated_sender(
    kind: str, nursery: trio.Nursery
) -> None:
    async with open_transports(kind, nursery, IDS) as (a, b, c):
        msg = RequestVote(3, 1, 2, 7, 2, pre_vote=True)
        assert a.send_nowait(2, msg) is True
        assert await recv(b) == (1, msg)
        reply = AppendEntriesResponse(3, 3, 1, True, match_index=9)
        assert c.send_nowait(1, reply)
        assert await recv(a) == (3, reply)


@pytest.mark.parametrize("kind", KINDS)
async def test_fifo_per_pair_no_duplicates(kind: str, nursery: trio.Nursery) -> None:
    async with open_transports(kind, nursery, IDS) as (a, b, c):
        n = 2000
        for i in range(n):
            assert a.send_nowait(2, Heartbeat(1, 1, 2, i))
            assert c.send_nowait(2, Heartbeat(1, 3, 2, i))
        got: dict[int, list[int]] = {1: [], 3: []}
        for _ in range(2 * n):
            src, msg = await recv(b)
            got[src].append(msg.commit)
        assert got == {1: list(range(n)), 3: list(range(n))}


@pytest.mark.parametrize("kind", KINDS)
async def test_large_append_entries_and_app_messages(kind: str, nursery: trio.Nursery) -> None:
    async with open_transports(kind, nursery, IDS) as (a, b, _):
        entries = tuple(Entry(2, 11 + i, data=bytes([i % 256]) * 4000) for i in range(200))
        ae = AppendEntries(2, 1, 2, 10, 1, entries, 10)
        blob = Blob("snapshot", b"\x01" * 300_000)
        fwd = ForwardSubmit(1, b"tx")
        assert a.send_nowait(2, ae) and a.send_nowait(2, blob) and a.send_nowait(2, fwd)
        assert [await recv(b) for _ in range(3)] == [(1, ae), (1, blob), (1, fwd)]
        b.send_nowait(1, SubmitReceipt(1, b"h" * 32, "pending"))
        assert await recv(a) == (2, SubmitReceipt(1, b"h" * 32, "pending"))


@pytest.mark.parametrize("kind", KINDS)
async def test_misuse_raises_local_protocol_error(kind: str, nursery: trio.Nursery) -> None:
    async with open_transports(kind, nursery, IDS) as (a, _, _):
        with pytest.raises(LocalProtocolError):
            a.send_nowait(2, object())
        with pytest.raises(LocalProtocolError):
            a.send_nowait(2, Heartbeat(1, 1, 3, 0))  # dst field disagrees with dst


@pytest.mark.parametrize("kind", KINDS)
async def test_send_to_non_member_or_self_is_dropped_and_counted(
    kind: str, nursery: trio.Nursery
) -> None:
    async with open_transports(kind, nursery, IDS) as (a, _, _):
        assert a.send_nowait(9, Heartbeat(1, 1, 9, 0)) is False
        assert a.send_nowait(1, Heartbeat(1, 1, 1, 0)) is False
        assert a.statistics().messages_dropped == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_statistics_count_traffic(kind: str, nursery: trio.Nursery) -> None:
    async with open_transports(kind, nursery, IDS) as (a, b, _):
        before = b.statistics().messages_received
        for i in range(10):
            a.send_nowait(2, Heartbeat(1, 1, 2, i))
        for _ in range(10):
            await recv(b)
        assert b.statistics().messages_received - before >= 10
        assert a.statistics().messages_sent >= 10
        assert a.statistics().bytes_sent > 0
        assert a.statistics().connections_current == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_removed_member_is_disconnected(kind: str, nursery: trio.Nursery) -> None:
    mem = membership_of(IDS)
    async with open_transports(kind, nursery, IDS, mem) as (a, b, c):
        mem.set_members({i.node_id: i.node_key for i in IDS[:2]})
        for t in (a, b, c):
            t.membership_changed()
        await wait_until(lambda: 3 not in a.connected_peers() and 3 not in b.connected_peers())
        assert a.send_nowait(3, Heartbeat(1, 1, 3, 0)) is False
        assert a.send_nowait(2, Heartbeat(1, 1, 2, 0))
        assert await recv(b) == (1, Heartbeat(1, 1, 2, 0))


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelling_run_stops_promptly(kind: str) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as inner:
            async with open_transports(kind, inner, IDS[:2]) as (a, _):
                a.send_nowait(2, Heartbeat(1, 1, 2, 0))
            inner.cancel_scope.cancel()
    assert inner.cancel_scope.cancelled_caught
