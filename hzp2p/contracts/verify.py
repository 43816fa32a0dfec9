"""Chain verification: re-check a stored chain from genesis and name the first bad block.

For each stored block (raw bytes, as kept in storage) in height order:
canonical decoding, the height sequence, the hash link to the parent, the
Merkle root, the proposer's signature (the proposer must be an active member
with a node key at that point), timestamps never decreasing, and, by
re-executing every block from the genesis state, every transaction's envelope
and signature and the state digest each header carries. A transaction whose
signature does not verify is not a fault of its block: the engine gives it a
`rejected` verdict on every node (a forged copy of a real transaction can ride
in a block without effect), so the verifier judges it the same way, through
the verdicts, which it compares with the stored ones when given. Optionally the re-executed verdicts are compared
with stored ones and the final digest with the node's state. The report names
the first bad block (height and reason) and stops there.

`verify_chain_from` runs the same checks from a trusted starting point instead
of the genesis: a `TrustedStart` (height, block hash, state digest and
timestamp of a chain tip, with the whole contract state after it; in the daemon
the tip of a verified snapshot). The starting state must agree with the start
(its recorded chain head and digest vector, and, unless the caller already did
it, the digest recomputed from every pair); the first block checked is then
the one at `height + 1`, linked to the start's hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hzp2p.contracts.engine import (
    K_HEAD,
    BlockRejected,
    BlockResult,
    TxVerdict,
    execute_block,
    genesis_state_writes,
    read_head,
    recompute_digest,
    state_digest,
)
from hzp2p.contracts.state import DictState
from hzp2p.ledger.block import Block, BlockError, decode_block
from hzp2p.ledger.genesis import Genesis

Observer = Callable[[Block, BlockResult, DictState], str | None]
"""Called after each good block is applied (block, its result, the state after it); a
returned reason makes that block bad (hzp2p.contracts.certify.CertAudit.observe)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    blocks_checked: int  # blocks that passed every check
    bad_height: int | None  # the first bad block
    reason: str
    final_digest: bytes  # state digest after the last good block
    start_height: int = 0  # the height verification started from (0: the genesis)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "blocks_checked": self.blocks_checked,
            "bad_height": self.bad_height,
            "reason": self.reason,
            "final_digest": self.final_digest.hex(),
            "start_height": self.start_height,
        }


@dataclass(frozen=True, slots=True)
class TrustedStart:
    """A chain tip to verify from, and the whole contract state after it."""

    height: int
    block_hash: bytes
    state_digest: bytes  # the state digest after the block at `height`
    timestamp_ms: int  # that block's timestamp
    state: Mapping[bytes, bytes]  # every state pair after that block (copied, never modified)


def verify_chain(
    genesis: Genesis,
    blocks: Iterable[bytes],
    *,
    stored_verdicts: Callable[[int], list[TxVerdict] | None] | None = None,
    expected_final_digest: bytes | None = None,
    observe: Observer | None = None,
) -> VerifyReport:
    """Verify raw blocks of heights 1, 2, ... against `genesis` (re-executing everything)."""
    state = DictState(genesis_state_writes(genesis))
    return _replay(genesis, state, 0, genesis.timestamp_ms, blocks,
                   stored_verdicts, expected_final_digest, observe)


class BadStart(Exception):
    """A state that does not agree with the chain tip it is said to follow (`reason`)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def check_tip_state(
    state: DictState,
    height: int,
    block_hash: bytes,
    digest: bytes,
    *,
    timestamp_ms: int | None = None,
    recompute: bool = True,
) -> None:
    """The one check that a whole contract state is the state after a chain tip (a trusted
    start here, a snapshot's tip in hzp2p.node.snapshot_format): its recorded chain head is
    the tip, its stored digest vector gives the tip's state digest, and (`recompute`) so
    does the digest recomputed from every pair. Raises BadStart."""
    if state.get(K_HEAD) is None:
        raise BadStart("state has no chain head")
    try:
        head = read_head(state)
    except Exception:  # a malformed head record in state from outside
        raise BadStart("malformed chain head in state") from None
    if (head.height, head.hash) != (height, block_hash) or (
        timestamp_ms is not None and head.timestamp_ms != timestamp_ms
    ):
        raise BadStart(f"the state's chain head ({head.height}) is not the tip ({height})")
    if state_digest(state) != digest:
        raise BadStart("the stored digest vector differs from the tip's state digest")
    if recompute and recompute_digest(state) != digest:
        raise BadStart("state digest recomputed from the pairs differs from the tip's")


def verify_chain_from(
    genesis: Genesis,
    start: TrustedStart,
    blocks: Iterable[bytes],
    *,
    stored_verdicts: Callable[[int], list[TxVerdict] | None] | None = None,
    expected_final_digest: bytes | None = None,
    recompute_start_digest: bool = True,
    observe: Observer | None = None,
) -> VerifyReport:
    """Verify raw blocks of heights start.height + 1, + 2, ... from `start` (re-executing
    them on a copy of its state). A starting state that disagrees with the start is
    reported as bad at `start.height`, with no block checked. `recompute_start_digest=False`
    skips the full recomputation of the starting digest from the pairs (only when the caller
    has just done it, e.g. `hzp2p.node.snapshot_format.check_snapshot`)."""
    state = DictState(dict(start.state))
    h = start.height
    try:
        check_tip_state(state, h, start.block_hash, start.state_digest,
                        timestamp_ms=start.timestamp_ms, recompute=recompute_start_digest)
    except BadStart as exc:
        return VerifyReport(
            False, 0, h, f"starting point: {exc.reason}", state_digest(state), h
        )
    return _replay(genesis, state, h, start.timestamp_ms, blocks,
                   stored_verdicts, expected_final_digest, observe)


def _replay(
    genesis: Genesis,
    state: DictState,
    start_height: int,
    prev_ts: int,
    blocks: Iterable[bytes],
    stored_verdicts: Callable[[int], list[TxVerdict] | None] | None,
    expected_final_digest: bytes | None,
    observe: Observer | None = None,
) -> VerifyReport:
    """Re-check `blocks` (heights start_height + 1, ...) on top of `state` (modified)."""
    n = 0

    def bad(height: int, reason: str) -> VerifyReport:
        return VerifyReport(False, n, height, reason, state_digest(state), start_height)

    for n_plus, raw in enumerate(blocks, start=1):
        height = start_height + n_plus
        try:
            block = decode_block(raw)
        except BlockError as e:
            return bad(height, f"undecodable: {e}")
        if block.height != height:
            return bad(height, f"stored block claims height {block.height}")
        if block.header.timestamp_ms < prev_ts:
            return bad(height, "timestamp earlier than the parent block's")
        try:
            result = execute_block(state, block, genesis)
        except BlockRejected as e:
            return bad(height, e.reason)
        if stored_verdicts is not None:
            stored = stored_verdicts(height)
            if stored is not None and list(result.verdicts) != list(stored):
                return bad(height, "stored verdicts differ from re-execution")
        state.apply(result.writes)
        if observe is not None:
            why = observe(block, result, state)
            if why is not None:
                return bad(height, why)
        prev_ts = block.header.timestamp_ms
        n = n_plus
    final = state_digest(state)
    last = start_height + n
    if expected_final_digest is not None and final != expected_final_digest:
        return VerifyReport(False, n, last, "state digest after the last block differs", final,
                            start_height)
    return VerifyReport(True, n, None, "", final, start_height)
