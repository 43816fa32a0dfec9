"""The simulator's pluggable state machine (the "applier") and its default KV model.

Owns what "applied" means (and, with `Workload`, what clients propose). Raft may commit a retried proposal twice; a real
service dedupes with a client session table, so the default `KVStateMachine`
keeps, per client, the log index at which each request id was first applied
and reports later copies as duplicates. A later issue plugs the ledger in here
(`hzp2p sim SCENARIO.toml`): anything implementing `StateMachine` works.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hzp2p.raft.types import Entry, EntryKind

RequestId = tuple[int, int]
"""(client id, sequence number): one logical client request, across retries."""

_HEADER = struct.Struct(">IIHH")  # client id, seq, attempt, key
_MAGIC = b"kv1:"


def encode_request(client_id: int, seq: int, attempt: int, key: int, value: bytes) -> bytes:
    """Unique bytes per attempt; the request id (client, seq) is shared by retries."""
    return _MAGIC + _HEADER.pack(client_id, seq, attempt, key) + value


def decode_request(data: bytes) -> tuple[int, int, int, int, bytes] | None:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _HEADER.size:
        return None
    client_id, seq, attempt, key = _HEADER.unpack_from(data, len(_MAGIC))
    return client_id, seq, attempt, key, data[len(_MAGIC) + _HEADER.size :]


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What applying one NORMAL entry did."""

    request_id: RequestId
    index: int
    """The log index at which this request was first applied (== the entry's own
    index unless `duplicate`)."""
    duplicate: bool


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> ApplyOutcome | None:
        """Apply one committed NORMAL entry; None if it carries no client request."""

    def snapshot(self) -> bytes:
        """The whole state, for a Raft snapshot."""

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""

    def digest(self) -> str:
        """A short hash of the state (equal states, equal digests)."""


StateMachineFactory = Callable[[], StateMachine]


class Workload(Protocol):
    """What clients propose: unique bytes per attempt that the state machine maps back
    to the request id (client_id, seq) shared by every retry of one request."""

    def request(self, client_id: int, seq: int, attempt: int, rng: random.Random) -> bytes: ...


KV_KEYS = 16


class KVWorkload:
    """The default workload: a random key in a small key space gets a random value."""

    def request(self, client_id: int, seq: int, attempt: int, rng: random.Random) -> bytes:
        return encode_request(client_id, seq, attempt, rng.randrange(KV_KEYS), rng.randbytes(8))


class KVStateMachine:
    """key -> value, with a session table: request id -> index first applied."""

    def __init__(self) -> None:
        self.kv: dict[int, bytes] = {}
        self.sessions: dict[int, dict[int, int]] = {}  # client -> seq -> index first applied
        self.applied_requests = 0

    def apply(self, entry: Entry) -> ApplyOutcome | None:
        if entry.kind != EntryKind.NORMAL:
            return None
        req = decode_request(entry.data)
        if req is None:
            return None
        client_id, seq, _attempt, key, value = req
        session = self.sessions.setdefault(client_id, {})
        first = session.get(seq)
        if first is not None:
            return ApplyOutcome((client_id, seq), first, duplicate=True)
        session[seq] = entry.index
        self.kv[key] = value
        self.applied_requests += 1
        return ApplyOutcome((client_id, seq), entry.index, duplicate=False)

    def snapshot(self) -> bytes:
        doc = {
            "kv": {str(k): v.hex() for k, v in sorted(self.kv.items())},
            "sessions": {
                str(c): {str(s): i for s, i in sorted(t.items())}
                for c, t in sorted(self.sessions.items())
            },
        }
        return json.dumps(doc, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        doc = json.loads(data.decode()) if data else {"kv": {}, "sessions": {}}
        self.kv = {int(k): bytes.fromhex(v) for k, v in doc["kv"].items()}
        self.sessions = {
            int(c): {int(s): int(i) for s, i in t.items()} for c, t in doc["sessions"].items()
        }
        self.applied_requests = sum(len(t) for t in self.sessions.values())

    def digest(self) -> str:
        return hashlib.blake2b(self.snapshot(), digest_size=8).hexdigest()
