"""The ledger on the simulator: signed transactions in, real blocks built and executed.

Owns what a Raft entry means in `hzp2p sim`'s deterministic engine. A client's
proposal carries a batch of signed transactions (the workload's mix, signed by
the founding institutions that hold the needed role); every node's
`LedgerStateMachine` turns the entry into a real block (height, parent hash,
state digest, Merkle root, signed by the block signer) and executes it with the
real contract engine (`execute_block`), which verifies every Ed25519 signature
on every node. What is shared between nodes, in one `LedgerWorld`, is only what
a pure function would compute identically anyway: decoded transactions and
built blocks are memoised by their inputs, and transactions are signed once
per (type, number) and cached across runs of the same process (a sweep).

The world also checks the ledger-level safety properties as entries apply:
no two nodes commit different blocks at one log index ("divergent committed
blocks") and no transaction is applied in two different blocks ("tx applied
twice"). A session table (client, seq) -> first index makes retried proposals
duplicates, exactly as in the KV model (hzp2p.sim.statemachine).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from hzp2p.contracts.engine import (
    BlockResult,
    execute_block,
    genesis_state_writes,
    load_contracts,
    read_head,
    state_digest,
)
from hzp2p.contracts.registry import PAYLOAD_GENERATORS, PAYLOAD_ROLES
from hzp2p.contracts.state import DictState
from hzp2p.ledger.block import Block
from hzp2p.ledger.genesis import make_local_genesis
from hzp2p.ledger.tx import Transaction, decode_tx
from hzp2p.raft.types import Entry, EntryKind
from hzp2p.sim.checkers import Violation
from hzp2p.sim.statemachine import ApplyOutcome

_MAGIC = b"lg1:"
_HDR = struct.Struct(">IIH")  # client id, seq, attempt
_LEN = struct.Struct(">I")
DAY_MS = 24 * 3600 * 1000
BLOCK_SIGNER = 1
"""The founding authority whose node key signs simulated blocks (every node builds the
same block for an entry, so the signer must not depend on who applies it)."""
GENESIS_SEED = 1
"""Keys are derived from this, not the scenario seed, so signed txs cache across runs."""

_TX_CACHE: dict[tuple[int, int, str, int], Transaction] = {}
"""(voters, learners, type, i) -> signed tx; bounded by MAX_TX_CACHE."""
MAX_TX_CACHE = 400_000
MAX_RESULTS = 50_000
"""Bound on memoised block executions (oldest evicted first)."""


class ScenarioWorkloadError(ValueError):
    """The workload's mix needs a role no node in the cluster holds."""


def encode_batch(client_id: int, seq: int, attempt: int, txs: Sequence[bytes]) -> bytes:
    parts = [_MAGIC, _HDR.pack(client_id, seq, attempt)]
    for raw in txs:
        parts.append(_LEN.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def decode_batch(data: bytes) -> tuple[int, int, int, list[bytes]] | None:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _HDR.size:
        return None
    client_id, seq, attempt = _HDR.unpack_from(data, len(_MAGIC))
    pos, txs = len(_MAGIC) + _HDR.size, []
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        txs.append(data[pos : pos + n])
        pos += n
    return client_id, seq, attempt, txs


class LedgerWorld:
    """Genesis, signers, memo tables and the cross-node ledger checks of one run."""

    def __init__(
        self, voters: int, learners: int, mix: Sequence[tuple[str, float]], memo: bool = True
    ) -> None:
        load_contracts()
        self.voters, self.learners = voters, learners
        self.genesis, self.secrets = make_local_genesis(voters, learners, seed=GENESIS_SEED)
        self.genesis_writes = genesis_state_writes(self.genesis)
        self.block_key = self.secrets[BLOCK_SIGNER].node_key()
        self.mix_types = [t for t, _ in mix]
        self.mix_weights = [w for _, w in mix]
        self.signers: dict[str, list[int]] = {}
        for tx_type in self.mix_types:
            roles = PAYLOAD_ROLES.get(tx_type, ())
            ids = [
                i.inst_id
                for i in self.genesis.institutions
                if not roles or any(r in i.roles for r in roles)
            ]
            if not ids:
                raise ScenarioWorkloadError(
                    f"workload.mix: {tx_type} needs a member with role {'/'.join(roles)}; "
                    f"a cluster of {voters + learners} nodes has none"
                )
            self.signers[tx_type] = ids
        self._counter: dict[str, int] = {}
        self._decoded: dict[bytes, Transaction] = {}
        self._blocks: dict[tuple[bytes, bytes, int], Block] = {}
        self.block_at: dict[int, bytes] = {}  # log index -> block hash committed there
        self.digest_at: dict[int, bytes] = {}  # log index -> ledger state digest after it
        self.tx_block: dict[bytes, int] = {}  # tx hash -> log index of the block applying it
        self.skip: tuple[int, int] | None = None  # (sm instance number, log index): planted bug
        self.memo = memo
        self._results: dict[tuple[bytes, bytes], BlockResult] = {}
        self.executed = 0  # blocks really executed (the others reused an identical execution)
        self.applied = 0
        self._instances = 0

    # --- the workload's transactions ---------------------------------------------------

    def next_tx(self, tx_type: str) -> bytes:
        i = self._counter.get(tx_type, 0)
        self._counter[tx_type] = i + 1
        key = (self.voters, self.learners, tx_type, i)
        tx = _TX_CACHE.get(key)
        if tx is None:
            signers = self.signers[tx_type]
            signer = signers[i % len(signers)]
            tx = Transaction.create(
                self.secrets[signer].signing_key(),
                self.genesis.chain_id,
                tx_type,
                PAYLOAD_GENERATORS[tx_type](i),
                nonce=i + 1,
                valid_from_ms=0,
                valid_until_ms=DAY_MS,
            )
            if len(_TX_CACHE) < MAX_TX_CACHE:
                _TX_CACHE[key] = tx
        return tx.encode()

    def decode(self, raw: bytes) -> Transaction:
        tx = self._decoded.get(raw)
        if tx is None:
            tx = decode_tx(raw)
            self._decoded[raw] = tx
        return tx

    def block(self, state: DictState, index: int, txs: list[Transaction], key: bytes) -> Block:
        """The block an entry becomes on top of `state` (memoised: a pure function)."""
        head = read_head(state)
        memo = (head.hash, key, index)
        b = self._blocks.get(memo)
        if b is None:
            b = Block.create(
                self.block_key,
                height=head.height + 1,
                prev_hash=head.hash,
                state_digest=state_digest(state),
                proposer=BLOCK_SIGNER,
                timestamp_ms=self.genesis.timestamp_ms + 1000 + index,
                txs=txs,
            )
            self._blocks[memo] = b
        return b

    def execute(self, state: DictState, block: Block) -> BlockResult:
        """execute_block, memoised by (state digest before, block hash) when `memo` is on.

        The state digest commits to the whole state, so an equal key means equal inputs to
        a pure function: the first node really executes (every signature verified, every
        contract run), later nodes in this process reuse the result. Off (`memo=False`):
        every node executes every block.
        """
        self.applied += 1
        if not self.memo:
            self.executed += 1
            return execute_block(state, block, self.genesis)
        key = (state_digest(state), block.hash)
        res = self._results.get(key)
        if res is None:
            res = execute_block(state, block, self.genesis)
            self.executed += 1
            if len(self._results) >= MAX_RESULTS:
                del self._results[next(iter(self._results))]
            self._results[key] = res
        return res

    # --- state machines ----------------------------------------------------------------

    def new_sm(self) -> LedgerStateMachine:
        self._instances += 1
        return LedgerStateMachine(self, self._instances)

    def on_block(self, index: int, block: Block, digest: bytes, applied: Sequence[bytes]) -> None:
        seen = self.block_at.get(index)
        if seen is None:
            self.block_at[index] = block.hash
            self.digest_at[index] = digest
        elif seen != block.hash:
            raise Violation(
                "divergent committed blocks",
                f"log index {index} became block {block.hash.hex()[:16]} (height "
                f"{block.header.height}) on one node but {seen.hex()[:16]} on another",
            )
        for h in applied:
            first = self.tx_block.setdefault(h, index)
            if first != index:
                raise Violation(
                    "tx applied twice",
                    f"tx {h.hex()[:16]} applied in the blocks of log indexes {first} and {index}",
                )


class LedgerStateMachine:
    """One node's ledger state: genesis state, the real engine, and a client session table."""

    def __init__(self, world: LedgerWorld, instance: int) -> None:
        self.world = world
        self.instance = instance
        self.state = DictState(world.genesis_writes)
        self.sessions: dict[int, dict[int, int]] = {}
        self.blocks = 0
        self.txs_applied = 0

    def apply(self, entry: Entry) -> ApplyOutcome | None:
        if entry.kind != EntryKind.NORMAL:
            return None
        req = decode_batch(entry.data)
        if req is None:
            return None
        client_id, seq, _attempt, raws = req
        session = self.sessions.setdefault(client_id, {})
        first = session.get(seq)
        if first is not None:
            return ApplyOutcome((client_id, seq), first, duplicate=True)
        session[seq] = entry.index
        skip = self.world.skip
        if skip is not None and skip[0] == self.instance and entry.index >= skip[1]:
            self.world.skip = None  # planted bug: this node skips one block
            return ApplyOutcome((client_id, seq), entry.index, duplicate=False)
        world = self.world
        txs = [world.decode(r) for r in raws]
        key = hashlib.blake2b(entry.data[len(_MAGIC) + _HDR.size :], digest_size=16).digest()
        block = world.block(self.state, entry.index, txs, key)
        result = world.execute(self.state, block)
        self.state.apply(result.writes)
        self.blocks += 1
        applied = [v.tx_hash for v in result.verdicts if v.applied]
        self.txs_applied += len(applied)
        world.on_block(entry.index, block, state_digest(self.state), applied)
        return ApplyOutcome((client_id, seq), entry.index, duplicate=False)

    def snapshot(self) -> bytes:
        parts = [struct.pack(">I", len(self.sessions))]
        for c, table in sorted(self.sessions.items()):
            parts.append(struct.pack(">II", c, len(table)))
            parts.extend(struct.pack(">IQ", s, i) for s, i in sorted(table.items()))
        parts.append(struct.pack(">I", len(self.state.data)))
        for k, v in sorted(self.state.data.items()):
            parts.append(_LEN.pack(len(k)) + k + _LEN.pack(len(v)) + v)
        return b"".join(parts)

    def restore(self, data: bytes) -> None:
        if not data:
            self.__init__(self.world, self.instance)  # type: ignore[misc]
            return
        pos = 0
        (nc,) = struct.unpack_from(">I", data, pos)
        pos += 4
        sessions: dict[int, dict[int, int]] = {}
        for _ in range(nc):
            c, n = struct.unpack_from(">II", data, pos)
            pos += 8
            table = sessions.setdefault(c, {})
            for _ in range(n):
                s, i = struct.unpack_from(">IQ", data, pos)
                pos += 12
                table[s] = i
        (nk,) = struct.unpack_from(">I", data, pos)
        pos += 4
        kv: dict[bytes, bytes] = {}
        for _ in range(nk):
            (kl,) = _LEN.unpack_from(data, pos)
            k = data[pos + 4 : pos + 4 + kl]
            pos += 4 + kl
            (vl,) = _LEN.unpack_from(data, pos)
            kv[k] = data[pos + 4 : pos + 4 + vl]
            pos += 4 + vl
        self.sessions = sessions
        self.state = DictState(kv)

    def digest(self) -> str:
        return state_digest(self.state).hex()[:16]
