"""NodeStack: a node's consensus-and-ledger components, wired once, for the daemon and tests.

It owns how the applier, Raft core and driver, block producer, submit path
and read service are built from storage and a transport, the callbacks that
connect them (a block applied -> producer and waiting submitters; leadership
lost -> mempool cleared, submitters re-send; application messages -> submit
or reads), and the tasks they run. The daemon (hzp2p.node.daemon) gives it
SQLite and TCP; the simulated-network tests give it the in-memory store and
SimTransport, so both exercise exactly the same wiring.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nacl.signing
import trio

from hzp2p.client import Client
from hzp2p.contracts.engine import BlockResult
from hzp2p.contracts.members import MembershipChange
from hzp2p.ledger.block import Block
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.genesis import Genesis
from hzp2p.ledger.mempool import Mempool
from hzp2p.net.schemas import Attestations, ContentChunk, ContentRequest
from hzp2p.net.transport import Transport
from hzp2p.node.alerts import Alerts
from hzp2p.node.applier import Applier, bootstrap
from hzp2p.node.attest import AttestService
from hzp2p.node.content.service import ContentService
from hzp2p.node.content.store import ContentStore
from hzp2p.node.driver import RaftDriver, role_name
from hzp2p.node.enckeys import EncKeyStore, Rotator
from hzp2p.node.handover import Handover
from hzp2p.node.logging import NodeLogContext
from hzp2p.node.producer import BlockProducer
from hzp2p.node.reads import READ_MESSAGES, ReadService
from hzp2p.node.snapshots import DEFAULT_THRESHOLD_ENTRIES, SnapshotManager
from hzp2p.node.submit import SubmitService
from hzp2p.raft.config import RaftConfig
from hzp2p.raft.types import NodeId, Role
from hzp2p.storage import AsyncStorage, InitialState, SyncStorage


class NodeStack:
    """See the module docstring. Build, `await open(...)`, then `await nursery.start(run)`."""

    def __init__(
        self,
        *,
        node_id: NodeId,
        genesis: Genesis,
        signing_key: nacl.signing.SigningKey,
        node_key: nacl.signing.SigningKey,
        raft_config: RaftConfig,
        tick_ms: int,
        builder: BlockBuilder,
        mempool: Mempool,
        log_context: NodeLogContext | None = None,
        on_membership: Callable[[tuple[MembershipChange, ...]], None] | None = None,
        rng: random.Random | None = None,
        snapshot_threshold_entries: int = DEFAULT_THRESHOLD_ENTRIES,
        snapshot_margin_entries: int | None = None,
        early_signature_checks: bool | None = None,
        certify: bool = False,
        auto_share: bool = True,
        content_dir: Path | None = None,
        enc_keys: EncKeyStore | None = None,
    ) -> None:
        self.node_id = node_id
        self.genesis = genesis
        self.signing_key = signing_key
        self.node_key = node_key
        self.raft_config = raft_config
        self.tick_ms = tick_ms
        self.builder = builder
        self.mempool = mempool
        self.log_context = log_context
        self._on_membership = on_membership
        self.rng = rng or random.Random()
        self.snapshot_threshold = snapshot_threshold_entries
        self.snapshot_margin = snapshot_margin_entries
        self.early_signature_checks = early_signature_checks  # None: the driver's default
        self.certify = certify  # voters attest blocks, the leader carries certificates
        # (the daemon passes `[ledger] certify`, default true; off by default here so the
        # simulated-network tests of other concerns keep their exact block sequences)
        self.attest: AttestService | None = None
        self.auto_share = auto_share
        self.content_dir = content_dir  # data-set content store (None: no content service)
        self.content: ContentService | None = None
        # the institution's encryption keys (the daemon's is on disk; else in memory)
        self.enc_keys = enc_keys if enc_keys is not None else EncKeyStore(signing_key)

    # Built by `open`:
    storage: AsyncStorage
    applier: Applier
    driver: RaftDriver
    transport: Transport
    producer: BlockProducer
    submit: SubmitService
    reads: ReadService
    handover: Handover
    rotator: Rotator
    alerts: Alerts
    snapshots: SnapshotManager
    initial: InitialState

    async def open(
        self, storage: AsyncStorage, make_transport: Callable[[], Awaitable[Transport]]
    ) -> InitialState:
        """Store the genesis on a fresh database, load everything, build the components."""
        g = self.genesis
        self.storage = storage
        await bootstrap(storage, g)
        init = await storage.load()
        self.applier = Applier(
            storage, g, on_block=self._block_applied, on_membership=self._membership
        )
        self.snapshots = SnapshotManager(
            storage, g, self.applier, self.raft_config, self.rng,
            threshold_entries=self.snapshot_threshold, margin_entries=self.snapshot_margin,
            on_installed=self._snapshot_installed,
        )
        init = self.initial = await self.snapshots.recover(init)
        await self.applier.load()
        core = await self.snapshots.build_core()
        self.transport = await make_transport()
        self.driver = RaftDriver(
            core,
            storage,
            self.transport,
            self.applier,
            tick_ms=self.tick_ms,
            log_context=self.log_context,
            on_app_message=self._app_message,
            on_role_change=self._role_changed,
            snapshots=self.snapshots,
            preverify=self.early_signature_checks,
        )
        if self.log_context is not None:
            self.log_context.update(term=core.term, role=role_name(core.role))
        if self.certify:
            self.attest = AttestService(
                node_id=self.node_id, signing_key=self.signing_key, genesis=g, storage=storage,
                driver=self.driver, transport=self.transport,
            )
            await self.attest.load()
        self.producer = BlockProducer(
            self.driver, self.applier, self.mempool, self.builder, self.node_key, self.node_id,
            certs=self.attest,
        )
        if self.attest is not None:
            self.attest.on_ready = self.producer.certs_ready
        self.submit = SubmitService(
            node_id=self.node_id,
            signing_key=self.signing_key,
            chain_id=g.chain_id,
            storage=storage,
            driver=self.driver,
            applier=self.applier,
            transport=self.transport,
            mempool=self.mempool,
            producer=self.producer,
        )
        self.reads = ReadService(self.node_id, self.driver, self.applier, self.transport)
        self.handover = Handover(
            self.node_id, Client(self.signing_key, g.chain_id, self.node_id), storage,
            self.submit.submit, enabled=self.auto_share, keys=self.enc_keys,
            head=lambda: self.applier.head.height,
        )
        if self.content_dir is not None:
            self.content = ContentService(ContentStore(self.content_dir), self.transport,
                                          self._may_serve)
        self.rotator = Rotator(self.node_id, lambda: self.handover.client, self.enc_keys, storage,
                               self.submit.submit, self.submit.submit_many)
        self.alerts = Alerts(storage, self.applier, self.handover)
        return init

    async def _may_serve(self, dataset_id: str, version: int, content_hash: bytes,
                         node: int) -> str | None:
        """An honest node's check before handing content to `node` (hzp2p.contracts.datasets:
        a current key and a logged data.fetch, judged at this node's clock)."""
        from hzp2p.contracts import datasets

        now_ms = int(time.time() * 1000)

        def check(s: SyncStorage) -> str | None:
            rec = datasets.dataset(s, dataset_id, version)
            if rec is not None and bytes(rec["content_hash"]) != content_hash:
                return "content hash is not that data set version's"
            return datasets.may_serve(s, dataset_id, version, node, now_ms)

        why: str | None = await self.storage.call(check)
        return why

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The transport first (started), then every loop; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.transport.run)
            nursery.start_soon(self.driver.ready_loop)
            nursery.start_soon(self.driver.inbound_loop)
            nursery.start_soon(self.driver.tick_loop)
            nursery.start_soon(self.producer.run)
            nursery.start_soon(self.submit.admission_loop)
            nursery.start_soon(self.reads.serve_loop)
            if self.attest is not None:
                nursery.start_soon(self.attest.run)
            nursery.start_soon(self.handover.run)
            if self.content is not None:
                await nursery.start(self.content.run)
            nursery.start_soon(self.alerts.run)
            task_status.started()

    # ---------------------------------------------------------------- callbacks
    def _app_message(self, sender: NodeId, msg: object) -> None:
        if isinstance(msg, READ_MESSAGES):
            self.reads.on_message(sender, msg)
        elif isinstance(msg, ContentRequest | ContentChunk):
            if self.content is not None:
                self.content.on_message(sender, msg)
        elif isinstance(msg, Attestations):
            if self.attest is not None:
                self.attest.on_message(sender, msg)
        else:
            self.submit.on_message(sender, msg)

    def _role_changed(self, role: Role, leader: NodeId) -> None:
        if role is not Role.LEADER:
            self.producer.leadership_lost()
        self.submit.kick_all()
        if self.attest is not None:
            self.attest.leader_changed()

    def _block_applied(self, block: Block, result: BlockResult) -> None:
        self.producer.block_applied(block)
        self.submit.block_applied(block, result)
        if self.attest is not None:
            self.attest.block_applied(block, result)
        if isinstance(result, BlockResult) and len(result.verdicts) == len(block.txs):
            self.handover.block_applied(block, [v.applied for v in result.verdicts])

    def _snapshot_installed(self) -> None:
        self.submit.kick_all()  # waiting submitters look again (their blocks were skipped)
        if self.attest is not None:
            self.attest.reload()
        self._membership(())  # members (and their node keys) may have changed

    def _membership(self, changes: tuple[MembershipChange, ...]) -> None:
        if self._on_membership is not None:
            self._on_membership(changes)
