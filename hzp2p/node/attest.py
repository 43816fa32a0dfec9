"""Certification in the daemon: voters attest the blocks they applied; the leader makes quorum certificates.

Every node follows, for every block it applies, the statement voters sign about
it (hzp2p.contracts.certify.statement_of: block hash, state digest after it,
verdicts root, the voter sets in force at and after it) and the voter set in
force at each height. A node whose institution is a voter at height h signs the
statement with its institution key once block h is durably applied (the
applier calls `block_applied` after the block's storage transaction committed)
and sends the attestation to the leader (net `Attestations`); the leader's own
goes straight into its collection. The leader checks each attestation against
its own statement for that height (same digest) and the signer's key, and once a
strict majority of that height's voters signed, hands the certificate to the
block producer (`take`), which puts it in its next block (hzp2p.ledger.block
version 2). A certificate for a block that carried transactions becomes *urgent*
CERT_ONLY_DELAY_S after it is ready: the producer then cuts a block for it even
with an empty mempool (under load a block with transactions takes it first, so
no extra block is cut); a block carrying only certificates is certified
whenever the next block is cut, so an idle chain does not tick.

Nothing here is on the commit or apply path: statements are computed after the
apply, attestations travel beside Raft, and a certificate offered in a block
that never commits is offered again after OFFER_TIMEOUT_S. A voter re-sends its
attestations of blocks not yet seen certified every RESEND_S and whenever the
leader changes, and after a restart it re-attests the last BACKFILL_BLOCKS
stored blocks (hzp2p.node.certstore), so certificates heal after crashes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nacl.signing
import structlog
import trio

from hzp2p.contracts.certify import VOTER_KINDS, VoterHistory, statement_of
from hzp2p.contracts.engine import BlockResult, read_head
from hzp2p.ledger.block import Block
from hzp2p.ledger.certificate import CertError, QuorumCertificate, Statement, decode_certificate
from hzp2p.ledger.genesis import Genesis
from hzp2p.net.schemas import MAX_ATTESTATIONS_PER_MSG, Attestation, Attestations
from hzp2p.net.transport import Transport
from hzp2p.node.certstore import certified_heights, stored_statement
from hzp2p.node.driver import RaftDriver
from hzp2p.raft.types import NodeId
from hzp2p.storage import AsyncStorage, SyncStorage

log = structlog.get_logger("hzp2p.node.attest")

RESEND_S = 1.0
OFFER_TIMEOUT_S = 2.0
KEEP_HEIGHTS = 1024
BACKFILL_BLOCKS = 32
SCAN_CERTIFIED_BLOCKS = 256
MAX_EARLY = 4096
MAX_CERTS_PER_BLOCK = 16
CERT_ONLY_DELAY_S = 0.1


class AttestService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        node_id: NodeId,
        signing_key: nacl.signing.SigningKey,
        genesis: Genesis,
        storage: AsyncStorage,
        driver: RaftDriver,
        transport: Transport,
    ) -> None:
        self.node_id = node_id
        self.signing_key = signing_key
        self.key_for: Callable[[bytes], nacl.signing.SigningKey | None] = (
            lambda pub: signing_key if bytes(signing_key.verify_key) == pub else None)
        """The private key of a public signing key, if this node holds it: after a key
        rotation (hzp2p.node.rotation) each height is signed with the key of the voter set
        in force there, old or new."""
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.storage = storage
        self.driver = driver
        self.transport = transport
        self.history = VoterHistory(genesis)
        self.statements: dict[int, Statement] = {}
        self.nonempty: set[int] = set()  # heights whose block carried transactions
        self.mine: dict[int, bytes] = {}  # our signatures of heights not yet seen certified
        self.votes: dict[int, dict[int, bytes]] = {}  # leader: height -> signer -> signature
        self.early: dict[int, list[tuple[int, bytes, bytes]]] = {}
        self.certified: dict[int, int] = {}  # height -> height of the block that carried it
        self.offered: dict[int, float] = {}  # leader: height -> when put in a proposed block
        self.ready_at: dict[int, float] = {}  # leader: height -> when a majority had signed
        self.on_ready: Callable[[], None] | None = None
        """Called when an urgent certificate becomes available (the producer's wake-up)."""
        self._queue: list[tuple[Block, BlockResult]] = []
        self._wake = trio.Event()
        self._ready_event = trio.Event()
        self._reload = False
        self.tip = 0
        # counters
        self.attested = 0
        self.received = 0
        self.refused = 0
        self.certificates_made = 0

    # ---------------------------------------------------------------- loading
    async def load(self) -> None:
        """Rebuild from storage: the voter history, which recent heights are certified, and
        our statements (and, as a voter, attestations) for the last stored blocks."""
        g = self.genesis

        def read(s: SyncStorage) -> tuple[VoterHistory, dict[int, int], dict[int, Statement],
                                          set[int], int]:
            head = read_head(s).height
            hist = VoterHistory.from_state(g, s)
            certified: dict[int, int] = {}
            for rec in s.blocks(max(1, head - SCAN_CERTIFIED_BLOCKS + 1), head + 1):
                for h in certified_heights(rec.raw):
                    certified.setdefault(h, rec.height)
            stmts: dict[int, Statement] = {}
            nonempty: set[int] = set()
            for h in range(max(1, head - BACKFILL_BLOCKS + 1), head + 1):
                st = stored_statement(s, g, hist, h)
                if st is not None:
                    stmts[h] = st
                    if s.block_txs(h):
                        nonempty.add(h)
            return hist, certified, stmts, nonempty, head

        hist, certified, stmts, nonempty, head = await self.storage.call(read)
        self.history, self.certified, self.statements, self.nonempty = (
            hist, certified, stmts, nonempty)
        self.mine.clear()
        self.votes.clear()
        self.early.clear()
        self.offered.clear()
        self.ready_at.clear()
        self.tip = head
        for h, st in sorted(stmts.items()):
            if h not in certified:
                self._own(h, st, send=False)
        self._resend()

    def reload(self) -> None:
        """After a snapshot was installed: rebuild before following the next block."""
        self._reload = True
        self._wake.set()

    # ---------------------------------------------------------------- following blocks
    def block_applied(self, block: Block, result: BlockResult) -> None:
        if not result.state_digest_after:
            return  # a refused block: not part of the chain
        self._queue.append((block, result))
        self._wake.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resend_loop)
            nursery.start_soon(self._urgent_loop)
            while True:
                if self._reload:
                    self._reload = False
                    self._queue.clear()
                    await self.load()
                if not self._queue:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    continue
                block, result = self._queue.pop(0)
                if block.height <= self.tip and block.height in self.statements:
                    continue
                await self._follow(block, result)

    async def _follow(self, block: Block, result: BlockResult) -> None:
        h = block.height
        for raw in block.certs:
            try:
                ch = decode_certificate(raw).height
            except CertError:
                continue
            self.certified.setdefault(ch, h)
            for d in (self.mine, self.votes, self.offered, self.early, self.ready_at):
                d.pop(ch, None)
        if any(c.kind in VOTER_KINDS for c in result.membership_changes):
            hist = self.history
            await self.storage.call(lambda s: hist.observe(result, s))
        st = statement_of(self.chain_id, h, block.hash, result.state_digest_after,
                          result.verdicts, self.history)
        self.statements[h] = st
        self.tip = max(self.tip, h)
        if block.txs:
            self.nonempty.add(h)
        self._own(h, st, send=True)
        for signer, digest, sig in self.early.pop(h, []):
            self._accept(signer, h, digest, sig)
        self._prune()

    def _own(self, h: int, st: Statement, *, send: bool) -> None:
        me = self.history.at(h).get(self.node_id)
        if h in self.certified or me is None:
            return
        key = self.key_for(me.signing_key)
        if key is None:  # rotated to keys this daemon does not hold (logged by rotation)
            return
        sig = st.sign(key)
        self.mine[h] = sig
        self.attested += 1
        if send:
            self._send([Attestation(h, st.digest, sig)])

    def _prune(self) -> None:
        floor = self.tip - KEEP_HEIGHTS
        if floor <= 0 or min(self.statements, default=floor) > floor:
            return
        for d in (self.statements, self.mine, self.votes, self.early, self.certified,
                  self.offered, self.ready_at):
            for k in [k for k in d if k <= floor]:
                del d[k]
        self.nonempty = {h for h in self.nonempty if h > floor}

    # ---------------------------------------------------------------- attestations
    def _send(self, items: list[Attestation]) -> None:
        if not items:
            return
        if self.driver.is_leader():
            for a in items:
                self._accept(self.node_id, a.height, a.statement, a.signature)
            return
        leader = self.driver.core.leader_id
        if leader and leader != self.node_id:
            for i in range(0, len(items), MAX_ATTESTATIONS_PER_MSG):
                self.transport.send_nowait(
                    leader, Attestations(tuple(items[i:i + MAX_ATTESTATIONS_PER_MSG])))

    def _resend(self) -> None:
        items = [Attestation(h, self.statements[h].digest, sig)
                 for h, sig in sorted(self.mine.items())
                 if h not in self.certified and h in self.statements]
        self._send(items[-MAX_ATTESTATIONS_PER_MSG:])

    def leader_changed(self) -> None:
        self.offered.clear()
        self._resend()

    async def _resend_loop(self) -> None:
        while True:
            await trio.sleep(RESEND_S)
            self._resend()
            if self.on_ready is not None and self.driver.is_leader() and self.urgent():
                self.on_ready()

    async def _urgent_loop(self) -> None:
        """Wake the producer once a ready certificate has waited CERT_ONLY_DELAY_S."""
        while True:
            await self._ready_event.wait()
            self._ready_event = trio.Event()
            await trio.sleep(CERT_ONLY_DELAY_S)
            if self.on_ready is not None and self.driver.is_leader() and self.urgent():
                self.on_ready()

    def on_message(self, sender: NodeId, msg: Any) -> None:
        if not isinstance(msg, Attestations):
            return
        if not self.driver.is_leader():
            return  # the sender re-sends to whoever leads
        for a in msg.items:
            self.received += 1
            self._accept(sender, a.height, a.statement, a.signature)

    def _accept(self, signer: int, h: int, digest: bytes, sig: bytes) -> None:
        if h in self.certified:
            return
        st = self.statements.get(h)
        if st is None:
            if h > self.tip and sum(map(len, self.early.values())) < MAX_EARLY:
                self.early.setdefault(h, []).append((signer, digest, sig))
            return
        voters = self.history.at(h)
        v = voters.get(signer)
        got = self.votes.setdefault(h, {})
        if signer in got:
            return
        if digest != st.digest or v is None or not st.signature_valid(sig, v.signing_key):
            self.refused += 1
            log.warning("attestation_refused", height=h, signer=signer,
                        reason="statement differs" if digest != st.digest
                        else "not a voter" if v is None else "bad signature")
            return
        got[signer] = sig
        if len(got) == voters.quorum:
            self.ready_at[h] = trio.current_time()
            if h in self.nonempty:
                self._ready_event.set()

    # ---------------------------------------------------------------- the producer's side
    def _ready_heights(self) -> list[int]:
        now = trio.current_time()
        out = []
        for h in sorted(self.votes):
            if h in self.certified or len(self.votes[h]) < self.history.at(h).quorum:
                continue
            t = self.offered.get(h)
            if t is not None and now - t < OFFER_TIMEOUT_S:
                continue
            out.append(h)
        return out

    def urgent(self) -> bool:
        """A certificate for a block that carried transactions has been ready for
        CERT_ONLY_DELAY_S (worth a block of its own)."""
        late = trio.current_time() - CERT_ONLY_DELAY_S
        return any(h in self.nonempty and self.ready_at.get(h, late) <= late
                   for h in self._ready_heights())

    def take(self, max_n: int = MAX_CERTS_PER_BLOCK) -> list[bytes]:
        """Certificates to put in the block being built (offered again if it never commits)."""
        now = trio.current_time()
        out = []
        for h in self._ready_heights()[:max_n]:
            self.offered[h] = now
            out.append(QuorumCertificate.of(self.statements[h], self.votes[h]).encode())
        self.certificates_made += len(out)
        return out

    def stats(self) -> dict[str, int]:
        return {"attested": self.attested, "attestations_received": self.received,
                "attestations_refused": self.refused,
                "certificates_made": self.certificates_made,
                "uncertified_recent": sum(1 for h in self.statements if h not in self.certified)}
