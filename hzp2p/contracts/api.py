"""The interface between the contract engine and the domain contracts.

The engine (hzp2p.contracts.engine) executes a block's transactions in order.
For each one it verifies the envelope (signature, chain id, validity window,
replay), resolves the sender, and calls the handler registered for its type
with a TxContext. A handler reads and writes state only through `ctx.state`
and rejects by raising TxRejected(reason); the engine then discards that
transaction's writes, so a rejected transaction never changes state.

Determinism rules for handlers: integer units only (temperatures in hundredths
of a degree, times in block-timestamp milliseconds), no wall clock, no
randomness, no iteration over unordered sets, state values encoded with
`hzp2p.contracts.api.encode_value` (canonical msgpack).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from hzp2p.contracts.schema import Problem
from hzp2p.ledger.codec import pack
from hzp2p.ledger.genesis import ROLES as ROLES  # member roles: chain data, re-exported
from hzp2p.ledger.genesis import valid_address as valid_address


class TxRejected(Exception):
    """A transaction fails a rule; `reason` is stored with the block as its verdict.

    `problems`: each problem of the payload's shape (field, reason) when the stateless
    check refused it (hzp2p.contracts.schema); empty for a rule of the stateful part.
    """

    def __init__(
        self, reason: str, problems: tuple[Problem, ...] = (), *, duplicate: bool = False
    ) -> None:
        self.reason = reason
        self.problems = problems
        self.duplicate = duplicate
        """Already included: a retry to answer with the original receipt, not a refusal."""
        super().__init__(reason)


class StateView(Protocol):
    """Read/write view of contract state for one transaction (an overlay on the block's view)."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs under `prefix` in ascending key order, overlay included."""
        ...


@dataclass(frozen=True, slots=True)
class Institution:
    """A consortium member as recorded in contract state."""

    inst_id: int  # equals its Raft node id when it runs a node; never reused
    name: str
    roles: frozenset[str]
    signing_key: bytes  # Ed25519 verify key that signs its transactions
    node_key: bytes  # Ed25519 verify key of its daemon's transport identity
    address: str  # host:port of its daemon
    voter: bool
    active: bool = True

    def has_role(self, role: str) -> bool:
        return self.active and role in self.roles


@dataclass(frozen=True, slots=True)
class TxContext:
    """Everything a handler may look at while deciding one transaction."""

    tx_type: str
    tx_hash: bytes
    payload: Mapping[str, Any]
    signer: bytes  # the Ed25519 key that signed the transaction
    sender: Institution | None  # the member owning `signer`; None for a citizen's key
    height: int
    timestamp_ms: int  # the block's timestamp: the only clock contracts see
    rules: Mapping[str, int]  # rule versions from genesis (and later governance)
    state: StateView

    def require_member(self, *roles: str) -> Institution:
        """The sender, which must be an active member holding one of `roles` (any role if none)."""
        inst = self.sender
        if inst is None or not inst.active:
            raise TxRejected(f"{self.tx_type}: sender is not an active member")
        if roles and not any(r in inst.roles for r in roles):
            raise TxRejected(f"{self.tx_type}: sender {inst.name!r} lacks role {'/'.join(roles)}")
        return inst


Handler = Callable[[TxContext], None]


def encode_value(obj: Any) -> bytes:
    """Canonical msgpack for state values (no floats; map keys sorted by the caller's dict order)."""
    return pack(obj)  # msgpack.packb(obj, use_bin_type=True), with a Packer per thread


def decode_value(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
