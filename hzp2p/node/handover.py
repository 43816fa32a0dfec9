"""Key hand-over by the writer's daemon: under a committed grant, and on an emergency.

When a block commits a `consent.grant` naming another institution, the daemon of every
institution that wrote a record the grant covers (the subject's records of the granted
types whose key it holds as writer) hands the record keys over itself — `access.share`
under that grant, the key resealed to the grantee on this node, the only place that can
open it. This runs beside the node (a bounded queue, one task); a share that is not
committed in time is retried a few times with back-off; one that still fails (refused by
the contracts, not committed, or impossible here: the record's key not in this node's
key store) is counted (`shared`, `failed`, `retries`: the hzp2p_handover_* metrics) and
kept in a bounded journal (`failures`) that `admin watch` shows as `handover_failed`
events, numbered with the next height to commit after the failure (they are this
node's, not the chain's: they are not replayed after a restart). It is on by default; `[ledger] auto_share = false` turns it
off. `share_now` and `fulfil_emergency` are the same hand-over asked for by an operator
(`admin share`, `admin emergency fulfil`).

The contracts decide: a share no valid grant covers is refused when the block executes,
so a daemon that shares too eagerly changes nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from hzp2p.client import Client
from hzp2p.contracts import domain_queries as dq
from hzp2p.crypto.records import RecordCryptoError, institution_holder, pseudonym
from hzp2p.ledger.block import Block
from hzp2p.ledger.tx import Transaction
from hzp2p.node.enckeys import EncKeyStore
from hzp2p.storage import AsyncStorage, SyncStorage

log = structlog.get_logger("hzp2p.node.handover")

QUEUE_LEN = 1024
RETRIES = 3
RETRY_BACKOFF_S = 1.0
WAIT_S = 10.0
JOURNAL_LEN = 1000


@dataclass(frozen=True, slots=True)
class Grant:
    subject: str
    grant_id: str
    grantee: int
    record_types: tuple[str, ...]
    purpose: str
    height: int = 0


class HandoverError(Exception):
    """This node cannot hand the key over (it holds none, the record was erased, ...)."""


Submit = Callable[[Transaction, float], Awaitable[dict[str, object]]]


class Handover:
    """See the module docstring."""

    def __init__(self, node_id: int, client: Client, storage: AsyncStorage, submit: Submit,
                 *, enabled: bool = True, keys: EncKeyStore | None = None,
                 head: Callable[[], int] = lambda: 0) -> None:
        self.node_id = node_id
        self.client = client
        self.keys = keys  # the institution's encryption keys (None: the derived key only)
        self.storage = storage
        self.submit = submit
        self.enabled = enabled
        self.shared = 0
        self.failed = 0
        self.retries = 0
        self.dropped = 0
        self.head = head  # the committed height now (to number the failures' events)
        self.failures: deque[dict[str, Any]] = deque(maxlen=JOURNAL_LEN)
        self._send, self._recv = trio.open_memory_channel[Grant](QUEUE_LEN)

    # ---------------------------------------------------------------- inputs (sync)
    def block_applied(self, block: Block, applied: list[bool]) -> None:
        """Queue the grants this block committed that may name this institution's records."""
        if not self.enabled:
            return
        for tx, ok in zip(block.txs, applied, strict=False):
            if not ok or tx.tx_type != "consent.grant":
                continue
            p = tx.payload
            if p.get("grantee") == self.node_id:
                continue  # a grant to us: the writers share with us
            grant = Grant(pseudonym(tx.signer), str(p["grant_id"]), int(p["grantee"]),
                          tuple(p["record_types"]), str(p["purpose"]), block.header.height)
            try:
                self._send.send_nowait(grant)
            except trio.WouldBlock:
                self.dropped += 1  # bounded: the operator can still `admin share`

    # ---------------------------------------------------------------- the task
    async def run(self) -> None:
        async for grant in self._recv:
            for record_id in await self._covered(grant):
                await self._share_with_retries(grant, record_id)

    async def _covered(self, g: Grant) -> list[str]:
        me = institution_holder(self.node_id)

        def pick(s: SyncStorage) -> list[str]:
            return [r["record_id"] for r in dq.subject_records(s, g.subject)
                    if r["erased"] is None and r["writer"] == self.node_id
                    and r["type"] in g.record_types and me in r["holders"]
                    and institution_holder(g.grantee) not in r["holders"]]

        return await self.storage.call(pick)

    async def _share_with_retries(self, g: Grant, record_id: str) -> None:
        reason = ""
        for attempt in range(RETRIES):
            try:
                receipt = await self.share_now(record_id, g.grantee, g.grant_id, g.purpose)
            except HandoverError as exc:
                reason = str(exc)
                break
            if receipt.get("status") == "committed":
                self.shared += 1
                log.info("handover_done", record_id=record_id, grantee=g.grantee,
                         grant_id=g.grant_id)
                return
            if receipt.get("status") == "rejected":
                reason = f"refused: {receipt.get('reason')}"
                break
            reason = "not committed in time"
            if attempt + 1 < RETRIES:
                self.retries += 1
                await trio.sleep(RETRY_BACKOFF_S * (attempt + 1))
        self._failed(g, record_id, reason, attempt + 1)

    def _failed(self, g: Grant, record_id: str, reason: str, attempts: int) -> None:
        self.failed += 1
        log.warning("handover_failed", record_id=record_id, grantee=g.grantee,
                    grant_id=g.grant_id, reason=reason, attempts=attempts)
        self.failures.append({
            "type": "handover_failed", "height": self.head() + 1, "record_id": record_id,
            "subject": g.subject, "grantee": g.grantee, "grant_id": g.grant_id,
            "grant_height": g.height, "reason": reason, "attempts": attempts})

    def failures_between(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """The journal's failures numbered lo..hi (for `admin watch`)."""
        return [dict(f) for f in self.failures if lo <= f["height"] <= hi]

    # ---------------------------------------------------------------- operator requests
    async def share_now(self, record_id: str, grantee: int, grant_id: str,
                        purpose: str, wait_s: float = WAIT_S) -> dict[str, Any]:
        now = int(time.time() * 1000)
        tx = await self._build(lambda s: self.client.share(
            s, now, record_id=record_id, grantee=grantee, grant_id=grant_id, purpose=purpose))
        return dict(await self.submit(tx, wait_s))

    async def fulfil_emergency(self, record_id: str, authority: int,
                               wait_s: float = WAIT_S) -> dict[str, Any]:
        now = int(time.time() * 1000)
        tx = await self._build(lambda s: self.client.fulfil_emergency(
            s, now, record_id=record_id, authority=authority))
        return dict(await self.submit(tx, wait_s))

    async def _build(self, make: Callable[[SyncStorage], Transaction]) -> Transaction:
        def run(s: SyncStorage) -> Transaction | str:
            try:
                if self.keys is not None:
                    self.keys.configure(self.client, s, self.node_id)
                return make(s)
            except (RecordCryptoError, KeyError, ValueError) as exc:
                return str(exc) or type(exc).__name__
        out = await self.storage.call(run)
        if isinstance(out, str):
            raise HandoverError(out)
        return out
