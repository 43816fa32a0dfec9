"""Counters every transport keeps, returned by `statistics()` as an immutable snapshot.

One dataclass for TCP and the simulated network, so metrics and tests read the
same names whichever transport is underneath.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(slots=True)
class TransportStatistics:
    frames_sent: int = 0
    frames_received: int = 0
    frames_refused: int = 0
    """Frames (or handshakes) refused as malformed, tampered, replayed, oversized, unknown."""
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    messages_dropped: int = 0
    """Dropped by the send-queue policy (queue full), unknown peer, or simulated fault."""
    handshakes_ok: int = 0
    handshakes_refused: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    connections_current: int = 0
    duplicate_connections_closed: int = 0
    reconnects: int = 0
    dial_failures: int = 0
    read_timeouts: int = 0
    stale_replacements: int = 0
    """Replacement dials started because a connected peer went silent (TcpTransport)."""
    backoff_resets: int = 0
    """Dial loops woken from their back-off because another peer link came up (TcpTransport)."""
    peer_records_accepted: int = 0
    peer_records_rejected: int = 0

    def snapshot(self) -> TransportStatistics:
        return dataclasses.replace(self)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
