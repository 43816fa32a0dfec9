"""hzp2p.net: how nodes talk — framing, codec, handshake, sessions, TCP, discovery, simulator.

Start at `transport.Transport` (the contract), `tcp.TcpTransport` (the real
one), `simnet.SimNetwork` (the in-memory one) and `schemas.default_registry`
(what can be sent). docs/net.md describes the wire protocol.
"""
