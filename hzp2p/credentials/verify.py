"""Offline verification of health-code credentials against a trust list: the scanner's module.

    tl = TrustList.load("trust-list.json")          # GET /v1/trust-list, saved
    result = verify(qr_text, tl, now_s=time.time(), max_age_s=86_400)
    result.ok, result.colour, result.issuer_name, result.problems

A credential is valid when it parses, its kid names a credential key in the trust
list that is not revoked and belongs to the active member it names as issuer, the
Ed25519 signature checks, the chain id is the trust list's, and now is within
[issued_at - skew, valid_until]. A trust list older than `max_age_s` (by the time
the gateway generated it) is refused outright (TrustListTooOld): a stale list is
how revoked keys keep verifying. One verification is one Ed25519 check plus
parsing; key look-ups are a dict (DCC verifiers were slow at both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_sign_open

from hzp2p.credentials.cose import CredentialError, parse

CLOCK_SKEW_S = 60
DEFAULT_MAX_AGE_S = 86_400


class TrustListError(Exception):
    """The trust list file is missing or malformed."""


class TrustListTooOld(TrustListError):
    """The trust list is older than the configured limit."""


@dataclass(frozen=True, slots=True)
class IssuerKey:
    kid: bytes
    inst_id: int
    verify_key: nacl.signing.VerifyKey
    revoked: bool

    @property
    def public_key(self) -> bytes:
        return bytes(self.verify_key)


@dataclass(frozen=True, slots=True)
class TrustList:
    chain_id: str
    height: int
    generated_ms: int
    keys: dict[bytes, IssuerKey]
    members: dict[int, dict[str, Any]]

    def age_s(self, now_s: float) -> float:
        return now_s - self.generated_ms / 1000

    @classmethod
    def from_json(cls, doc: Any) -> TrustList:
        try:
            members = {int(m["inst_id"]): m for m in doc["members"]}
            keys = {}
            for k in doc["credential_keys"]:
                kid = bytes.fromhex(k["kid"])
                keys[kid] = IssuerKey(
                    kid,
                    int(k["inst_id"]),
                    nacl.signing.VerifyKey(bytes.fromhex(k["public_key"])),
                    k.get("revoked_ms") is not None,
                )
            return cls(str(doc["chain_id"]), int(doc["height"]), int(doc["generated_ms"]), keys, members)
        except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError) as exc:
            raise TrustListError(f"malformed trust list ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> TrustList:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrustListError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrustListError(f"{path}: not a JSON trust list ({exc})") from None
        return cls.from_json(doc)


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    colour: str | None = None
    subject: str | None = None
    issuer_id: int | None = None
    issuer_name: str | None = None
    issued_at_s: int | None = None
    valid_until_s: int | None = None
    since_ms: int | None = None
    height: int | None = None
    trust_list_age_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "colour": self.colour,
            "subject": self.subject,
            "issuer_id": self.issuer_id,
            "issuer_name": self.issuer_name,
            "issued_at_s": self.issued_at_s,
            "valid_until_s": self.valid_until_s,
            "since_ms": self.since_ms,
            "height": self.height,
            "trust_list_age_s": round(self.trust_list_age_s, 1),
            "problems": list(self.problems),
        }


def verify(
    text: str, trust: TrustList, *, now_s: float, max_age_s: float = DEFAULT_MAX_AGE_S
) -> Result:
    """Check one credential (raises TrustListTooOld; every other problem is in the Result)."""
    age = trust.age_s(now_s)
    if age > max_age_s:
        raise TrustListTooOld(
            f"trust list is {age / 3600:.1f} h old (limit {max_age_s / 3600:.1f} h): fetch a new one"
        )
    try:
        p = parse(text)
    except CredentialError as exc:
        return Result(False, trust_list_age_s=age, problems=[str(exc)])
    c = p.claims
    member = trust.members.get(c.issuer)
    problems: list[str] = []
    key = trust.keys.get(p.kid)
    if key is None:
        problems.append(f"signing key {p.kid.hex()} is not in the trust list")
    else:
        try:  # VerifyKey.verify, without its argument checks and copies (parse checked them)
            crypto_sign_open(p.signature + p.signed, key.public_key)
        except nacl.exceptions.BadSignatureError:
            problems.append("signature does not verify (tampered or forged)")
        if key.revoked:
            problems.append(f"signing key {p.kid.hex()} was revoked")
        if key.inst_id != c.issuer:
            problems.append(f"signing key belongs to institution {key.inst_id}, not {c.issuer}")
    if member is None or not member.get("active", False):
        problems.append(f"issuer {c.issuer} is not an active member")
    if c.chain_id != trust.chain_id:
        problems.append(f"credential is for chain {c.chain_id!r}, trust list for {trust.chain_id!r}")
    if now_s > c.valid_until_s:
        problems.append(f"expired {now_s - c.valid_until_s:.0f} s ago")
    if now_s < c.issued_at_s - CLOCK_SKEW_S:
        problems.append("issued in the future (check this device's clock)")
    return Result(
        not problems, c.colour, c.subject, c.issuer,
        None if member is None else str(member.get("name")),
        c.issued_at_s, c.valid_until_s, c.since_ms, c.height, age, problems,
    )
