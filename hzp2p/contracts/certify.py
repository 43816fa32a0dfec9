"""What voters certify, derived from executed blocks: the voter set at every height and the statements.

The voter set in force at height h is the set of active voting institutions in
the state block h executes on: the genesis voters, changed by every committed
`promote`, `demote` and `remove` of a block below h (the membership log,
hzp2p.contracts.members). `VoterHistory` holds it for every height (a list of
change points), built from a state's membership log or followed block by
block. `statement_of` is the attestation statement
(hzp2p.ledger.certificate.Statement) for an executed block. `CertAudit` follows
a chain being replayed (hzp2p.contracts.verify) and checks every certificate the
blocks carry against what the replay computed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hzp2p.contracts.engine import BlockResult, TxVerdict
from hzp2p.contracts.members import MembershipChange, institutions, membership_log
from hzp2p.contracts.state import Readable
from hzp2p.ledger.block import Block
from hzp2p.ledger.certificate import (
    CertError,
    Statement,
    Voter,
    VoterSet,
    check_statement,
    decode_certificate,
    fold_voters,
    genesis_voters,
    results_root,
    verify_certificate,
)
from hzp2p.ledger.genesis import Genesis

VOTER_KINDS = frozenset({"promote", "demote", "remove", "rotate"})
"""Membership changes that can change the voter set (`rotate`: a voter's new signing key)."""


def _lookup(reader: Readable) -> dict[int, Voter]:
    return {i.inst_id: Voter(i.inst_id, i.name, i.signing_key) for i in institutions(reader)}


class VoterHistory:
    """The voter set in force at every height (see the module docstring)."""

    def __init__(self, genesis: Genesis) -> None:
        self.heights: list[int] = [0]  # block heights that changed the set (0: the genesis)
        self.sets: list[VoterSet] = [genesis_voters(genesis)]

    @classmethod
    def from_state(cls, genesis: Genesis, reader: Readable) -> VoterHistory:
        """Rebuilt from a state's membership log (names and keys from its institutions)."""
        hist = cls(genesis)
        log = membership_log(reader)
        if any(c.kind in VOTER_KINDS for c in log):
            # the state names current keys: before its first rotation an institution signed
            # with the key that rotation replaced
            first: dict[int, bytes] = {}
            for c in log:
                if c.kind == "rotate":
                    first.setdefault(c.inst_id, c.old_signing_key)
            hist._extend(log, _lookup(reader), first)
        return hist

    def observe(self, result: BlockResult, reader_after: Readable) -> bool:
        """Follow an executed block (`reader_after`: a state after it, for the names and
        keys of promoted institutions). True if the voter set changed."""
        changes = [c for c in result.membership_changes if c.kind in VOTER_KINDS]
        if not changes:
            return False
        return self._extend(changes, _lookup(reader_after))

    def _extend(self, changes: Iterable[MembershipChange], lookup: dict[int, Voter],
                first_keys: dict[int, bytes] | None = None) -> bool:
        """Follow `changes` (in log order). `lookup`: names and keys of institutions after
        them; `first_keys`: signing keys before the first rotation among them, when
        `lookup`'s are later ones (a whole log replayed)."""
        changed = False
        keys = {i: v.signing_key for i, v in lookup.items()} | (first_keys or {})
        by_height: dict[int, list[MembershipChange]] = {}
        for c in changes:
            if c.kind in VOTER_KINDS:
                by_height.setdefault(c.height, []).append(c)
        for h in sorted(by_height):
            folded: list[tuple[str, int]] = []
            rotated: dict[int, Voter] = {}
            for c in by_height[h]:
                if c.kind == "rotate":
                    keys[c.inst_id] = c.signing_key
                    rotated[c.inst_id] = Voter(c.inst_id, lookup[c.inst_id].name, c.signing_key)
                else:
                    folded.append((c.kind, c.inst_id))
            if h <= self.heights[-1]:
                continue  # already followed
            at_h = {i: Voter(i, v.name, keys[i]) for i, v in lookup.items()}
            new = fold_voters(self.sets[-1], folded, at_h)
            if rotated:  # a voter's new key (a non-voter's rotation changes no voter set)
                new = VoterSet.of(rotated.get(v.inst_id, v) for v in new.voters)
            if new.hash != self.sets[-1].hash:
                self.heights.append(h)
                self.sets.append(new)
                changed = True
        return changed

    def at(self, height: int) -> VoterSet:
        """In force at `height`: after every change made by a block below it."""
        return self.sets[bisect.bisect_left(self.heights, height) - 1]

    def after(self, height: int) -> VoterSet:
        return self.sets[bisect.bisect_right(self.heights, height) - 1]

    def changes_below(self, height: int) -> list[tuple[int, VoterSet]]:
        """(height of the block that changed it, new set) for every change below `height`."""
        return [(h, s) for h, s in zip(self.heights, self.sets, strict=True) if 0 < h < height]


def verdict_tuples(verdicts: Sequence[TxVerdict]) -> list[tuple[bytes, str, bool, str]]:
    return [(v.tx_hash, v.tx_type, v.applied, v.reason) for v in verdicts]


def statement_of(
    chain_id: str, height: int, block_hash: bytes, state_digest_after: bytes,
    verdicts: Sequence[TxVerdict], history: VoterHistory,
) -> Statement:
    """The statement voters sign for an executed block (`history` already followed it)."""
    return Statement(chain_id, height, block_hash, state_digest_after,
                     results_root(verdict_tuples(verdicts)), history.at(height).hash,
                     history.after(height).hash)


@dataclass(slots=True)
class CertSummary:
    certificates: int  # certificates carried by the blocks checked
    certified: int  # blocks checked that have a certificate
    uncertified: list[int]  # heights with no certificate K or more blocks later
    pending: list[int]  # uncertified heights fewer than K blocks below the tip
    max_lag: int  # the most blocks between a block and the first that certified it

    def as_dict(self) -> dict[str, object]:
        return {"certificates": self.certificates, "certified": self.certified,
                "uncertified": self.uncertified[:100], "uncertified_count": len(self.uncertified),
                "pending": self.pending, "max_lag_blocks": self.max_lag}


class CertAudit:
    """Checks the certificates of a chain being replayed; feed every block in order."""

    def __init__(self, genesis: Genesis, history: VoterHistory | None = None) -> None:
        self.genesis = genesis
        self.history = history or VoterHistory(genesis)
        self.statements: dict[int, Statement] = {}
        self.first_cert: dict[int, int] = {}  # certified height -> height that first carried it
        self.n_certs = 0
        self.start = 0
        self.tip = 0

    def observe(self, block: Block, result: BlockResult, state_after: Readable) -> str | None:
        """Check `block`'s certificates and record its own statement; a reason if bad."""
        h, chain_id = block.height, self.genesis.chain_id
        if not self.start:
            self.start = h
        for i, raw in enumerate(block.certs):
            try:
                cert = decode_certificate(raw)
                if cert.height >= h:
                    return f"certificate {i} is for height {cert.height}, not an earlier block"
                want = self.statements.get(cert.height)
                if want is None:  # below where this replay started: not checkable here
                    continue
                check_statement(cert, block_hash=want.block_hash, state_digest=want.state_digest,
                                results_root=want.results_root)
                verify_certificate(cert, chain_id, self.history.at(cert.height))
                if cert.statement(chain_id).digest != want.digest:
                    return f"certificate {i} for block {cert.height}: the voter set after it " \
                        "differs from the replayed one"
            except CertError as e:
                return str(e)
            self.n_certs += 1
            self.first_cert.setdefault(cert.height, h)
        self.history.observe(result, state_after)
        self.statements[h] = statement_of(chain_id, h, block.hash, result.state_digest_after,
                                          result.verdicts, self.history)
        self.tip = h
        return None

    def summary(self, k: int) -> CertSummary:
        uncertified: list[int] = []
        pending: list[int] = []
        lag = 0
        for h in range(self.start or 1, self.tip + 1):
            c = self.first_cert.get(h)
            if c is None:
                (pending if self.tip - h < k else uncertified).append(h)
            else:
                lag = max(lag, c - h)
        return CertSummary(self.n_certs, len(self.first_cert), uncertified, pending, lag)
