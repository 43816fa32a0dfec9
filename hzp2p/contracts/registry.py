"""Registry of contract handlers: transaction type -> handler, plus per-type flags.

Domain contract modules register with the `contract` decorator at import time;
the engine (hzp2p.contracts.engine) looks handlers up here. A type flagged
`citizen=True` is signed by a citizen's key rather than an institution's, so
the engine does not require the signer to be a member (the handler decides).
A type may also register a payload generator (`payload_generator`) so the
ledger benchmark can exercise it without knowing its rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hzp2p.contracts.api import Handler

HANDLERS: dict[str, Handler] = {}
CITIZEN_SIGNED: set[str] = set()

# Benchmark hook: tx type -> function(i) returning the i-th payload (a dict) for that type,
# valid for a sender holding the roles in PAYLOAD_ROLES[tx type]. Optional.
PayloadGenerator = Callable[[int], Mapping[str, Any]]
PAYLOAD_GENERATORS: dict[str, PayloadGenerator] = {}
PAYLOAD_ROLES: dict[str, tuple[str, ...]] = {}


def contract(tx_type: str, *, citizen: bool = False) -> Callable[[Handler], Handler]:
    """Decorator registering `fn` as the handler of `tx_type` (each type registered once)."""

    def register(fn: Handler) -> Handler:
        old = HANDLERS.get(tx_type)
        # A module re-imported after a failed first import registers the same function again.
        assert old is None or _same(old, fn), f"duplicate contract for {tx_type!r}"
        assert tx_type and len(tx_type) <= 64, f"bad tx type {tx_type!r}"
        HANDLERS[tx_type] = fn
        if citizen:
            CITIZEN_SIGNED.add(tx_type)
        return fn

    return register


def citizen_signed(tx_type: str) -> bool:
    """True if `tx_type` is signed by a citizen key (e.g. consent.grant / consent.revoke)."""
    return tx_type in CITIZEN_SIGNED


def payload_generator(
    tx_type: str, *roles: str
) -> Callable[[PayloadGenerator], PayloadGenerator]:
    """Decorator: register a benchmark payload generator for `tx_type` (sender needs `roles`).

    The i-th payload must be valid on a fresh chain after payloads 0..i-1 were applied
    by the same sender (e.g. unique ids per i). Setup state a type needs (a lot to
    transfer, ...) is the generator's business: it is only used by benchmarks.
    """

    def register(fn: PayloadGenerator) -> PayloadGenerator:
        old = PAYLOAD_GENERATORS.get(tx_type)
        assert old is None or _same(old, fn), f"duplicate payload generator for {tx_type!r}"
        PAYLOAD_GENERATORS[tx_type] = fn
        PAYLOAD_ROLES[tx_type] = tuple(roles)
        return fn

    return register


def _same(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
