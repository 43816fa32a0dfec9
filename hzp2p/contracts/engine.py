"""The contract engine: executes a block against state, deterministically, and returns its writes.

`execute_block(reader, block, genesis)` checks the block against the chain head
recorded in state (height, parent hash, timestamp not earlier than the parent's,
the state digest in the header, the proposer's node signature), then for each
transaction: not already included (its hash is recorded under ``x/tx/``), type
registered, envelope valid (chain id, validity window vs the block timestamp,
Ed25519 signature), sender resolved from its signing key (an active member,
unless the type is citizen-signed); then the handler runs on a per-transaction
overlay that is merged only on success. Handler-level verdicts are recorded in
state with the hash, so a transaction is never applied twice and every node's
state digest commits to every verdict. The new digest is computed
incrementally from the old and new values of the written keys only.

A block failing a header check raises `BlockRejected`; every node rejects it the
same way (state is identical), so the daemon skips that Raft entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hzp2p.contracts import members
from hzp2p.contracts.api import Institution, TxContext, TxRejected, decode_value, encode_value
from hzp2p.contracts.digest import (
    DIGEST_KEY,
    EMPTY_VECTOR,
    DigestAccumulator,
    digest_of_vector,
    load_accelerator,
    vector_of_items,
)
from hzp2p.contracts.registry import CITIZEN_SIGNED, CONTRACTS, citizen_signed, unsupported_rules
from hzp2p.contracts.schema import problems_text
from hzp2p.contracts.state import CachedReader, Overlay, Readable
from hzp2p.ledger.block import Block, BlockError
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledger.tx import Transaction, TxError, check_envelope, decode_tx

K_HEAD = b"x/head"
K_RULES = b"x/rules"
K_TX = b"x/tx/"

# Contract modules loaded by load_contracts(): ours first, then the domain modules.
CONTRACT_MODULES = (
    "hzp2p.contracts.members",
    "hzp2p.contracts.epi",
    "hzp2p.contracts.datasets",
    "hzp2p.contracts.healthcode",
    "hzp2p.contracts.supply",
    "hzp2p.contracts.coldchain",
    "hzp2p.contracts.vaccination",
    "hzp2p.contracts.privacy",
    "hzp2p.contracts.exposure",
    "hzp2p.contracts.appeals",
    "hzp2p.contracts.rulebook",
    "hzp2p.contracts.notices",
    "hzp2p.contracts.credentials",
)


class ContractsMissing(Exception):
    """This build cannot judge a chain the same way as the others: a contract module is
    missing, or the genesis names a rule version no loaded contract implements. A node
    that started anyway would disagree with the others about validity."""


def load_contracts(genesis: Genesis | None = None) -> list[str]:
    """Import every contract module explicitly (each registers its handlers and rule
    versions); returns the loaded names. With `genesis`, also check that every rule (and
    version) it names is implemented. Raises ContractsMissing — never skips silently."""
    global _loaded
    load_accelerator()  # numpy, if present: at start-up, not in the middle of the first block
    loaded = []
    for name in CONTRACT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            raise ContractsMissing(f"contract module {name} is missing from this build") from None
        loaded.append(name)
    _loaded = True
    if genesis is not None:
        missing = unsupported_rules(genesis.rules)
        if missing:
            raise ContractsMissing(
                f"the genesis names {', '.join(missing)}: upgrade this node before starting it"
            )
    return loaded


_loaded = False


class BlockRejected(Exception):
    """A block does not extend this state's chain head validly (deterministic for all nodes)."""

    def __init__(self, height: int, reason: str) -> None:
        self.height = height
        self.reason = reason
        super().__init__(f"block {height}: {reason}")


@dataclass(frozen=True, slots=True)
class TxVerdict:
    tx_hash: bytes
    tx_type: str
    applied: bool
    reason: str  # "" when applied
    duplicate: bool = field(default=False, compare=False)
    """Refused as a second inclusion of an already included transaction: not its receipt
    (the first inclusion's is). Not stored; a stored verdict compares equal without it."""

    @property
    def status(self) -> str:
        return "applied" if self.applied else "rejected"


@dataclass(frozen=True, slots=True)
class BlockResult:
    height: int
    block_hash: bytes
    verdicts: tuple[TxVerdict, ...]
    writes: dict[bytes, bytes | None]  # commit these atomically with the block and verdicts
    state_digest_after: bytes
    membership_changes: tuple[members.MembershipChange, ...]


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    hash: bytes
    timestamp_ms: int


def read_head(reader: Readable) -> Head:
    raw = reader.get(K_HEAD)
    assert raw is not None, "state has no chain head: seed it with genesis_state_writes"
    h, bh, ts = decode_value(raw)
    return Head(h, bh, ts)


def state_digest(reader: Readable) -> bytes:
    """The digest of the state as recorded (O(1): reads the stored vector)."""
    return digest_of_vector(reader.get(DIGEST_KEY) or EMPTY_VECTOR)


def recompute_digest(reader: Readable) -> bytes:
    """The digest recomputed from a full scan of state (snapshot verification)."""
    return digest_of_vector(vector_of_items(reader.scan(b"")))


def rules_of(reader: Readable) -> dict[str, int]:
    raw = reader.get(K_RULES)
    return {} if raw is None else dict(decode_value(raw))


def genesis_state_writes(genesis: Genesis) -> dict[bytes, bytes]:
    """The initial contract state: institutions, counters, rules, head and the digest vector."""
    out: dict[bytes, bytes] = {}
    for f in genesis.institutions:
        inst = Institution(
            f.inst_id, f.name, frozenset(f.roles), f.signing_key, f.node_key, f.address, f.voter
        )
        out.update(members.institution_writes(inst))
    out[members.K_NEXT_ID] = encode_value(max(i.inst_id for i in genesis.institutions) + 1)
    out[K_RULES] = encode_value({k: genesis.rules[k] for k in sorted(genesis.rules)})
    out[K_HEAD] = encode_value([0, genesis.hash, genesis.timestamp_ms])
    out[DIGEST_KEY] = vector_of_items(sorted(out.items()))
    return out


def tx_record(reader: Readable, tx_hash: bytes) -> dict[str, Any] | None:
    """Where an included transaction landed: height, index, applied, reason (or None)."""
    raw = reader.get(K_TX + tx_hash)
    if raw is None:
        return None
    h, i, ok, reason = decode_value(raw)
    return {"height": h, "index": i, "applied": ok, "reason": reason}


def check_tx_payload(tx: Transaction) -> None:
    """The contract's stateless check of `tx`'s payload (hzp2p.contracts.schema): raises
    TxRejected carrying every problem. Needs no state: the node that first receives a
    transaction runs it before anything else, so a refused payload goes nowhere."""
    if not _loaded:
        load_contracts()
    c = CONTRACTS.get(tx.tx_type)
    if c is None:
        raise TxRejected(f"unknown transaction type {tx.tx_type!r}")
    problems = c.check(tx.payload, tx.signer)
    if problems:
        raise TxRejected(f"{tx.tx_type}: {problems_text(problems)}", tuple(problems))


def precheck_tx(reader: Readable, tx: Transaction, chain_id: str, now_ms: int) -> None:
    """Admission checks for a mempool (the block's execution decides for good): the
    payload's stateless check, the envelope, not already included, an active member.

    Raises TxError (envelope) or TxRejected (not registered, malformed payload, unknown
    signer, duplicate).
    """
    check_tx_payload(tx)
    check_envelope(tx, chain_id, now_ms)
    if reader.get(K_TX + tx.hash) is not None:
        raise TxRejected("duplicate: transaction already included", duplicate=True)
    if not citizen_signed(tx.tx_type):
        inst = members.institution_by_key(reader, tx.signer)
        if inst is None or not inst.active:
            raise TxRejected("signer is not an active member")


def admit_tx(reader: Readable, raw: bytes, chain_id: str, now_ms: int) -> Transaction:
    """A client's or peer's wire bytes -> a checked Transaction for the mempool.

    Raises TxError (malformed, bad envelope or signature) or TxRejected (type,
    membership, already included). The block's execution still decides for good.
    """
    tx = decode_tx(raw)
    precheck_tx(reader, tx, chain_id, now_ms)
    return tx


def check_header(reader: Readable, block: Block) -> Head:
    """The block-level checks of execute_block; returns the parent head. Raises BlockRejected."""
    hdr = block.header
    head = read_head(reader)
    if hdr.height != head.height + 1:
        raise BlockRejected(hdr.height, f"height {hdr.height} does not follow head {head.height}")
    if hdr.prev_hash != head.hash:
        raise BlockRejected(hdr.height, "prev_hash is not the hash of the head block")
    if hdr.timestamp_ms < head.timestamp_ms:
        raise BlockRejected(hdr.height, "timestamp earlier than the parent block's")
    if hdr.state_digest != state_digest(reader):
        raise BlockRejected(hdr.height, "state_digest does not match the state after the parent")
    proposer = members.get_institution(reader, hdr.proposer)
    if proposer is None or not proposer.active:
        raise BlockRejected(hdr.height, f"proposer {hdr.proposer} is not an active member")
    try:
        hdr.verify_signature(block.signature, proposer.node_key)
        block.check_merkle()
    except BlockError as e:
        raise BlockRejected(hdr.height, str(e)) from None
    return head


class _Senders:
    """Per-block cache of signing key -> Institution (dropped after membership transactions)."""

    __slots__ = ("cache", "view")

    def __init__(self, view: Readable) -> None:
        self.view = view
        self.cache: dict[bytes, Institution | None] = {}

    def get(self, key: bytes) -> Institution | None:
        try:
            return self.cache[key]
        except KeyError:
            inst = members.institution_by_key(self.view, key)
            self.cache[key] = inst
            return inst


def execute_block(reader: Readable, block: Block, genesis: Genesis) -> BlockResult:
    """Execute `block` on top of `reader`'s state; pure apart from reading `reader`."""
    if not _loaded:
        load_contracts()
    head = check_header(reader, block)
    hdr = block.header
    height, ts, chain_id = hdr.height, hdr.timestamp_ms, genesis.chain_id
    base = CachedReader(reader)
    view = Overlay(base)
    rules: Mapping[str, int] = rules_of(reader)
    senders = _Senders(view)
    log_start = members.next_change_seq(view)
    verdicts: list[TxVerdict] = []
    seen: set[bytes] = set()
    assert head.height == height - 1
    for index, tx in enumerate(block.txs):
        verdict, record = _execute_tx(view, senders, tx, index, height, ts, chain_id, rules, seen)
        verdicts.append(verdict)
        if record:
            view.put_raw(
                K_TX + tx.hash, encode_value([height, index, verdict.applied, verdict.reason])
            )
    log_end = members.next_change_seq(view)
    changes = tuple(members.changes_between(view, log_start, log_end))
    view.put_raw(K_HEAD, encode_value([height, block.hash, ts]))
    writes, digest = _finish(base, view.writes)
    return BlockResult(height, block.hash, tuple(verdicts), writes, digest, changes)


def _execute_tx(
    view: Overlay,
    senders: _Senders,
    tx: Transaction,
    index: int,
    height: int,
    ts: int,
    chain_id: str,
    rules: Mapping[str, int],
    seen: set[bytes],
) -> tuple[TxVerdict, bool]:
    """One transaction's verdict, and whether to record its hash as included."""
    h, typ = tx.hash, tx.tx_type
    if h in seen:
        return TxVerdict(h, typ, False, "duplicate: already earlier in this block", True), False
    prior = view.get(K_TX + h)
    if prior is not None:
        return TxVerdict(
            h, typ, False, f"duplicate: included at height {decode_value(prior)[0]}", True
        ), False
    contract = CONTRACTS.get(typ)
    if contract is None:
        return TxVerdict(h, typ, False, f"unknown transaction type {typ!r}"), False
    try:
        check_envelope(tx, chain_id, ts)
    except TxError as e:
        return TxVerdict(h, typ, False, str(e)), False
    seen.add(h)
    sender = senders.get(tx.signer)
    if typ not in CITIZEN_SIGNED:
        if sender is None:
            return TxVerdict(h, typ, False, "signer is not a member"), True
        if not sender.active:
            return TxVerdict(h, typ, False, f"sender {sender.name!r} is no longer active"), True
    problems = contract.check(tx.payload, tx.signer)  # admission ran it too: defence in depth
    if problems:
        return TxVerdict(h, typ, False, f"{typ}: {problems_text(problems)}"), True
    txv = Overlay(view)
    ctx = _context(typ, h, tx.payload, tx.signer, sender, height, ts, rules, txv)
    try:
        contract.handler(ctx)
    except TxRejected as e:
        return TxVerdict(h, typ, False, e.reason), True
    except (MemoryError, RecursionError):
        raise  # this node's trouble, not a verdict: never let it diverge from the others
    except Exception as e:  # a contract bug: reject deterministically, never crash the node
        return TxVerdict(h, typ, False, f"contract error: {type(e).__name__}"), True
    txv.merge_into(view)
    if typ.startswith("member."):
        senders.cache.clear()
    return _applied(h, typ), True


# Frozen dataclasses built through their slots' setters: the same objects as the generated
# __init__ makes (neither class has a __post_init__), at a third of the cost per transaction.
_CTX_SETTERS = tuple(getattr(TxContext, f).__set__ for f in TxContext.__dataclass_fields__)
_VERDICT_SETTERS = tuple(getattr(TxVerdict, f).__set__ for f in TxVerdict.__dataclass_fields__)
assert len(_CTX_SETTERS) == 9 and len(_VERDICT_SETTERS) == 5
assert not hasattr(TxContext, "__post_init__") and not hasattr(TxVerdict, "__post_init__")


def _context(
    typ: str,
    h: bytes,
    payload: Mapping[str, Any],
    signer: bytes,
    sender: Institution | None,
    height: int,
    ts: int,
    rules: Mapping[str, int],
    state: Overlay,
) -> TxContext:
    ctx = object.__new__(TxContext)
    s_type, s_hash, s_payload, s_signer, s_sender, s_height, s_ts, s_rules, s_state = _CTX_SETTERS
    s_type(ctx, typ)
    s_hash(ctx, h)
    s_payload(ctx, payload)
    s_signer(ctx, signer)
    s_sender(ctx, sender)
    s_height(ctx, height)
    s_ts(ctx, ts)
    s_rules(ctx, rules)
    s_state(ctx, state)
    return ctx


def _applied(h: bytes, typ: str) -> TxVerdict:
    v = object.__new__(TxVerdict)
    s_hash, s_type, s_applied, s_reason, s_duplicate = _VERDICT_SETTERS
    s_hash(v, h)
    s_type(v, typ)
    s_applied(v, True)
    s_reason(v, "")
    s_duplicate(v, False)
    return v


def _finish(
    base: CachedReader, pending: dict[bytes, bytes | None]
) -> tuple[dict[bytes, bytes | None], bytes]:
    """Drop no-op writes, update the digest vector incrementally; returns (writes, digest)."""
    acc = DigestAccumulator(base.get(DIGEST_KEY) or EMPTY_VECTOR)
    writes: dict[bytes, bytes | None] = {}
    added: list[tuple[bytes, bytes]] = []
    removed: list[tuple[bytes, bytes]] = []
    get = base.get
    for k, new in pending.items():
        old = get(k)
        if old == new:
            continue
        if old is not None:
            removed.append((k, old))
        if new is not None:
            added.append((k, new))
        writes[k] = new
    assert DIGEST_KEY not in pending, "contracts never write the digest vector"
    acc.remove_many(removed)
    acc.add_many(added)
    vector = acc.vector()
    writes[DIGEST_KEY] = vector
    return writes, digest_of_vector(vector)


def speculative_state(reader: Readable, *results: BlockResult) -> Overlay:
    """`reader` with the writes of executed-but-not-yet-committed blocks layered on top.

    Lets a leader execute block N+1 (and so know the digest to put in its header)
    before block N is committed and applied: execute_block(speculative_state(r, res_n), ...).
    """
    view = Overlay(reader)
    for res in results:
        view.writes.update(res.writes)  # (a fresh overlay: no sorted key list to invalidate)
    return view
