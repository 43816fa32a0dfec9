"""The node config's schema: one declared section per TOML table, written once.

Each field's annotation is its type, its bounds and its documentation; its
default is the Struct default. From these the reader checks a file
(hzp2p.config.reader), and hzp2p.config.reference writes the reference tables
of docs/operations.md (tests/node/test_config_reference.py keeps them equal).
The Raft core's tunables take their defaults from hzp2p.raft.config.RaftConfig,
and `NodeConfig.raft_config()` hands every [raft] field the core knows to it by
name: a Raft setting is declared here once and nowhere else in this package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from hzp2p.config.reader import MAX_FINITE, Context, Problem, Section
from hzp2p.config.reader import show as _show
from hzp2p.ledger.block import MAX_BLOCK_BYTES
from hzp2p.ledger.builder import MIN_BLOCK_BYTES
from hzp2p.ledger.tx import MAX_TX_BYTES
from hzp2p.raft.config import RaftConfig

MAX_UNIX_SOCKET_PATH_BYTES = 107
DEFAULT_ADMIN_MAX_REQUEST_BYTES = 1 << 20
MAX_NODE_ID = (1 << 63) - 1
BLOCK_MSG_HEADROOM_BYTES = 4096
"""Room the daemon leaves in a Raft entry beside a block (hzp2p.node.daemon's constant of the
same name, which it caps blocks with: min(block_max_bytes, max_bytes_per_msg - this))."""
DB_FILE = "node.db"
"""The node database's file name inside data_dir."""
_CORE = RaftConfig(node_id=1)
"""The Raft core's defaults."""


@dataclasses.dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str) -> HostPort:
    """'host:port' or '[v6]:port' -> HostPort; ValueError says what is wrong."""
    if not isinstance(text, str) or not text:
        raise ValueError("must be a non-empty 'host:port' string")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not '[ipv6]:port'")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} has no ':port'")
        if ":" in host:
            raise ValueError(f"{text!r}: write IPv6 hosts as '[addr]:port'")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text!r} has an empty or invalid host")
    if not port_text.isdigit():
        raise ValueError(f"{text!r} has a non-numeric port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port must be in 1..65535")
    return HostPort(host, port)


# --- parsers of values that need more than a type --------------------------------------------


def _path(value: Any, ctx: Context) -> Path:
    if not isinstance(value, str) or not value:
        raise Problem(f"must be a non-empty path string, got {_show(value)}")
    if "\x00" in value:
        raise Problem("must not contain NUL characters")
    return (ctx.file.parent / Path(value).expanduser()).resolve()


def _host_port(value: Any, ctx: Context | None = None, at: str = "") -> HostPort:
    if not isinstance(value, str):
        raise Problem(f"must be a 'host:port' string, got {_show(value)}", at)
    try:
        return parse_host_port(value)
    except ValueError as exc:
        raise Problem(str(exc), at) from None


def _host_ports(value: Any, ctx: Context) -> tuple[HostPort, ...]:
    if not isinstance(value, list):
        raise Problem(f"must be a list of 'host:port' strings, got {_show(value)}")
    return tuple(_host_port(v, at=f"[{i}]") for i, v in enumerate(value))


def _peer_addresses(value: Any, ctx: Context) -> tuple[tuple[int, HostPort], ...]:
    if not isinstance(value, dict):
        raise Problem(f"must be a table of NODE_ID = 'host:port', got {_show(value)}")
    out = []
    for key, v in value.items():
        if not key.isdigit() or int(key) < 1:
            raise Problem("keys must be node ids (positive integers)", f".{key}")
        out.append((int(key), _host_port(v, at=f".{key}")))
    return tuple(sorted(out, key=lambda kv: kv[0]))


def doc(text: str, **extra: Any) -> Meta:
    """A field's documentation (the reference table's "meaning") and reader hints."""
    return Meta(description=text, extra=extra or None)


def path_field(text: str, **extra: Any) -> Meta:
    return doc(text, **{"parse": _path, "type_doc": "path", **extra})


def address(text: str, **extra: Any) -> Meta:
    return doc(text, **{"parse": _host_port, "type_doc": '`"host:port"`', **extra})


PositiveInt = Annotated[int, Meta(ge=1)]
Seconds = Annotated[float, Meta(gt=0, le=MAX_FINITE)]


# --- the sections ----------------------------------------------------------------------------


class RaftSection(Section, frozen=True, kw_only=True):
    """[raft]: consensus timing and flow-control bounds."""

    tick_ms: Annotated[int, Meta(ge=1, le=60_000), doc("one logical tick, in milliseconds")] = 100
    election_ticks: Annotated[
        int, Meta(ge=2),
        doc("minimum election timeout in ticks; each node draws from `[n, 2n)`"),
    ] = _CORE.election_ticks
    heartbeat_ticks: Annotated[
        PositiveInt, doc("leader heartbeat interval in ticks; must be < `election_ticks`")
    ] = _CORE.heartbeat_ticks
    max_entries_per_msg: Annotated[
        PositiveInt, doc("entries per append message")
    ] = _CORE.max_entries_per_msg
    max_bytes_per_msg: Annotated[
        int, Meta(ge=1024),
        doc(f"entry bytes per append message; must be < `net.max_frame_bytes`, and at least "
            f"{MIN_BLOCK_BYTES + BLOCK_MSG_HEADROOM_BYTES} (a block holding a maximum-size "
            f"transaction, plus {BLOCK_MSG_HEADROOM_BYTES} bytes of headroom)"),
    ] = _CORE.max_bytes_per_msg
    max_inflight_msgs: Annotated[
        PositiveInt, doc("unacknowledged appends per follower")
    ] = _CORE.max_inflight_msgs
    max_uncommitted_bytes: Annotated[
        int, Meta(ge=1024),
        doc("proposed but uncommitted bytes on the leader; beyond it proposals are refused; at "
            f"least one full block plus {BLOCK_MSG_HEADROOM_BYTES} bytes"),
    ] = _CORE.max_uncommitted_bytes
    snapshot_threshold_entries: Annotated[
        int, Meta(ge=16),
        doc("bound on the retained Raft log: it is compacted behind a snapshot before it grows "
            "past this many entries, keeping the newest quarter (hzp2p.node.snapshots)"),
    ] = 10_000
    pre_vote: Annotated[bool, doc("pre-vote before elections")] = _CORE.pre_vote
    check_quorum: Annotated[
        bool, doc("a leader that loses contact with a quorum steps down")
    ] = _CORE.check_quorum

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.heartbeat_ticks >= self.election_ticks:
            yield (
                "heartbeat_ticks",
                f"must be smaller than raft.election_ticks ({self.election_ticks}), "
                f"got {self.heartbeat_ticks}",
            )


class LedgerSection(Section, frozen=True, kw_only=True):
    """[ledger]: block building and mempool bounds."""

    block_max_txs: Annotated[PositiveInt, doc("transactions per block")] = 1000
    block_max_bytes: Annotated[
        int,
        Meta(ge=MIN_BLOCK_BYTES, le=MAX_BLOCK_BYTES),
        doc(f"encoded bytes per block; must be < `net.max_frame_bytes`, at most {MAX_BLOCK_BYTES}, "
            f"and at least {MIN_BLOCK_BYTES} so a maximum-size ({MAX_TX_BYTES // 1024} KiB) "
            "transaction always fits a block (blocks are cut at the smaller of this and "
            f"`raft.max_bytes_per_msg` - {BLOCK_MSG_HEADROOM_BYTES})",
            ge_why=f" so a maximum-size transaction ({MAX_TX_BYTES} bytes) fits in a block",
            le_why=" (the largest block every node accepts)"),
    ] = 1 << 20
    block_interval_ms: Annotated[
        PositiveInt, doc("longest wait before a non-full block is proposed")
    ] = 50
    mempool_max_bytes: Annotated[
        int, Meta(ge=1024), doc("pending transaction bytes held")
    ] = 64 << 20
    mempool_max_per_sender: Annotated[
        PositiveInt, doc("pending transactions per sender key")
    ] = 10_000
    early_signature_checks: Annotated[
        bool,
        doc("a follower checks an incoming block's signatures on a worker thread while the block "
            "waits to commit, so applying it costs no signature checks; worth it on a server "
            "with a spare core, a loss when every core is busy (docs/daemon.md)"),
    ] = False
    certify: Annotated[
        bool,
        doc("voters attest each applied block and the leader carries quorum certificates in "
            "later blocks; offline receipts (`admin receipt`) need them (docs/certificates.md)"),
    ] = True
    auto_share: Annotated[
        bool,
        doc("when a grant commits that covers records this institution wrote, its daemon hands "
            "the record keys to the grantee itself (hzp2p.node.handover)"),
    ] = True


class NetSection(Section, frozen=True, kw_only=True):
    """[net]: peer transport bounds and timeouts."""

    max_frame_bytes: Annotated[
        int, Meta(ge=4096), doc("largest frame accepted from a peer")
    ] = 4 << 20
    handshake_timeout_s: Annotated[Seconds, doc("time allowed for a peer's handshake")] = 5.0
    send_queue_len: Annotated[PositiveInt, doc("messages queued per peer")] = 1024
    keepalive_s: Annotated[
        Seconds,
        doc("idle time before a keepalive frame; a peer silent for two keepalives gets a "
            "replacement connection dialled beside the silent one (a half-open link after a "
            "partition heals is replaced within about 2 s, see docs/net.md)"),
    ] = 1.0
    read_timeout_s: Annotated[
        Seconds,
        doc("a peer silent this long is disconnected; must exceed `keepalive_s` (before issue "
            "22 the defaults were 5 s / 30 s, and links left half-open by a partition delayed "
            "elections by up to 13 s after the heal)"),
    ] = 3.0
    peer_addresses: Annotated[
        tuple[tuple[int, HostPort], ...],
        doc('`[net.peer_addresses]` NODE_ID = "host:port": dial this address for that peer '
            "instead of its advertised one (ahead of discovery's signed records); `hzp2p sim "
            "--engine live` routes every node pair through its fault-injecting relay this way",
            parse=_peer_addresses, type_doc="table", default_doc="none"),
    ] = ()

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.read_timeout_s <= self.keepalive_s:
            yield (
                "read_timeout_s",
                f"must exceed net.keepalive_s ({self.keepalive_s:g}), got {self.read_timeout_s:g}",
            )


def _admin_socket(value: Any, ctx: Context) -> Path:
    sock = _path(value, ctx)
    if len(str(sock).encode()) > MAX_UNIX_SOCKET_PATH_BYTES:
        raise Problem(
            f"resolves to {sock}, longer than the {MAX_UNIX_SOCKET_PATH_BYTES}-byte "
            "Unix socket limit; set a shorter admin.socket"
        )
    return sock


class AdminSection(Section, frozen=True, kw_only=True):
    """[admin]: the local admin socket."""

    socket: Annotated[
        Path,
        path_field(
            f"the admin Unix socket; at most {MAX_UNIX_SOCKET_PATH_BYTES} bytes long",
            parse=_admin_socket, default_doc="`data_dir/admin.sock`",
            default_from=lambda ctx: ctx.values["data_dir"] / "admin.sock",
        ),
    ]
    max_request_bytes: Annotated[
        int, Meta(ge=1024), doc("largest admin request frame")
    ] = DEFAULT_ADMIN_MAX_REQUEST_BYTES


class MetricsSection(Section, frozen=True, kw_only=True):
    """[metrics]: the optional Prometheus HTTP endpoint."""

    http: Annotated[
        HostPort | None,
        address("`\"host:port\"` to serve `GET /metrics` on; `hzp2p admin metrics` works "
                "regardless"),
    ] = None


class LogSection(Section, frozen=True, kw_only=True):
    """[log]: structured logs on stderr."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"], doc("how much is logged")
    ] = "info"
    format: Annotated[
        Literal["json", "console"], doc("`json` (one object per line) or `console`")
    ] = "json"


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class GatewaySection(Section, frozen=True, kw_only=True):
    """[gateway]: the HTTP gateway (`hzp2p gateway --config CFG`; hzp2p.gateway, docs/gateway.md).

    Present (even empty) means this node runs a gateway beside it: the daemon then opens
    its database shared, so the gateway can read committed state as a WAL reader."""

    listen: Annotated[HostPort, address("API address")] = HostPort("127.0.0.1", 8480)
    metrics_listen: Annotated[
        HostPort | None, address("`GET /metrics` address (never on the public listener)")
    ] = None
    tls_cert: Annotated[
        Path | None, path_field("PEM certificate chain: HTTPS when set (with `tls_key`)")
    ] = None
    tls_key: Annotated[Path | None, path_field("PEM private key of `tls_cert`")] = None
    allow_plain_http: Annotated[
        bool, doc("plain HTTP on a non-loopback address is refused unless this is true")
    ] = False
    credential_key: Annotated[
        Path | None,
        path_field("Ed25519 key signing health-code credentials (its public key registered "
                   "with `credkey.register`)",
                   default_doc="`data_dir/credential.key` if it exists"),
    ] = None
    credential_validity_s: Annotated[
        int, Meta(ge=1, le=86_400),
        doc("lifetime of a credential (5 minutes, as dynamic codes were); capped by the "
            "health-code rules' `credential_valid_hours` when the rules in force have one",
            le_why=" (one day)"),
    ] = 300
    clock_window_s: Annotated[
        PositiveInt, doc("signed requests' timestamps must be within ± this")
    ] = 60
    replay_cache_size: Annotated[
        int, Meta(ge=100),
        doc("nonces remembered for two clock windows (~100 bytes each); when full of live ones, "
            "signed requests get 503 — so it bounds signed requests to size / (2 x window) a "
            "second, ~4,000"),
    ] = 500_000
    max_body_bytes: Annotated[
        int, Meta(ge=1024), doc("413 beyond (also for chunked bodies)")
    ] = 128 * 1024
    max_header_bytes: Annotated[
        int, Meta(ge=1024), doc("431 beyond (all headers together)")
    ] = 16 * 1024
    rate_per_key_per_s: Annotated[
        Seconds, doc("token bucket per signing key: sustained rate (429 + Retry-After)")
    ] = 50.0
    burst_per_key: Annotated[PositiveInt, doc("token bucket per signing key: size")] = 100
    rate_per_address_per_s: Annotated[
        Seconds, doc("token bucket per client address: sustained rate")
    ] = 200.0
    burst_per_address: Annotated[PositiveInt, doc("token bucket per client address: size")] = 400
    max_concurrency: Annotated[
        PositiveInt, doc("requests handled at once; more wait up to `queue_timeout_ms`")
    ] = 256
    queue_timeout_ms: Annotated[
        int, Meta(ge=0), doc("a request waiting longer for a slot gets 503")
    ] = 1000
    request_timeout_s: Annotated[Seconds, doc("504 beyond")] = 15.0
    max_tx_wait_s: Annotated[
        float, Meta(ge=-MAX_FINITE, le=MAX_FINITE),
        doc("longest commit wait a `POST /v1/tx` may ask for"),
    ] = 10.0

    def problems(self) -> Iterator[tuple[str, str]]:
        if (self.tls_cert is None) != (self.tls_key is None):
            yield ("tls_key" if self.tls_key is None else "tls_cert",
                   "tls_cert and tls_key go together")
        if self.tls_cert is None and not self.allow_plain_http and not _loopback(
            self.listen.host
        ):
            yield (
                "listen",
                f"{self.listen} is not a loopback address: set tls_cert and tls_key (HTTPS), "
                "or allow_plain_http = true to serve plain HTTP anyway",
            )


def block_bytes_bound(ledger: LedgerSection, raft: RaftSection) -> int:
    """Blocks are cut at the smaller of `ledger.block_max_bytes` and the Raft message bound
    less the headroom an AppendEntries needs around one block entry."""
    return min(ledger.block_max_bytes, raft.max_bytes_per_msg - BLOCK_MSG_HEADROOM_BYTES)


RAFT_CORE_FIELDS = tuple(
    f.name for f in dataclasses.fields(RaftConfig) if f.name in RaftSection.__struct_fields__
)
"""The [raft] fields the Raft core takes as they are (the rest are the driver's)."""


class NodeConfig(Section, frozen=True, kw_only=True):
    """A validated node config (the top level of the file); paths are absolute."""

    path: Annotated[Path, Meta(extra={"internal": True})]
    node_id: Annotated[
        int, Meta(ge=1, le=MAX_NODE_ID),
        doc("this node's id; unique in the consortium and never reused", type_doc="int > 0"),
    ]
    genesis: Annotated[
        Path, path_field("the consortium's genesis file (identical on every node)")
    ]
    data_dir: Annotated[
        Path, path_field("Raft log, blocks, state, and the admin socket by default")
    ]
    listen: Annotated[
        HostPort, address("peer transport address to bind (`[v6]:port` for IPv6)")
    ]
    advertise: Annotated[
        HostPort | None, address("the address other nodes dial", default_doc="`listen`")
    ] = None
    seeds: Annotated[
        tuple[HostPort, ...],
        doc("peers to dial at start; one reachable seed is enough; must not name this node",
            parse=_host_ports, type_doc='list of `"host:port"`'),
    ] = ()
    signing_key: Annotated[
        Path, path_field("the institution's Ed25519 key (signs its transactions)")
    ]
    node_key: Annotated[
        Path, path_field("the daemon's transport identity key; must differ from `signing_key`")
    ]
    raft: RaftSection = msgspec.field(default_factory=RaftSection)
    ledger: LedgerSection = msgspec.field(default_factory=LedgerSection)
    net: NetSection = msgspec.field(default_factory=NetSection)
    admin: AdminSection
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    log: LogSection = msgspec.field(default_factory=LogSection)
    gateway: GatewaySection | None = None

    @property
    def advertise_address(self) -> HostPort:
        """The address peers should dial: `advertise` if set, else `listen`."""
        return self.advertise or self.listen

    @property
    def db_path(self) -> Path:
        """The node's SQLite database (the daemon's; `hzp2p export` reads it when stopped)."""
        return self.data_dir / DB_FILE

    def block_bytes(self) -> int:
        """The encoded size the daemon cuts blocks at (see block_bytes_bound)."""
        return block_bytes_bound(self.ledger, self.raft)

    def raft_config(self) -> RaftConfig:
        """The Raft core's tunables: every [raft] field it knows, by name (tick_ms and the
        snapshot policy stay with the driver)."""
        return RaftConfig(
            node_id=self.node_id,
            # a snapshot chunk must fit a frame with room to spare (docs/membership.md)
            max_snapshot_chunk_bytes=min(256 << 10, self.net.max_frame_bytes // 4),
            **{name: getattr(self.raft, name) for name in RAFT_CORE_FIELDS},
        )

    def problems(self) -> Iterator[tuple[str, str]]:
        ledger, raft, net = self.ledger, self.raft, self.net
        if ledger.block_max_bytes >= net.max_frame_bytes:
            yield (
                "ledger.block_max_bytes",
                f"must be smaller than net.max_frame_bytes ({net.max_frame_bytes}) so a block "
                f"fits in one frame, got {ledger.block_max_bytes}",
            )
        # The daemon cuts blocks of at most min(block_max_bytes, max_bytes_per_msg - headroom)
        # bytes, and the Raft core refuses an entry above max_bytes_per_msg or
        # max_uncommitted_bytes: a maximum-size transaction must fit that bound, and so must
        # a full block.
        block_bytes = block_bytes_bound(ledger, raft)
        if block_bytes < MIN_BLOCK_BYTES:
            yield (
                "raft.max_bytes_per_msg",
                f"must be >= {MIN_BLOCK_BYTES + BLOCK_MSG_HEADROOM_BYTES} so a block holding a "
                f"maximum-size transaction ({MAX_TX_BYTES} bytes) fits in one Raft entry, "
                f"got {raft.max_bytes_per_msg}",
            )
        if raft.max_uncommitted_bytes < block_bytes + BLOCK_MSG_HEADROOM_BYTES:
            yield (
                "raft.max_uncommitted_bytes",
                f"must be >= {block_bytes + BLOCK_MSG_HEADROOM_BYTES} so a full block "
                f"({block_bytes} bytes, from ledger.block_max_bytes and raft.max_bytes_per_msg) "
                f"can be proposed, got {raft.max_uncommitted_bytes}",
            )
        if raft.max_bytes_per_msg >= net.max_frame_bytes:
            yield (
                "raft.max_bytes_per_msg",
                f"must be smaller than net.max_frame_bytes ({net.max_frame_bytes}), "
                f"got {raft.max_bytes_per_msg}",
            )
        for i, seed in enumerate(self.seeds):
            if seed == self.listen or (self.advertise is not None and seed == self.advertise):
                yield (f"seeds[{i}]", f"{seed} is this node's own address")
            if seed in self.seeds[:i]:
                yield (f"seeds[{i}]", f"{seed} is listed twice")
        for key, key_path in (("signing_key", self.signing_key), ("node_key", self.node_key)):
            if key_path == self.genesis:
                yield (key, "must not be the genesis file")
        if self.signing_key == self.node_key:
            yield ("node_key", "must be a different file from signing_key (two distinct keys)")
