"""Narrow storage interfaces, one per concern (hashicorp/raft style).

Each has an SQLite and an in-memory implementation passing one contract suite.
This module starts with the read side of contract state, which the contracts
and storage share; the storage package adds the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class StateReader(Protocol):
    """Synchronous, read-only view of contract state (keys and values are bytes).

    The contracts execute a block against a StateReader and return the writes
    ({key: value, or None to delete}); storage commits the block, its verdicts,
    those writes and the new applied index in one transaction. The SQLite
    implementation runs the contracts on its own thread so these reads are sync.
    """

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with `prefix`, in ascending key order."""
        ...
