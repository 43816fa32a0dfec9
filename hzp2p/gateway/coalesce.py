"""One socket write per small response: Hypercorn's Trio connection, writing a response's
head together with what follows it.

Hypercorn's h11 protocol hands its TCP server a response's head, then each body chunk,
then the end of the message, and the server writes each one at once: two socket writes
(each under a lock and a shielded cancel scope) and an empty one per JSON answer. That
is ~15 % of the server's CPU for a small response here (an empty app on Hypercorn's
Trio worker: 340-370 instead of 380-480 us a request, docs/benchmarks.md). `install()`
makes the server hold a final response head (not a 1xx interim one: the client may be
waiting for 100-continue) until the next bytes of the connection, which h11 always sends
(a body chunk or the end of the message, empty for a Content-Length body), and write
them together; empty writes are skipped. Order and content on the wire are unchanged.

Hypercorn offers no hook for this, so it replaces the TCPServer class its Trio worker
builds connections with (hypercorn.trio.run.TCPServer), for this process only, and
does nothing when that name is not there as expected (another Hypercorn version):
the gateway then runs as before, only slower.
"""

from __future__ import annotations

from typing import Any

_HEAD = b"HTTP/1.1 "
_END = b"\r\n\r\n"


def _is_final_head(data: bytes) -> bool:
    return data.startswith(_HEAD) and data.endswith(_END) and data[9:10] != b"1"


def install() -> bool:
    """Install the coalescing TCP server in Hypercorn's Trio worker; False if this
    Hypercorn is not shaped as expected (nothing changed then)."""
    try:
        import hypercorn.trio.run as hc_run
        from hypercorn.events import RawData
        from hypercorn.trio.tcp_server import TCPServer
    except ImportError:
        return False
    current = getattr(hc_run, "TCPServer", None)
    if getattr(current, "_hzp2p_coalescing", False):
        return True
    if current is not TCPServer or not hasattr(TCPServer, "protocol_send"):
        return False

    class CoalescingTCPServer(TCPServer):
        _hzp2p_coalescing = True
        _held = b""

        async def protocol_send(self, event: Any) -> None:
            if isinstance(event, RawData):
                data = event.data
                if not self._held and _is_final_head(data):
                    self._held = data  # h11 always sends more after a final head
                    return
                if self._held:
                    data, self._held = self._held + data, b""
                if not data:
                    return
                event = RawData(data=data)
            await super().protocol_send(event)

    setattr(hc_run, "TCPServer", CoalescingTCPServer)  # noqa: B010 - not an exported name
    return True
