"""Health-code credential issuer keys: the governed registry venues' verifiers trust.

A gateway signs short-lived health-code credentials (hzp2p.credentials) with an
Ed25519 *credential key* of its institution — never the institution's consensus
signing key. Which credential keys count is decided on chain: only an authority
may register a key for an institution (`credkey.register`) or revoke one
(`credkey.revoke`), so adding an issuer is a governed act, recorded in the
chain, and the trust list (GET /v1/trust-list) carries every key with its state.

State layout:
  cred/k/<kid hex>          a credential key: inst_id, public_key, registered/revoked
The key id (kid) is the first 8 bytes of SHA-256 of the public key, as COSE
credentials name their signer (hzp2p.credentials.cose.key_id).
"""

from __future__ import annotations

import hashlib
from typing import Any

from hzp2p.contracts.api import TxContext, decode_value, encode_value
from hzp2p.contracts.domain_queries import fail, institution
from hzp2p.contracts.registry import contract
from hzp2p.contracts.schema import Int, Key32, Match, Schema, Text, key32
from hzp2p.contracts.state import Readable

K_CRED = b"cred/k/"
KID_BYTES = 8
REGISTER_SCHEMA = Schema({"inst_id": Int(1, 2**63 - 1), "public_key": Key32()})
REVOKE_SCHEMA = Schema({"kid": Match(r"[0-9a-f]{16}", "16 lowercase hex digits"), "reason": Text(256)})


def key_id(public_key: bytes) -> bytes:
    """The 8-byte id a credential names its signing key by."""
    return hashlib.sha256(public_key).digest()[:KID_BYTES]


def k_cred(kid: bytes) -> bytes:
    return K_CRED + kid.hex().encode()


@contract("credkey.register", schema=REGISTER_SCHEMA)
def register(ctx: TxContext) -> None:
    """An authority registers credential key `public_key` (32 bytes or 64 hex digits) for
    institution `inst_id`."""
    me = ctx.require_member("authority")
    inst_id, pk = ctx.payload["inst_id"], key32(ctx.payload["public_key"])
    inst = institution(ctx.state, inst_id)
    if inst is None or not inst.active:
        fail(ctx, f"institution {inst_id} is not an active member")
    if pk in (inst.signing_key, inst.node_key):
        fail(ctx, "a credential key must not be the institution's signing or node key")
    kid = key_id(pk)
    if ctx.state.get(k_cred(kid)) is not None:
        fail(ctx, f"credential key {kid.hex()} is already registered")
    ctx.state.put(
        k_cred(kid),
        encode_value(
            {
                "height": ctx.height,
                "inst_id": inst_id,
                "kid": kid,
                "public_key": pk,
                "registered_by": me.inst_id,
                "registered_ms": ctx.timestamp_ms,
                "revoked_ms": None,
                "revoked_reason": None,
            }
        ),
    )


@contract("credkey.revoke", schema=REVOKE_SCHEMA)
def revoke(ctx: TxContext) -> None:
    """An authority revokes credential key `kid` (16 hex digits); credentials it signed stop
    verifying once verifiers fetch a newer trust list."""
    ctx.require_member("authority")
    kid = bytes.fromhex(ctx.payload["kid"])
    raw = ctx.state.get(k_cred(kid))
    if raw is None:
        fail(ctx, f"unknown credential key {kid.hex()}")
    rec = dict(decode_value(raw))
    if rec["revoked_ms"] is not None:
        fail(ctx, f"credential key {kid.hex()} already revoked")
    rec["revoked_ms"] = ctx.timestamp_ms
    rec["revoked_reason"] = ctx.payload["reason"]
    ctx.state.put(k_cred(kid), encode_value(rec))


def credential_keys(state: Readable) -> list[dict[str, Any]]:
    """Every registered credential key (revoked ones included, with revoked_ms), by kid."""
    return [dict(decode_value(v)) for _, v in state.scan(K_CRED)]


def credential_key(state: Readable, kid: bytes) -> dict[str, Any] | None:
    raw = state.get(k_cred(kid))
    return None if raw is None else dict(decode_value(raw))
