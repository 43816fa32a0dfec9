"""TCP-specific behaviour: restarts, discovery through a third node, duplicate dials, drops."""

from __future__ import annotations

import random

import trio
from net_helpers import CHAIN, identities, membership_of, open_tcp, tcp_config, wait_until

from hzp2p.net.discovery import AddressBook, Verdict, make_record
from hzp2p.net.tcp import TcpTransport
from hzp2p.raft.messages import Heartbeat

IDS = identities(3)


async def test_reconnect_after_peer_restart(nursery: trio.Nursery) -> None:
    mem = membership_of(IDS[:2])
    async with open_tcp(nursery, IDS[:1], mem) as (a,):
        b_scope = trio.CancelScope()
        b = TcpTransport(IDS[1], CHAIN, mem, tcp_config(), rng=random.Random(2))

        async def run_b(
            t: TcpTransport, scope: trio.CancelScope, *, task_status: trio.TaskStatus[None]
        ) -> None:
            with scope:
                await t.run(task_status=task_status)

        await nursery.start(run_b, b, b_scope)
        a.address_book.add_hint(2, b.listen_address)
        a.membership_changed()
        await wait_until(lambda: a.connected_peers() == {2})
        port = b.listen_address[1]

        b_scope.cancel()  # node 2 goes down
        await wait_until(lambda: a.connected_peers() == frozenset())
        a.send_nowait(2, Heartbeat(1, 1, 2, 41))  # queued while the peer is down

        b2 = TcpTransport(IDS[1], CHAIN, mem, tcp_config(listen_port=port), rng=random.Random(3))
        await nursery.start(run_b, b2, trio.CancelScope())
        await wait_until(lambda: a.connected_peers() == {2} and b2.connected_peers() == {1})
        a.send_nowait(2, Heartbeat(1, 1, 2, 42))
        with trio.fail_after(5):
            got = [(await b2.receive())[1].commit for _ in range(2)]
        assert got == [41, 42]
        assert a.statistics().reconnects >= 1


async def test_discovery_of_member_known_only_through_third_node(nursery: trio.Nursery) -> None:
    mem = membership_of(IDS)
    async with open_tcp(nursery, IDS[:1], mem) as (seed,):
        others = [
            TcpTransport(
                i,
                CHAIN,
                mem,
                tcp_config(seeds=(seed.listen_address,)),
                rng=random.Random(i.node_id),
            )
            for i in IDS[1:]
        ]
        for t in others:
            await nursery.start(t.run)
        b, c = others
        # Neither 2 nor 3 was configured with the other's address: they learn it from node 1.
        await wait_until(lambda: b.connected_peers() == {1, 3} and c.connected_peers() == {1, 2})
        assert c.address_book.address_of(2) == b.listen_address
        assert b.address_book.address_of(3) == c.listen_address
        assert b.statistics().peer_records_accepted >= 1
        b.send_nowait(3, Heartbeat(1, 2, 3, 5))
        with trio.fail_after(5):
            assert await c.receive() == (2, Heartbeat(1, 2, 3, 5))


async def test_simultaneous_dials_keep_one_connection_dialled_by_lower_id(
    nursery: trio.Nursery,
) -> None:
    mem = membership_of(IDS[:2])
    # backoff 0: no head start for the lower id, so both really dial at once
    async with open_tcp(nursery, IDS[:2], mem, backoff_initial_s=0.0) as (a, b):
        await wait_until(lambda: a.connected_peers() == {2} and b.connected_peers() == {1})
        await trio.sleep(0.3)
        ca, cb = a._peers[2].conn, b._peers[1].conn
        assert ca is not None and cb is not None
        assert ca.dialer == 1 and cb.dialer == 1
        a.send_nowait(2, Heartbeat(1, 1, 2, 1))
        with trio.fail_after(5):
            assert await b.receive() == (1, Heartbeat(1, 1, 2, 1))


async def test_send_queue_full_drops_newest_and_counts(nursery: trio.Nursery) -> None:
    mem = membership_of(IDS[:2])
    a = TcpTransport(IDS[0], CHAIN, mem, tcp_config(send_queue_max_msgs=10))
    await nursery.start(a.run)  # node 2 has no known address: everything queues
    results = [a.send_nowait(2, Heartbeat(1, 1, 2, i)) for i in range(12)]
    assert results == [True] * 10 + [False, False]
    assert a.statistics().messages_dropped == 2


def test_backoff_grows_with_jitter_and_is_bounded() -> None:
    a = TcpTransport(
        IDS[0],
        CHAIN,
        membership_of(IDS),
        tcp_config(backoff_initial_s=0.1, backoff_max_s=2.0),
        rng=random.Random(1),
    )
    delays = [a._backoff_s(k) for k in range(12)]
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert delays[3] > delays[0]
    assert max(delays) <= 2.0 and delays[-1] >= 1.0
    b = TcpTransport(
        IDS[0],
        CHAIN,
        membership_of(IDS),
        tcp_config(backoff_initial_s=0.1, backoff_max_s=2.0),
        rng=random.Random(1),
    )
    assert [b._backoff_s(k) for k in range(12)] == delays  # jitter comes from the injected rng


def test_peer_records_need_the_members_key_and_newer_seq() -> None:
    mem = membership_of(IDS)
    book = AddressBook(IDS[0], CHAIN, mem)
    rec = make_record(IDS[1], CHAIN, "10.0.0.2", 7000, seq=5)
    assert book.learn(rec) is Verdict.ACCEPTED
    assert book.address_of(2) == ("10.0.0.2", 7000)
    # Node 3 tries to redirect node 2's traffic with its own key: refused.
    forged = make_record(IDS[2], CHAIN, "6.6.6.6", 1, seq=99)
    from dataclasses import replace

    assert book.learn(replace(forged, node_id=2, node_key=IDS[1].node_key)) is Verdict.REJECTED
    assert book.learn(replace(forged, node_id=2)) is Verdict.REJECTED
    assert book.address_of(2) == ("10.0.0.2", 7000)
    # Another chain's record is refused too.
    from hzp2p.net.handshake import ChainParams

    other = make_record(IDS[1], ChainParams("other", CHAIN.genesis_hash), "6.6.6.6", 1, seq=100)
    assert book.learn(other) is Verdict.REJECTED
    assert book.learn(make_record(IDS[1], CHAIN, "10.0.0.9", 7000, seq=4)) is Verdict.STALE
    assert book.learn(make_record(IDS[1], CHAIN, "10.0.0.9", 7001, seq=6)) is Verdict.ACCEPTED
    assert book.address_of(2) == ("10.0.0.9", 7001)
    # Removed members are forgotten.
    mem.set_members({i.node_id: i.node_key for i in IDS if i.node_id != 2})
    assert book.prune() == [2]
    assert book.address_of(2) is None
    assert book.learn(make_record(IDS[1], CHAIN, "10.0.0.9", 7001, seq=7)) is Verdict.REJECTED


async def test_five_nodes_from_one_seed_form_a_stable_mesh(nursery: trio.Nursery) -> None:
    ids = identities(5)
    mem = membership_of(ids)
    async with open_tcp(nursery, ids[:1], mem) as (seed,):
        seeds = (seed.listen_address,)
        ts = [seed]
        for i in ids[1:]:
            t = TcpTransport(i, CHAIN, mem, tcp_config(seeds=seeds), rng=random.Random(i.node_id))
            await nursery.start(t.run)
            ts.append(t)
        everyone = {i.node_id for i in ids}
        await wait_until(lambda: all(t.connected_peers() == everyone - {t.node_id} for t in ts))
        await trio.sleep(0.5)  # let dials already in flight resolve
        assert all(t.connected_peers() == everyone - {t.node_id} for t in ts)
        opened = [t.statistics().connections_opened for t in ts]
        await trio.sleep(0.5)  # no churn once the mesh has formed
        assert [t.statistics().connections_opened for t in ts] == opened
        for t in ts:
            for dst in everyone - {t.node_id}:
                assert t.send_nowait(dst, Heartbeat(1, t.node_id, dst, 0))
        with trio.fail_after(5):
            for t in ts:
                srcs = {(await t.receive())[0] for _ in range(4)}
                assert srcs == everyone - {t.node_id}


async def test_own_address_in_seeds_is_not_dialled(nursery: trio.Nursery) -> None:
    mem = membership_of(IDS[:1])
    t = TcpTransport(IDS[0], CHAIN, mem, tcp_config(listen_port=0))
    await nursery.start(t.run)
    await t._seed_loop(t.listen_address)  # returns at once
    assert t.statistics().handshakes_refused == 0


class FreezingRelay:
    """A 127.0.0.1 TCP relay that can freeze like a silently dropping network: a connection
    that was open (or opened) during a freeze never forwards again (a half-open link whose
    TCP retransmissions have backed off far past the heal); new ones forward after a thaw."""

    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None
        self.frozen = False
        self.epoch = 0
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.address = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        nursery.start_soon(trio.serve_listeners, self._handle, listeners)

    def freeze(self) -> None:
        self.frozen = True
        self.epoch += 1

    async def _handle(self, client: trio.SocketStream) -> None:
        born = self.epoch
        if self.frozen or self.target is None:
            await trio.sleep_forever()
        upstream = await trio.open_tcp_stream(*self.target)

        async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
            while data := await src.receive_some(65536):
                if self.epoch != born:
                    await trio.sleep_forever()
                await dst.send_all(data)

        try:
            async with trio.open_nursery() as n:
                n.start_soon(pump, client, upstream)
                n.start_soon(pump, upstream, client)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def test_half_open_link_is_replaced_long_before_the_read_timeout(
    nursery: trio.Nursery,
) -> None:
    """Issue 22: after a partition of silently dropped packets heals, a link left half-open is
    replaced within a few keep-alives, not after the read timeout (30 s here)."""
    mem = membership_of(IDS[:2])
    r12, r21 = FreezingRelay(), FreezingRelay()
    for r in (r12, r21):
        await r.start(nursery)
    slow = dict(keepalive_interval_s=0.2, read_timeout_s=30.0, handshake_timeout_s=0.5)
    a = TcpTransport(IDS[0], CHAIN, mem, tcp_config(peer_overrides=((2, r12.address),), **slow),
                     rng=random.Random(1))
    b = TcpTransport(IDS[1], CHAIN, mem, tcp_config(peer_overrides=((1, r21.address),), **slow),
                     rng=random.Random(2))
    for t in (a, b):
        await nursery.start(t.run)
    r12.target, r21.target = b.listen_address, a.listen_address
    a.membership_changed()
    b.membership_changed()

    async def delivered(commit: int, within_s: float) -> float:
        start = trio.current_time()
        with trio.fail_after(within_s):
            async with trio.open_nursery() as n:

                async def resend() -> None:
                    while True:  # a message written into the dead link is lost: Raft re-sends
                        a.send_nowait(2, Heartbeat(1, 1, 2, commit))
                        await trio.sleep(0.05)

                n.start_soon(resend)
                while (await b.receive())[1].commit != commit:
                    pass
                n.cancel_scope.cancel()
        return trio.current_time() - start

    await delivered(1, 5)
    for r in (r12, r21):
        r.freeze()
    await trio.sleep(1.0)  # both sides see silence; replacement dials fail while frozen
    assert a.connected_peers() == {2}, "the silent link is still up: no read timeout yet"
    for r in (r12, r21):
        r.frozen = False
    took = await delivered(2, 5)
    assert took < 3.0
    stats = [t.statistics() for t in (a, b)]
    assert sum(s.stale_replacements for s in stats) >= 2
    assert sum(s.read_timeouts for s in stats) == 0
