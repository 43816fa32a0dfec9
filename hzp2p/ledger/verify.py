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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hzp2p.contracts.engine import (
    BlockRejected,
    TxVerdict,
    execute_block,
    genesis_state_writes,
    state_digest,
)
from hzp2p.contracts.state import DictState
from hzp2p.ledger.block import BlockError, decode_block
from hzp2p.ledger.genesis import Genesis


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    blocks_checked: int  # blocks that passed every check
    bad_height: int | None  # the first bad block
    reason: str
    final_digest: bytes  # state digest after the last good block

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "blocks_checked": self.blocks_checked,
            "bad_height": self.bad_height,
            "reason": self.reason,
            "final_digest": self.final_digest.hex(),
        }


def verify_chain(
    genesis: Genesis,
    blocks: Iterable[bytes],
    *,
    stored_verdicts: Callable[[int], list[TxVerdict] | None] | None = None,
    expected_final_digest: bytes | None = None,
) -> VerifyReport:
    """Verify raw blocks of heights 1, 2, ... against `genesis` (re-executing everything)."""
    state = DictState(genesis_state_writes(genesis))
    prev_ts = genesis.timestamp_ms
    n = 0

    def bad(height: int, reason: str) -> VerifyReport:
        return VerifyReport(False, n, height, reason, state_digest(state))

    for n_plus, raw in enumerate(blocks, start=1):
        height = n_plus
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
        prev_ts = block.header.timestamp_ms
        n = n_plus
    final = state_digest(state)
    if expected_final_digest is not None and final != expected_final_digest:
        return VerifyReport(False, n, n, "state digest after the last block differs", final)
    return VerifyReport(True, n, None, "", final)
