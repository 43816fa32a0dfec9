"""GET /v1/tx/{hash}/proof: a committed transaction's offline receipt, and its QR-sized form.

The daemon builds the receipt (its `receipt` admin method, hzp2p.node.receipts, which
checks what it hands out); the gateway only chooses what to reveal and encodes it:

* `receipt`: base64 of the receipt bytes (hzp2p.ledger.receipt), what
  `hzp2p verify-receipt --genesis genesis.toml` checks with no network;
* `compact`: the hash-only receipt as "HZR1:" + base45
  (hzp2p.credentials.receipt_text), for a QR code; null when it would not fit one.

The route is signed, like GET /v1/tx/{hash}. By default the receipt carries only the
transaction's hash (it proves type, verdict, block and certificate, not the payload).
`include_tx=true` asks for the whole transaction (payload fields about people are
ciphertexts, but it names a pseudonym): answered only to the transaction's signer, an
active member institution, or the citizen whose pseudonym is the payload's `subject`;
anyone else gets 403.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Request
from pydantic import BaseModel, Field

from hzp2p.contracts import members
from hzp2p.credentials.receipt_text import fits_qr, to_compact
from hzp2p.crypto.records import pseudonym
from hzp2p.gateway.context import GatewayContext
from hzp2p.gateway.link import LinkError, LinkRefused
from hzp2p.gateway.problems import ApiProblem
from hzp2p.gateway.routes_signed import SIGNED_DOC, Key, _problems
from hzp2p.ledger.receipt import ReceiptError, decode_receipt, hash_only
from hzp2p.ledger.tx import Transaction, TxError, decode_tx

_HASH = r"^[0-9a-f]{64}$"
PROOF_TIMEOUT_S = 10.0


class TxProof(BaseModel):
    tx_hash: str
    type: str
    verdict: str = Field(description="accepted | rejected")
    reason: str | None
    height: int
    index: int
    certified_by: list[str] = Field(description="the institutions whose signatures certify the block")
    voters: int = Field(description="voters in force at that height")
    includes_tx: bool = Field(description="whether `receipt` carries the whole transaction")
    receipt: str = Field(description="base64 of the receipt; check it with `hzp2p verify-receipt "
                         "FILE --genesis genesis.toml` (the file may hold this text)")
    receipt_bytes: int
    compact: str | None = Field(description="the hash-only receipt as HZR1: + base45, for a QR "
                                "code; null if longer than a QR code holds")
    compact_chars: int


def register(app: FastAPI) -> None:
    router = APIRouter(responses=_problems({401: "Signature missing or invalid",
                                            403: "May not see this transaction's body"}))

    @router.get("/v1/tx/{tx_hash}/proof", response_model=TxProof, tags=["citizen"],
                openapi_extra=SIGNED_DOC)
    async def tx_proof(
        request: Request, key: Key, tx_hash: Annotated[str, Path(pattern=_HASH)],
        include_tx: Annotated[bool, Query(description="carry the whole transaction (its "
                                                      "signer, members, its subject)")] = False,
    ) -> TxProof:
        """An offline receipt for a committed transaction: a majority of the voters of its
        height certified its block and verdict; verifiable with the genesis file alone."""
        c: GatewayContext = request.app.state.ctx
        try:
            res = await c.link.call("receipt", {"tx_hash": tx_hash}, timeout_s=PROOF_TIMEOUT_S)
        except LinkRefused as exc:
            if exc.code == "not_found":
                raise ApiProblem(404, "not-found", exc.message) from None
            raise ApiProblem(503, f"daemon-{exc.code}", exc.message,
                             headers={"Retry-After": "1"}) from None
        except LinkError as exc:
            raise ApiProblem(503, "daemon-unreachable", str(exc),
                             headers={"Retry-After": "1"}) from None
        assert isinstance(res, dict) and isinstance(res.get("receipt"), bytes), "receipt answer"
        try:
            full = decode_receipt(res["receipt"])
            short = hash_only(full).encode()
            if include_tx:
                assert isinstance(full.tx, bytes), "the daemon sends the whole transaction"
                _may_see(c, key, decode_tx(full.tx))
        except (ReceiptError, TxError) as exc:  # the daemon checked it: cannot happen
            raise AssertionError(f"the daemon's receipt does not decode: {exc}") from None
        data = full.encode() if include_tx else short
        compact = to_compact(short)
        return TxProof(
            tx_hash=tx_hash, type=full.tx_type, verdict=str(res["verdict"]),
            reason=full.reason or None, height=int(res["height"]), index=int(res["index"]),
            certified_by=[str(n) for n in res["certified_by"]], voters=int(res["voters"]),
            includes_tx=include_tx, receipt=base64.b64encode(data).decode(),
            receipt_bytes=len(data), compact=compact if fits_qr(compact) else None,
            compact_chars=len(compact),
        )

    app.include_router(router)


def _may_see(c: GatewayContext, key: bytes, tx: Transaction) -> None:
    """The caller may receive the whole transaction (see the module docstring)."""
    if tx.signer == key or tx.payload.get("subject") == pseudonym(key):
        return
    with c.store.snapshot() as s:
        inst = members.institution_by_key(s, key)
    if inst is not None and inst.active:
        return
    raise c.auth.refuse_forbidden(
        "not-party", "only the transaction's signer, a member institution or its subject "
        "may receive its body; ask without include_tx")

