"""The live engine's plumbing: [net.peer_addresses] in node configs, and the relay's blocks."""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import pytest
import trio

from hzp2p.config import ConfigError, HostPort, load_config
from hzp2p.sim.relay import Relay
from hzp2p.sim.scenario import Network

BASE = (
    'node_id = 1\ngenesis = "genesis.toml"\ndata_dir = "data"\nlisten = "127.0.0.1:7001"\n'
    'signing_key = "s.key"\nnode_key = "n.key"\n'
)


def test_peer_addresses_parse(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(BASE + '[net.peer_addresses]\n3 = "127.0.0.1:9003"\n2 = "127.0.0.1:9002"\n')
    cfg = load_config(p)
    assert cfg.net.peer_addresses == (
        (2, HostPort("127.0.0.1", 9002)),
        (3, HostPort("127.0.0.1", 9003)),
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [('[net.peer_addresses]\nx = "127.0.0.1:1"\n', "net.peer_addresses.x"),
     ('[net.peer_addresses]\n2 = "nope"\n', "net.peer_addresses.2"),
     ('[net]\npeer_addresses = 3\n', "net.peer_addresses")],
)  # fmt: skip
def test_peer_addresses_errors_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(BASE + text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert field in str(exc.value)


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


def test_relay_forwards_and_partitions() -> None:
    async def main() -> None:
        async with trio.open_nursery() as n:
            listeners = await n.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            relay = Relay(
                {1: ("127.0.0.1", 1), 2: ("127.0.0.1", port)}, Network(), random.Random(1)
            )
            await relay.start(n)
            assert set(relay.ports) == {(1, 2), (2, 1)}
            s = await trio.open_tcp_stream("127.0.0.1", relay.ports[(1, 2)])
            await s.send_all(b"hello")
            with trio.fail_after(5):
                assert await s.receive_some(100) == b"hello"  # both directions relayed
            relay.block({(1, 2), (2, 1)})  # a partition cuts the open session
            with trio.fail_after(5):
                assert await s.receive_some(100) == b""
            s2 = await trio.open_tcp_stream("127.0.0.1", relay.ports[(1, 2)])
            with trio.fail_after(5):
                assert await s2.receive_some(100) == b""  # and refuses new ones
            relay.unblock({(1, 2), (2, 1)})
            s3 = await trio.open_tcp_stream("127.0.0.1", relay.ports[(1, 2)])
            await s3.send_all(b"again")
            with trio.fail_after(5):
                assert await s3.receive_some(100) == b"again"
            for st in (s, s2, s3):
                await st.aclose()
            n.cancel_scope.cancel()

    trio.run(main)
