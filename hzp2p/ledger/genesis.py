"""The genesis: chain id, founding institutions, initial voters/learners and rule versions.

Its hash (blake2b-256 of the canonical msgpack encoding) identifies the chain
and is block 1's ``prev_hash``. Loaded from TOML with errors naming the field
(`GenesisError`), written back with a small hand-written TOML emitter. The
contract state it seeds is `hzp2p.contracts.engine.genesis_state_writes`.
`make_local_genesis` builds a local test consortium with fresh keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nacl.signing

from hzp2p.ledger.codec import FieldError, pack

# The roles an institution can hold and the daemon address form: chain data, checked by the
# genesis here and by member.propose in hzp2p.contracts.members (re-exported by contracts.api).
ROLES = frozenset(
    {"authority", "lab", "hospital", "vaccination_site", "manufacturer", "carrier", "observer"}
)
_ADDRESS = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,253}:([0-9]{1,5})")


def valid_address(value: object) -> bool:
    """A daemon address `host:port` (port 1..65535), as genesis and member.propose accept it.

    The whole string must match (`re.fullmatch`: a `$` anchor would let a trailing
    newline through).
    """
    m = _ADDRESS.fullmatch(value) if type(value) is str else None
    return m is not None and 1 <= int(m.group(1)) <= 65535


GENESIS_VERSION = 1
DEFAULT_RULES: Mapping[str, int] = {
    "membership": 1,
    "healthcode": 2,
    "vaccination": 1,
    "coldchain": 3,
    "privacy": 1,
    "data": 2,
}
OTHER_ROLES = ("lab", "hospital", "vaccination_site", "manufacturer", "carrier", "observer")
# Matched with re.fullmatch: a `$` anchor would accept a trailing newline.
_CHAIN_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_RULE = re.compile(r"[A-Za-z0-9_\-]{1,64}")


class GenesisError(FieldError):
    """The genesis is invalid; `field` names what (e.g. institutions[1].inst_id)."""

    PREFIX = "genesis "


@dataclass(frozen=True, slots=True)
class FoundingInstitution:
    inst_id: int  # = its Raft node id
    name: str
    roles: tuple[str, ...]  # sorted
    signing_key: bytes
    node_key: bytes
    address: str
    voter: bool


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    timestamp_ms: int
    institutions: tuple[FoundingInstitution, ...]
    rules: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def voters(self) -> list[int]:
        return [i.inst_id for i in self.institutions if i.voter]

    @property
    def learners(self) -> list[int]:
        return [i.inst_id for i in self.institutions if not i.voter]

    def institution(self, inst_id: int) -> FoundingInstitution:
        for i in self.institutions:
            if i.inst_id == inst_id:
                return i
        raise KeyError(inst_id)

    def encode(self) -> bytes:
        return pack(
            [
                GENESIS_VERSION,
                self.chain_id,
                self.timestamp_ms,
                [
                    [i.inst_id, i.name, list(i.roles), i.signing_key, i.node_key, i.address, i.voter]
                    for i in self.institutions
                ],
                [[k, self.rules[k]] for k in sorted(self.rules)],
            ]
        )

    @property
    def hash(self) -> bytes:
        return hashlib.blake2b(b"hzp2p/genesis/v1" + self.encode(), digest_size=32).digest()

    def to_toml(self) -> str:
        out = [
            "# hzp2p consortium genesis: every node must hold the identical file.",
            f"chain_id = {_toml_str(self.chain_id)}",
            f"timestamp_ms = {self.timestamp_ms}",
            "",
            "[rules]",
        ]
        out += [f"{k} = {self.rules[k]}" for k in sorted(self.rules)]
        for i in self.institutions:
            out += [
                "",
                "[[institutions]]",
                f"inst_id = {i.inst_id}",
                f"name = {_toml_str(i.name)}",
                "roles = [" + ", ".join(_toml_str(r) for r in i.roles) + "]",
                f'signing_key = "{i.signing_key.hex()}"',
                f'node_key = "{i.node_key.hex()}"',
                f"address = {_toml_str(i.address)}",
                f"voter = {'true' if i.voter else 'false'}",
            ]
        return "\n".join(out) + "\n"


def _toml_str(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also forbids raw DEL.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _validate(g: Genesis) -> None:
    if type(g.chain_id) is not str or not _CHAIN_ID.fullmatch(g.chain_id):
        raise GenesisError("chain_id", "must be 1..64 of [A-Za-z0-9._-]")
    if type(g.timestamp_ms) is not int or not 0 <= g.timestamp_ms < 2**63:
        raise GenesisError("timestamp_ms", "must be a non-negative int64")
    if not g.institutions:
        raise GenesisError("institutions", "at least one founding institution is required")
    seen: dict[str, set[Any]] = {"inst_id": set(), "signing_key": set(), "node_key": set()}
    for n, i in enumerate(g.institutions):
        where = f"institutions[{n}]"
        if type(i.inst_id) is not int or not 1 <= i.inst_id < 2**63:
            raise GenesisError(f"{where}.inst_id", "must be a positive integer")
        if type(i.name) is not str or not 0 < len(i.name) <= 128:
            raise GenesisError(f"{where}.name", "must be 1..128 characters")
        if not i.roles or any(r not in ROLES for r in i.roles) or list(i.roles) != sorted(set(i.roles)):
            raise GenesisError(f"{where}.roles", f"must be distinct sorted roles from {sorted(ROLES)}")
        for k in ("signing_key", "node_key"):
            v = getattr(i, k)
            if type(v) is not bytes or len(v) != 32:
                raise GenesisError(f"{where}.{k}", "must be a 32-byte Ed25519 public key")
        if not valid_address(i.address):
            raise GenesisError(f"{where}.address", "must be host:port")
        if type(i.voter) is not bool:
            raise GenesisError(f"{where}.voter", "must be a boolean")
        for k, s in seen.items():
            v = getattr(i, k)
            if v in s:
                raise GenesisError(f"{where}.{k}", "duplicates another institution's")
            s.add(v)
    if not any("authority" in i.roles for i in g.institutions):
        raise GenesisError("institutions", "at least one authority is required")
    if not any(i.voter for i in g.institutions):
        raise GenesisError("institutions", "at least one voter is required")
    for k, v in g.rules.items():
        if type(k) is not str or not _RULE.fullmatch(k):
            raise GenesisError(f"rules.{k}", "rule names are 1..64 of [A-Za-z0-9_-]")
        if type(v) is not int or not 1 <= v < 2**31:
            raise GenesisError(f"rules.{k}", "a rule version is a positive integer")


def _get(d: Mapping[str, Any], key: str, typ: type, where: str) -> Any:
    if key not in d:
        raise GenesisError(f"{where}{key}", "missing")
    v = d[key]
    if type(v) is not typ:
        raise GenesisError(f"{where}{key}", f"must be {typ.__name__}")
    return v


def _hexkey(d: Mapping[str, Any], key: str, where: str) -> bytes:
    v = _get(d, key, str, where)
    try:
        b = bytes.fromhex(v)
    except ValueError:
        raise GenesisError(f"{where}{key}", "is not hex") from None
    if len(b) != 32:
        raise GenesisError(f"{where}{key}", "must be 64 hex characters")
    return b


def genesis_from_toml(text: str) -> Genesis:
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GenesisError("file", f"not valid TOML: {e}") from None
    extra = sorted(set(d) - {"chain_id", "timestamp_ms", "rules", "institutions"})
    if extra:
        raise GenesisError(extra[0], "unknown field")
    rules = d.get("rules", dict(DEFAULT_RULES))
    if type(rules) is not dict:
        raise GenesisError("rules", "must be a table")
    insts = _get(d, "institutions", list, "")
    founding = []
    for n, raw in enumerate(insts):
        where = f"institutions[{n}]."
        if type(raw) is not dict:
            raise GenesisError(where[:-1], "must be a table")
        known = {"inst_id", "name", "roles", "signing_key", "node_key", "address", "voter"}
        extra = sorted(set(raw) - known)
        if extra:
            raise GenesisError(where + extra[0], "unknown field")
        roles = _get(raw, "roles", list, where)
        if any(type(r) is not str for r in roles):
            raise GenesisError(where + "roles", "must be strings")
        founding.append(
            FoundingInstitution(
                inst_id=_get(raw, "inst_id", int, where),
                name=_get(raw, "name", str, where),
                roles=tuple(sorted(roles)),
                signing_key=_hexkey(raw, "signing_key", where),
                node_key=_hexkey(raw, "node_key", where),
                address=_get(raw, "address", str, where),
                voter=_get(raw, "voter", bool, where),
            )
        )
    return Genesis(
        chain_id=_get(d, "chain_id", str, ""),
        timestamp_ms=_get(d, "timestamp_ms", int, ""),
        institutions=tuple(founding),
        rules=dict(rules),
    )


def load_genesis(path: str | os.PathLike[str]) -> Genesis:
    with open(path, encoding="utf-8") as f:
        return genesis_from_toml(f.read())


@dataclass(frozen=True, slots=True)
class NodeSecrets:
    """A node's private seeds (32 bytes each): its institution's signing key and its node key."""

    signing_seed: bytes
    node_seed: bytes

    def signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.signing_seed)

    def node_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.node_seed)


def local_roles(node_id: int) -> tuple[str, ...]:
    """Node 1 and 2 are authorities; the rest take the other roles in turn."""
    if node_id <= 2:
        return ("authority",)
    return (OTHER_ROLES[(node_id - 3) % len(OTHER_ROLES)],)


def make_local_genesis(
    n_voters: int,
    n_learners: int = 0,
    host: str = "127.0.0.1",
    base_port: int = 7100,
    seed: bytes | int | None = None,
    *,
    timestamp_ms: int = 0,
) -> tuple[Genesis, dict[int, NodeSecrets]]:
    """A local consortium: nodes 1..n_voters vote, the next n_learners are learners.

    Node k listens on host:(base_port + k - 1). With `seed` the keys (and chain id)
    are derived deterministically (tests); without, they are fresh random keys.
    """
    assert n_voters >= 1 and n_learners >= 0, "need at least one voter"
    assert base_port > 0 and base_port + n_voters + n_learners <= 65536, "ports out of range"
    if seed is None:
        master = os.urandom(32)
    else:
        sb = seed.to_bytes(16, "big", signed=True) if isinstance(seed, int) else bytes(seed)
        master = hashlib.blake2b(b"hzp2p/local-genesis" + sb, digest_size=32).digest()

    def derive(label: bytes) -> bytes:
        return hashlib.blake2b(master + label, digest_size=32).digest()

    insts, secrets = [], {}
    for k in range(1, n_voters + n_learners + 1):
        s = NodeSecrets(derive(b"sign%d" % k), derive(b"node%d" % k))
        roles = local_roles(k)
        insts.append(
            FoundingInstitution(
                inst_id=k,
                name=f"{roles[0].replace('_', '-')}-{k}",
                roles=roles,
                signing_key=bytes(s.signing_key().verify_key),
                node_key=bytes(s.node_key().verify_key),
                address=f"{host}:{base_port + k - 1}",
                voter=k <= n_voters,
            )
        )
        secrets[k] = s
    chain_id = "hzp2p-local-" + derive(b"chain").hex()[:8]
    return Genesis(chain_id, timestamp_ms, tuple(insts), dict(DEFAULT_RULES)), secrets
