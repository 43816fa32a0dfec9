"""Registry of contracts: transaction type -> handler, stateless check and flags.

Domain contract modules register with the `contract` decorator at import time;
the engine (hzp2p.contracts.engine) looks contracts up here. Every contract
declares its stateless payload check (a `Schema`, or a function of payload and
signer: hzp2p.contracts.schema), which admission and execution both run. A type
flagged `citizen=True` is signed by a citizen's key rather than an institution's,
so the engine does not require the signer to be a member (the handler decides).
A type may also register a payload generator (`payload_generator`) so the
ledger benchmark can exercise it without knowing its rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hzp2p.contracts.api import Handler
from hzp2p.contracts.schema import Problem, Schema

PayloadCheck = Callable[[Any, bytes], list[Problem]]
"""(payload, signer) -> every problem of the payload's shape; no state, no clock."""


@dataclass(frozen=True, slots=True)
class Contract:
    tx_type: str
    handler: Handler
    check: PayloadCheck
    citizen: bool


CONTRACTS: dict[str, Contract] = {}
RULE_VERSIONS: dict[str, frozenset[int]] = {}
"""Rule name -> the versions the loaded contracts implement (a genesis may name only these)."""
HANDLERS: dict[str, Handler] = {}
CITIZEN_SIGNED: set[str] = set()

# Benchmark hook: tx type -> function(i) returning the i-th payload (a dict) for that type,
# valid for a sender holding the roles in PAYLOAD_ROLES[tx type]. Optional.
PayloadGenerator = Callable[[int], Mapping[str, Any]]
PAYLOAD_GENERATORS: dict[str, PayloadGenerator] = {}
PAYLOAD_ROLES: dict[str, tuple[str, ...]] = {}


def contract(
    tx_type: str, *, schema: Schema | PayloadCheck, citizen: bool = False
) -> Callable[[Handler], Handler]:
    """Decorator registering `fn` as the handler of `tx_type` (each type registered once),
    with its stateless check `schema`."""
    check: PayloadCheck = schema.problems if isinstance(schema, Schema) else schema

    def register(fn: Handler) -> Handler:
        old = HANDLERS.get(tx_type)
        # A module re-imported after a failed first import registers the same function again.
        assert old is None or _same(old, fn), f"duplicate contract for {tx_type!r}"
        assert tx_type and len(tx_type) <= 64, f"bad tx type {tx_type!r}"
        HANDLERS[tx_type] = fn
        CONTRACTS[tx_type] = Contract(tx_type, fn, check, citizen)
        if citizen:
            CITIZEN_SIGNED.add(tx_type)
        return fn

    return register


def rules(name: str, table: Mapping[int, Any]) -> None:
    """Declare that the loaded contracts implement versions `table` of rule `name`."""
    assert name and table, name
    RULE_VERSIONS[name] = RULE_VERSIONS.get(name, frozenset()) | frozenset(table)


def unsupported_rules(named: Mapping[str, int]) -> list[str]:
    """What of a genesis's rules (name -> version) the loaded contracts do not implement."""
    out = []
    for name, version in sorted(named.items()):
        known = RULE_VERSIONS.get(name)
        if known is None:
            out.append(f"rule {name!r} (no loaded contract implements it)")
        elif version not in known:
            out.append(f"rule {name!r} version {version} (this build has {sorted(known)})")
    return out


def citizen_signed(tx_type: str) -> bool:
    """True if `tx_type` is signed by a citizen key (e.g. consent.grant / consent.revoke)."""
    return tx_type in CITIZEN_SIGNED


def check_payload(tx_type: str, payload: Any, signer: bytes) -> list[Problem]:
    """The stateless check of a registered type's payload: every problem, or []."""
    c = CONTRACTS.get(tx_type)
    if c is None:
        return [Problem("type", f"unknown transaction type {tx_type!r}")]
    return c.check(payload, signer)


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
