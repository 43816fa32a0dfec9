"""Pydantic response and request models: the shapes /openapi.json documents.

Bytes travel as lowercase hex strings; times are milliseconds since the Unix epoch
(`*_ms`) or seconds where the credential format uses seconds (`*_s`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


class Health(BaseModel):
    ok: bool
    height: int


class Status(BaseModel):
    chain_id: str
    height: int
    head_hash: str
    last_block_ms: int | None = Field(description="timestamp of the last block (None at genesis)")
    leader_known: bool
    leader_id: int | None
    node_reachable: bool


class BlockTx(BaseModel):
    tx_hash: str
    type: str
    status: str = Field(description="committed | rejected")
    reason: str


class BlockView(BaseModel):
    height: int
    hash: str
    prev_hash: str
    merkle_root: str
    state_digest: str
    proposer: int
    timestamp_ms: int
    txs: list[BlockTx]


class Member(BaseModel):
    inst_id: int
    name: str
    roles: list[str]
    signing_key: str
    node_key: str
    voter: bool
    active: bool


class CredentialKey(BaseModel):
    kid: str
    inst_id: int
    public_key: str
    registered_ms: int
    revoked_ms: int | None


class TrustListView(BaseModel):
    chain_id: str
    height: int
    block_time_ms: int | None
    generated_ms: int = Field(description="when this gateway produced the list (verifiers limit its age)")
    members: list[Member]
    voters: list[int]
    credential_keys: list[CredentialKey]


class EpiBucket(BaseModel):
    region: str
    metric: str
    period: str
    total: int
    reports: int


class EpiSummary(BaseModel):
    metric: str | None
    region: str | None
    period_from: str | None
    period_to: str | None
    height: int
    buckets: list[EpiBucket]


class Dataset(BaseModel):
    dataset_id: str
    version: int
    metadata: dict[str, Any]
    content_hash: str
    publisher: int
    timestamp_ms: int
    height: int


class Notice(BaseModel):
    notice_id: str
    title: str
    body: str
    effective_date: str
    region: str
    publisher: int
    timestamp_ms: int
    height: int


class Exposure(BaseModel):
    """A venue and time window of concern, published by an authority: an app matches its own
    check-ins against these on the phone (nothing is sent for a miss)."""

    exposure_id: str
    venue_id: str
    from_ms: int
    to_ms: int
    level: str
    timestamp_ms: int = Field(description="when it was published (block time)")
    height: int


class CodeEvent(BaseModel):
    """One change or event of her health code, with why and the transaction that caused it."""

    seq: int | None = Field(description="the event's number, what an appeal names; null for a "
                                        "change due by the rules but not yet written")
    event: str
    colour: str
    changed: bool | None = None
    reason: str = ""
    timestamp_ms: int | None = None
    height: int | None = None
    tx_hash: str | None = None


class RecordSummary(BaseModel):
    record_id: str
    type: str
    writer: int | None = Field(description="the writing institution; null for her own check-ins")
    timestamp_ms: int
    height: int
    erased: bool


class RecordView(BaseModel):
    """An encrypted record with the caller's own sealed key: decrypt on the caller's device."""

    record_id: str
    subject: str
    type: str
    writer: int | None = Field(description="the writing institution; null for her own check-ins")
    timestamp_ms: int
    height: int
    ciphertext: str
    key_commitment: str
    holder: str
    sealed_key: str
    key_id: int


class AccessEntry(BaseModel):
    kind: str
    record_id: str | None = Field(description="null for an entry about her code (an appeal and its resolution)")
    record_type: str
    by: int | str | None
    grantee: int | None
    purpose: str | None
    reason: str | None = None
    grant_id: str | None = None
    timestamp_ms: int
    height: int
    tx_hash: str


class Grant(BaseModel):
    grant_id: str
    grantee: int
    record_types: list[str]
    purpose: str
    expiry_ms: int
    granted_ms: int
    revoked_ms: int | None
    height: int


class HealthCode(BaseModel):
    subject: str
    colour: str
    since_ms: int
    why: str = Field(description="reason of the last change ('' for the default green)")
    source: str = Field(description="what set the colour: default, lab, authority, exposure, rule, ...")
    height: int
    credential: str | None = Field(description="HZ1: signed credential for a QR code; None if this gateway has no registered credential key")
    credential_valid_until_s: int | None
    credential_problem: str | None = None


class TxPost(BaseModel):
    tx: str = Field(
        description="hex of the signed transaction's wire encoding",
        min_length=2, max_length=2 * 64 * 1024, pattern="^([0-9a-f]{2})+$",
    )
    wait_s: float = Field(default=5.0, ge=0, le=3600, description="seconds to wait for the commit")


class Receipt(BaseModel):
    tx_hash: str
    status: str = Field(description="committed | rejected | pending | unknown")
    height: int | None
    index: int | None
    type: str | None
    reason: str | None


class InstitutionView(BaseModel):
    inst_id: int
    name: str
    roles: list[str]


class LotView(BaseModel):
    """A product lot as the supply-chain contracts record it (no personal data)."""

    lot_id: str
    record: dict[str, Any]
    events: list[dict[str, Any]]
