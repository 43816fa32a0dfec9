"""`hzp2p run`: the daemon. Wires storage, the Raft driver, transport, ledger and admin socket.

It owns start-up (config, keys, genesis, database; the genesis stored as block
0 on a fresh database; the Raft core rebuilt from disk on a restart), the one
Trio nursery every task runs in, and shutdown: SIGINT or SIGTERM stops the
admin server and the transport, lets the Ready in hand finish (the driver
shields it), and closes the database.

Tasks in the nursery: the NodeStack (hzp2p.node.stack: TCP transport with
discovery, the driver's tick, inbound and ready loops, the leader's block
producer, the admission queue, forwarded reads), the membership loop (keeps the transport's member list and the Raft
configuration in step with committed governance), the admin server
(hzp2p.node.handlers) and, if configured, the /metrics HTTP endpoint.
"""

from __future__ import annotations

import gc
import signal
from collections.abc import Mapping

import nacl.signing
import structlog
import trio

from hzp2p.admin.server import AdminServer
from hzp2p.config import ConfigError, NodeConfig, parse_host_port
from hzp2p.contracts import members as members_contract
from hzp2p.contracts.engine import ContractsMissing, load_contracts
from hzp2p.ledger.builder import BlockBuilder
from hzp2p.ledger.genesis import GenesisError, load_genesis
from hzp2p.ledger.mempool import Mempool, MempoolLimits
from hzp2p.net.discovery import Address
from hzp2p.net.handshake import ChainParams
from hzp2p.net.schemas import default_registry
from hzp2p.net.tcp import TcpConfig, TcpTransport
from hzp2p.net.transport import NodeIdentity
from hzp2p.node import opaque, rotation
from hzp2p.node.applier import Applier
from hzp2p.node.content.metrics import register_metrics as register_content_metrics
from hzp2p.node.driver import RaftDriver, role_name
from hzp2p.node.enckeys import STORE_DIR as ENC_KEY_DIR
from hzp2p.node.enckeys import EncKeyStore
from hzp2p.node.handlers import Handlers
from hzp2p.node.keys import KeyFileError
from hzp2p.node.logging import NodeLogContext, configure_logging
from hzp2p.node.membership import ChainMembership, genesis_conf, next_conf_change
from hzp2p.node.metrics import NodeMetrics, serve_metrics_http
from hzp2p.node.producer import BlockProducer
from hzp2p.node.reads import ReadService
from hzp2p.node.rotation import KeyRing
from hzp2p.node.snapshots import register_metrics as register_snapshot_metrics
from hzp2p.node.stack import NodeStack
from hzp2p.node.submit import SubmitService
from hzp2p.raft.errors import RaftError
from hzp2p.raft.types import NodeId
from hzp2p.storage import AsyncStorage, OpenOptions

log = structlog.get_logger("hzp2p.node")

MEMBERSHIP_POLL_S = 0.5


def _hints(addresses: Mapping[NodeId, str], me: NodeId) -> tuple[tuple[NodeId, Address], ...]:
    out = []
    for nid, text in sorted(addresses.items()):
        if nid == me:
            continue
        try:
            hp = parse_host_port(text)
        except ValueError:
            continue
        out.append((nid, (hp.host, hp.port)))
    return tuple(out)


class Node:
    """One running daemon (built by `open_node`, run by `run`)."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.node_id = cfg.node_id
        try:  # with any keys waiting for or replaced by a rotation (hzp2p.node.rotation)
            self.keys = KeyRing.load(cfg.signing_key, cfg.node_key)
            self.signing_key: nacl.signing.SigningKey = self.keys.signing
            self.node_key: nacl.signing.SigningKey = self.keys.node
        except KeyFileError as exc:
            raise ConfigError(cfg.path, "signing_key/node_key", str(exc)) from None
        try:
            self.genesis = load_genesis(cfg.genesis)
        except GenesisError as exc:
            raise ConfigError(cfg.path, "genesis", f"{cfg.genesis}: {exc}") from None
        except OSError as exc:
            raise ConfigError(cfg.path, "genesis", f"{cfg.genesis}: {exc.strerror}") from None
        try:  # every contract the chain needs, explicitly, before anything else
            load_contracts(self.genesis)
        except ContractsMissing as exc:
            raise ConfigError(cfg.path, "genesis", f"{cfg.genesis}: {exc}") from None
        inst = next((i for i in self.genesis.institutions if i.inst_id == cfg.node_id), None)
        if inst is not None and self.keys.get(inst.node_key) is None:
            raise ConfigError(
                cfg.path, "node_key", f"does not match node {cfg.node_id}'s node_key in the genesis"
            )
        self.log_context = NodeLogContext(node_id=cfg.node_id)
        self.metrics = NodeMetrics()
        self.membership = ChainMembership(self.genesis)
        self.mempool = Mempool(
            MempoolLimits(
                max_bytes=cfg.ledger.mempool_max_bytes,
                max_per_sender=cfg.ledger.mempool_max_per_sender,
            )
        )
        self._membership_dirty = True
        self._membership_kick = trio.Event()
        self._counted = {"committed": 0, "rejected": 0, "elections": 0, "refused": 0}
        self._admin_refusals_counted: dict[str, int] = {}
        self.admin: AdminServer | None = None

    # The components below exist once `run` has opened the database.
    storage: AsyncStorage
    applier: Applier
    driver: RaftDriver
    transport: TcpTransport
    producer: BlockProducer
    submit: SubmitService
    reads: ReadService
    stack: NodeStack

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        g = self.genesis
        self.storage = await AsyncStorage.open_sqlite(
            str(cfg.db_path), g.chain_id.encode(), g.hash,
            # a [gateway] reads committed state as a WAL reader: the file must be shared
            OpenOptions(exclusive=cfg.gateway is None),
        )
        try:
            await self._sync_keys()
            await self._run(task_status)
        finally:
            with trio.CancelScope(shield=True):
                await self.storage.aclose()
                log.info("stopped", applied_index=self.applier.applied_index
                         if hasattr(self, "applier") else None, **self._apply_stats())

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        cfg, g = self.cfg, self.genesis
        block_bytes = cfg.block_bytes()
        stack = self.stack = NodeStack(
            node_id=cfg.node_id,
            genesis=g,
            signing_key=self.signing_key,
            node_key=self.node_key,
            raft_config=cfg.raft_config(),
            tick_ms=cfg.raft.tick_ms,
            builder=BlockBuilder(cfg.ledger.block_max_txs, max(block_bytes, 1024),
                                 cfg.ledger.block_interval_ms),
            mempool=self.mempool,
            log_context=self.log_context,
            on_membership=self._membership_changed,
            snapshot_threshold_entries=cfg.raft.snapshot_threshold_entries,
            early_signature_checks=cfg.ledger.early_signature_checks,
            certify=cfg.ledger.certify,
            auto_share=cfg.ledger.auto_share,
            content_dir=cfg.data_dir / "content",
            enc_keys=self._open_enc_keys(),
        )
        init = await stack.open(self.storage, self._make_transport)
        rotation.wire(self.keys, stack)
        await self._sync_keys()  # a rotation of ours among the blocks opening just applied
        self.applier, self.driver = stack.applier, stack.driver
        self.producer, self.submit, self.reads = stack.producer, stack.submit, stack.reads
        self.metrics.registry.add_collect_hook(self._collect_metrics)
        register_snapshot_metrics(self.metrics.registry, stack.snapshots)
        if stack.content is not None:
            register_content_metrics(self.metrics.registry, stack.content)
        stack.alerts.register(self.metrics.registry)
        admin = self.admin = AdminServer(
            cfg.admin.socket, max_request_bytes=cfg.admin.max_request_bytes
        )
        Handlers(self).register_all(admin)
        if opaque.enabled():
            driver = self.driver
            opaque.register(
                admin,
                propose_many=lambda entries: driver.core.propose_many(entries),
                wake=driver.wake,
                wait_applied=self.applier.wait_applied,
                max_uncommitted_bytes=cfg.raft.max_uncommitted_bytes,
            )
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(stack.run)
                nursery.start_soon(self._membership_loop)
                if cfg.metrics.http is not None:
                    await nursery.start(
                        serve_metrics_http, self.metrics.registry, cfg.metrics.http.host,
                        cfg.metrics.http.port,
                    )
                await nursery.start(admin.serve)
                log.info(
                    "started",
                    listen=str(cfg.listen),
                    admin_socket=str(cfg.admin.socket),
                    applied_index=self.applier.applied_index,
                    height=self.applier.head.height,
                    last_index=init.last_index,
                    voters=sorted(init.conf_state.voters),
                    learners=sorted(init.conf_state.learners),
                )
                task_status.started()
                async for signum in signals:
                    log.info("shutdown", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    def _apply_stats(self) -> dict[str, int]:
        """How the asynchronous apply went (hzp2p.node.driver, preverify), for the stop log."""
        if not hasattr(self, "driver"):
            return {}
        d, pre = self.driver, self.driver.preverifier
        out = {"apply_full_waits": d.apply_full_waits, "apply_drain_waits": d.apply_drain_waits,
               "batched_applies": self.applier.batched_applies}
        if pre is not None:
            out.update(preverify_submitted=pre.submitted, preverify_in_time=pre.checked_in_time,
                       preverify_cut_short=pre.cut_short, preverify_skipped=pre.skipped)
        return out

    def _open_enc_keys(self) -> EncKeyStore:
        """The institution's encryption keys, in the data directory (hzp2p.node.enckeys)."""
        try:
            store = EncKeyStore.open(self.signing_key, self.cfg.data_dir / ENC_KEY_DIR)
            old = self.keys.old_signing()  # the key before a rotation, if its file is there
            if old is not None:
                store.retire(old)
            return store
        except KeyFileError as exc:
            raise ConfigError(self.cfg.path, "data_dir", f"encryption key store: {exc}") from None

    async def _make_transport(self) -> TcpTransport:
        cfg, g, net = self.cfg, self.genesis, self.cfg.net
        await self.membership.refresh(self.storage)
        self.transport = TcpTransport(
            NodeIdentity(cfg.node_id, self.node_key),
            ChainParams(g.chain_id, g.hash),
            self.membership,
            TcpConfig(
                listen_host=cfg.listen.host,
                listen_port=cfg.listen.port,
                advertise_host=cfg.advertise_address.host,
                seeds=tuple((s.host, s.port) for s in cfg.seeds),
                peer_hints=_hints(self.membership.addresses(), cfg.node_id),
                peer_overrides=tuple((n, (hp.host, hp.port)) for n, hp in net.peer_addresses),
                max_frame_bytes=net.max_frame_bytes,
                max_batch_bytes=min(1 << 20, net.max_frame_bytes // 2),
                handshake_timeout_s=net.handshake_timeout_s,
                keepalive_interval_s=net.keepalive_s,
                read_timeout_s=net.read_timeout_s,
                send_queue_max_msgs=max(net.send_queue_len, 64),
            ),
            registry=default_registry(),
        )
        return self.transport

    async def _sync_keys(self) -> None:
        """Use the keys the committed state names for this institution (a rotation applied
        while the daemon was down, or interrupted while moving the key files)."""
        me = self.node_id
        inst = await self.storage.call(lambda s: members_contract.get_institution(s, me))
        if inst is None:
            return
        try:
            if self.keys.sync_with_state(inst.signing_key, inst.node_key):
                self.signing_key, self.node_key = self.keys.signing, self.keys.node
                if hasattr(self, "stack"):
                    self._hand_out_keys()
        except KeyFileError as exc:
            raise ConfigError(self.cfg.path, "signing_key/node_key", str(exc)) from None

    def _hand_out_keys(self) -> None:
        self.signing_key, self.node_key = self.keys.signing, self.keys.node
        rotation.hand_out(self.keys, self.node_id, self.genesis.chain_id, self.stack,
                          self.transport)

    # ---------------------------------------------------------------- callbacks
    def _membership_changed(self, changes: object) -> None:
        self._membership_dirty = True
        self._membership_kick.set()
        if hasattr(self, "producer") and isinstance(changes, tuple):  # a key rotation of ours
            if self.keys.on_changes(self.node_id, changes):
                self._hand_out_keys()
            else:
                rotation.missing_rotation(self.keys, self.node_id, changes, self.stack)

    async def _membership_loop(self) -> None:
        while True:
            with trio.move_on_after(MEMBERSHIP_POLL_S):
                await self._membership_kick.wait()
            self._membership_kick = trio.Event()
            if self._membership_dirty:
                self._membership_dirty = False
                if await self.membership.refresh(self.storage):
                    self.transport.membership_changed()
                    log.info("membership_refreshed", members=sorted(self.membership.members()))
                try:  # a rotation of ours the block callback missed (a snapshot installed)
                    await self._sync_keys()
                except ConfigError as exc:
                    log.warning("rotated_keys_missing", reason=str(exc))
            if self.driver.idle_leader():
                await self._reconcile_conf()

    async def _reconcile_conf(self) -> None:
        """Leader: turn the next committed governance change not yet in the Raft config into a
        ConfChange (one at a time; the core refuses a second while one is pending)."""
        changes = await self.storage.call(lambda s: members_contract.membership_log(s))
        if not changes:
            return
        conf = self.driver.core.conf
        change = next_conf_change(genesis_conf(self.genesis), changes, conf)
        if change is None:
            return
        what, target = change.kind.name.lower(), change.node_id
        try:
            self.driver.core.propose_conf_change(change)
            self.driver.wake()
            log.info("conf_change_proposed", change=what, target=target)
        except (RaftError, ValueError) as exc:
            log.info("conf_change_deferred", change=what, target=target, reason=str(exc))

    def _collect_metrics(self) -> None:
        m, core = self.metrics, self.driver.core
        st = core.status()
        m.term.set(st.term)
        m.set_role(role_name(st.role))
        m.commit_index.set(st.commit)
        m.applied_index.set(self.applier.applied_index)
        m.height.set(self.applier.head.height)
        m.mempool_txs.set(len(self.mempool))
        m.mempool_bytes.set(self.mempool.total_bytes)
        m.peers_connected.set(len(self.transport.connected_peers()))
        stats = core.stats()
        net = self.transport.statistics()
        now = {
            "committed": self.applier.txs_committed,
            "rejected": self.applier.txs_rejected + self.submit.refused_at_admission,
            "elections": stats.campaigns,
            "refused": net.frames_refused + net.handshakes_refused,
        }
        for key, metric in (("committed", m.txs_committed), ("rejected", m.txs_rejected),
                            ("elections", m.elections)):
            delta = now[key] - self._counted[key]
            if delta > 0:
                metric.inc(delta)
        delta = now["refused"] - self._counted["refused"]
        if delta > 0:
            m.frames_refused.labels(reason="transport").inc(delta)
        self._counted = now
        if self.admin is not None:  # the admin socket's fairness refusals (hzp2p.admin.server)
            for reason, count in self.admin.statistics().refusals.items():
                delta = count - self._admin_refusals_counted.get(reason, 0)
                if delta > 0:
                    m.admin_refusals.labels(reason=reason).inc(delta)
                    self._admin_refusals_counted[reason] = count


GC_THRESHOLDS = (20_000, 20, 50)
"""The daemon process's garbage-collector thresholds (Python's defaults: 700, 10, 10).

The replication path allocates a few container objects per Raft entry (the entry, the
lists and tuples around it, decoded messages), so at 100k+ entries/s the defaults ran a
collection every few milliseconds, and the older generations' runs walked the retained
log each time: in py-spy ~15-18 % of a node's busy samples were collections triggered
on the hot path. Almost nothing the daemon allocates is cyclic garbage (reference counts
free it), so collecting far less often costs little memory. Measured on the side-by-side
benchmark (3 nodes, 20,000 entries, alternating runs): 139k-146k entries/s with the
defaults, 185k with these, peak memory per node unchanged within noise (docs/benchmarks.md).
"""


def run_node(cfg: NodeConfig) -> int:
    """Run the daemon in the foreground until SIGINT/SIGTERM; returns the exit status."""
    node = Node(cfg)  # ConfigError propagates (exit 2)
    gc.set_threshold(*GC_THRESHOLDS)  # process-wide: only here, never in Node (tests share it)
    configure_logging(level=cfg.log.level, fmt=cfg.log.format, context=node.log_context)
    log.info("starting", config=str(cfg.path), data_dir=str(cfg.data_dir))
    trio.run(_run_frozen, node)
    return 0


async def _run_frozen(node: Node) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        # What start-up built (modules, contracts, genesis, caches) lives as long as the
        # process: move it out of the collector's sight so no full collection walks it.
        gc.freeze()
