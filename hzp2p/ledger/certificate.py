"""Quorum certificates: the voters' attestations that a block is what the chain holds (pure, no I/O).

After a voter has durably applied block h it signs a *statement* with its
institution's signing key (Ed25519 over ``b"hzp2p/attest/v1"`` + blake2b-256 of
the canonical statement):

    [1, chain_id, height, block_hash, state_digest, results_root, voters_hash, next_voters_hash]

* ``state_digest`` is the contract-state digest after block h (the one block h+1's
  header carries);
* ``results_root`` is the Merkle root (hzp2p.ledger.merkle) over the block's
  verdicts in block order, leaf = blake2b-256(0x03 || canonical [tx_hash, type,
  applied, reason]): it lets a receipt prove a transaction's verdict, which the
  state digest (a multiset hash) cannot;
* ``voters_hash`` is the hash of the voter set *in force at h* (the active voting
  institutions in the state block h executes on) and ``next_voters_hash`` that of
  the set after h. An outsider follows the voter set from the genesis through the
  certificates of the blocks that changed it (each signed by the set before the
  change); a change left out of such a chain makes the next certificate's
  ``voters_hash`` disagree, unless the set came back to the same members.

A `QuorumCertificate` for height h is the statement's fields and the signatures
of a strict majority of the voter set in force at h, sorted by institution id.
Certificates travel in later blocks (hzp2p.ledger.block version 2) and in
receipts (hzp2p.ledger.receipt). `verify_certificate` checks the voter set, the
signers, the majority and every signature; the caller checks the statement
against what it knows (block hash, digest, results root).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing

from hzp2p.ledger.codec import CodecError, FieldError, pack, unpack
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledger.merkle import merkle_root
from hzp2p.ledger.tx import blake

CERT_VERSION = 1
STATEMENT_VERSION = 1
ATTEST_DOMAIN = b"hzp2p/attest/v1"
VOTERS_DOMAIN = b"hzp2p/voters/v1"
RESULT_LEAF_PREFIX = b"\x03"
MAX_VOTERS = 64
MAX_NAME_CHARS = 128


class CertError(FieldError):
    """A certificate (or voter set) is malformed or fails a check; the message says why."""

    PREFIX = "certificate "


# ---------------------------------------------------------------- voter sets


@dataclass(frozen=True, slots=True)
class Voter:
    inst_id: int
    name: str
    signing_key: bytes


@dataclass(frozen=True, slots=True)
class VoterSet:
    """The voting institutions in force at some height, sorted by institution id."""

    voters: tuple[Voter, ...]
    hash: bytes = field(default=b"", init=False, repr=False)
    _by_id: dict[int, Voter] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        ids = [v.inst_id for v in self.voters]
        if ids != sorted(set(ids)):
            raise CertError("voters", "must be sorted by institution id, without repeats")
        if not 0 < len(ids) <= MAX_VOTERS:
            raise CertError("voters", f"must hold 1..{MAX_VOTERS} voters")
        for v in self.voters:
            if type(v.inst_id) is not int or not 0 < v.inst_id < 2**63:
                raise CertError("voters", "institution ids must be positive int64")
            if type(v.name) is not str or not 0 < len(v.name) <= MAX_NAME_CHARS:
                raise CertError("voters", f"institution {v.inst_id}: bad name")
            if type(v.signing_key) is not bytes or len(v.signing_key) != 32:
                raise CertError("voters", f"institution {v.inst_id}: signing key must be 32 bytes")
        object.__setattr__(self, "hash", blake(VOTERS_DOMAIN + pack(self.entries())))
        self._by_id.update((v.inst_id, v) for v in self.voters)

    @classmethod
    def of(cls, voters: Iterable[Voter]) -> VoterSet:
        return cls(tuple(sorted(voters, key=lambda v: v.inst_id)))

    @property
    def quorum(self) -> int:
        """A strict majority."""
        return len(self.voters) // 2 + 1

    def get(self, inst_id: int) -> Voter | None:
        return self._by_id.get(inst_id)

    def entries(self) -> list[list[object]]:
        return [[v.inst_id, v.name, v.signing_key] for v in self.voters]

    @classmethod
    def from_entries(cls, entries: object) -> VoterSet:
        if type(entries) is not list or not all(
            type(e) is list and len(e) == 3 for e in entries
        ):
            raise CertError("voters", "must be a list of [inst_id, name, signing_key]")
        return cls(tuple(Voter(e[0], e[1], e[2]) for e in entries))

    def names(self, ids: Iterable[int]) -> list[str]:
        return [self._by_id[i].name for i in ids]


def genesis_voters(genesis: Genesis) -> VoterSet:
    """The voters the genesis names (in force at height 1 until a block changes them)."""
    return VoterSet.of(Voter(i.inst_id, i.name, i.signing_key)
                       for i in genesis.institutions if i.voter)


def fold_voters(
    start: VoterSet, changes: Iterable[tuple[str, int]], lookup: dict[int, Voter]
) -> VoterSet:
    """The voter set after membership changes (kind, inst_id) in order: `promote` adds the
    institution (`lookup` gives its name and key), `demote` and `remove` take it out;
    other kinds (add_learner) leave the voters as they are."""
    cur = {v.inst_id: v for v in start.voters}
    for kind, inst_id in changes:
        if kind == "promote":
            cur[inst_id] = lookup[inst_id]
        elif kind in ("demote", "remove"):
            cur.pop(inst_id, None)
    return VoterSet.of(cur.values())


# ---------------------------------------------------------------- verdicts


def result_leaf(tx_hash: bytes, tx_type: str, applied: bool, reason: str) -> bytes:
    return blake(RESULT_LEAF_PREFIX + pack([tx_hash, tx_type, applied, reason]))


def results_root(verdicts: Sequence[tuple[bytes, str, bool, str]]) -> bytes:
    """The Merkle root over a block's verdicts (tx_hash, type, applied, reason) in order."""
    return merkle_root([result_leaf(*v) for v in verdicts])


# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Statement:
    """What a voter attests about block `height` (see the module docstring)."""

    chain_id: str
    height: int
    block_hash: bytes
    state_digest: bytes
    results_root: bytes
    voters_hash: bytes
    next_voters_hash: bytes
    digest: bytes = field(default=b"", init=False, repr=False)

    def __post_init__(self) -> None:
        if type(self.height) is not int or not 0 < self.height < 2**63:
            raise CertError("height", "must be a positive int64")
        for name in ("block_hash", "state_digest", "results_root", "voters_hash",
                     "next_voters_hash"):
            v = getattr(self, name)
            if type(v) is not bytes or len(v) != 32:
                raise CertError(name, "must be 32 bytes")
        enc = pack([STATEMENT_VERSION, self.chain_id, self.height, self.block_hash,
                    self.state_digest, self.results_root, self.voters_hash,
                    self.next_voters_hash])
        object.__setattr__(self, "digest", blake(enc))

    def sign(self, key: nacl.signing.SigningKey) -> bytes:
        return bytes(key.sign(ATTEST_DOMAIN + self.digest).signature)

    def signature_valid(self, signature: bytes, signing_key: bytes) -> bool:
        if len(signature) != 64 or len(signing_key) != 32:
            return False
        try:
            nacl.bindings.crypto_sign_open(signature + ATTEST_DOMAIN + self.digest, signing_key)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            return False
        return True


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class QuorumCertificate:
    height: int
    block_hash: bytes
    state_digest: bytes
    results_root: bytes
    voters_hash: bytes
    next_voters_hash: bytes
    signatures: tuple[tuple[int, bytes], ...]  # (inst_id, Ed25519 signature), ids ascending

    def statement(self, chain_id: str) -> Statement:
        return Statement(chain_id, self.height, self.block_hash, self.state_digest,
                         self.results_root, self.voters_hash, self.next_voters_hash)

    @property
    def signers(self) -> list[int]:
        return [i for i, _ in self.signatures]

    @classmethod
    def of(cls, st: Statement, signatures: dict[int, bytes]) -> QuorumCertificate:
        return cls(st.height, st.block_hash, st.state_digest, st.results_root, st.voters_hash,
                   st.next_voters_hash, tuple(sorted(signatures.items())))

    def encode(self) -> bytes:
        return pack([CERT_VERSION, self.height, self.block_hash, self.state_digest,
                     self.results_root, self.voters_hash, self.next_voters_hash,
                     [[i, s] for i, s in self.signatures]])

    def without(self, inst_id: int) -> QuorumCertificate:
        """A copy lacking one signer (tests)."""
        return QuorumCertificate(self.height, self.block_hash, self.state_digest,
                                 self.results_root, self.voters_hash, self.next_voters_hash,
                                 tuple(p for p in self.signatures if p[0] != inst_id))


def decode_certificate(data: bytes) -> QuorumCertificate:
    """Parse a certificate's canonical bytes (structure only; no signature is checked)."""
    try:
        f = unpack(data, "certificate")
    except CodecError as e:
        raise CertError("encoding", e.problem) from None
    if type(f) is not list or len(f) != 8:
        raise CertError("encoding", "must be an array of 8 fields")
    if type(f[0]) is not int or f[0] != CERT_VERSION:
        raise CertError("version", f"unsupported version {f[0]!r}")
    if type(f[1]) is not int or not 0 < f[1] < 2**63:
        raise CertError("height", "must be a positive int64")
    for i, name in enumerate(("block_hash", "state_digest", "results_root", "voters_hash",
                              "next_voters_hash"), start=2):
        if type(f[i]) is not bytes or len(f[i]) != 32:
            raise CertError(name, "must be 32 bytes")
    sigs = f[7]
    if type(sigs) is not list or not 0 < len(sigs) <= MAX_VOTERS:
        raise CertError("signatures", f"must be a list of 1..{MAX_VOTERS}")
    out: list[tuple[int, bytes]] = []
    for s in sigs:
        if (type(s) is not list or len(s) != 2 or type(s[0]) is not int or not 0 < s[0] < 2**63
                or type(s[1]) is not bytes or len(s[1]) != 64):
            raise CertError("signatures", "each must be [inst_id, 64-byte signature]")
        if out and s[0] <= out[-1][0]:
            raise CertError("signatures", "signers must be in ascending id order, once each")
        out.append((s[0], s[1]))
    cert = QuorumCertificate(f[1], f[2], f[3], f[4], f[5], f[6], tuple(out))
    if cert.encode() != data:
        raise CertError("encoding", "not the canonical encoding")
    return cert


def verify_certificate(cert: QuorumCertificate, chain_id: str, voters: VoterSet) -> None:
    """Check `cert` against the voter set in force at its height: the set it names, every
    signer a voter, a strict majority, every signature valid. Raises CertError (why)."""
    h = cert.height
    if cert.voters_hash != voters.hash:
        raise CertError(f"for block {h}", "names a different voter set from the one in force "
                        "at that height")
    st = cert.statement(chain_id)
    for inst_id, sig in cert.signatures:
        v = voters.get(inst_id)
        if v is None:
            raise CertError(f"for block {h}", f"signer {inst_id} was not a voter at that height")
        if not st.signature_valid(sig, v.signing_key):
            raise CertError(f"for block {h}", f"signature of {v.name!r} (institution "
                            f"{inst_id}) does not verify")
    n, need = len(cert.signatures), voters.quorum
    if n < need:
        raise CertError(f"for block {h}", f"only {n} of {len(voters.voters)} voters signed; "
                        f"a majority needs {need}")


def check_statement(
    cert: QuorumCertificate, *, block_hash: bytes, state_digest: bytes | None = None,
    results_root: bytes | None = None,
) -> None:
    """The certificate is about this block (and, when given, this digest and verdicts)."""
    h = cert.height
    if cert.block_hash != block_hash:
        raise CertError(f"for block {h}", "certifies a different block at that height")
    if state_digest is not None and cert.state_digest != state_digest:
        raise CertError(f"for block {h}", "state digest differs from the replayed state")
    if results_root is not None and cert.results_root != results_root:
        raise CertError(f"for block {h}", "verdicts root differs from the block's verdicts")
