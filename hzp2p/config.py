"""A node's configuration: one TOML file read with tomllib into a frozen dataclass tree.

It owns the file format, the defaults and every check on it, so the daemon
never sees an unchecked value. Every problem raises ConfigError naming the
file, the field (as a dotted path, e.g. `raft.election_ticks`) and what is
wrong; unknown fields are refused (a typo must not silently fall back to a
default). Relative paths are resolved against the config file's directory.

    cfg = load_config("cluster/node1/config.toml")
    cfg.raft.tick_ms, cfg.admin.socket, cfg.advertise_address

Top-level fields: node_id (int > 0, required), genesis (path, required),
data_dir (path, required), listen ("host:port", required), advertise
("host:port", default: listen), seeds (list of "host:port", default []),
signing_key and node_key (paths, required). Sections and their defaults are
documented on each dataclass below; docs/operations.md has the reference.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hzp2p.ledger.block import MAX_BLOCK_BYTES
from hzp2p.ledger.builder import MIN_BLOCK_BYTES
from hzp2p.ledger.tx import MAX_TX_BYTES
from hzp2p.raft.config import RaftConfig

MAX_UNIX_SOCKET_PATH_BYTES = 107
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
DEFAULT_ADMIN_MAX_REQUEST_BYTES = 1 << 20
MAX_NODE_ID = (1 << 63) - 1
BLOCK_MSG_HEADROOM_BYTES = 4096
"""Room the daemon leaves in a Raft entry beside a block (hzp2p.node.daemon's constant of the
same name, which it caps blocks with: min(block_max_bytes, max_bytes_per_msg - this))."""


class ConfigError(Exception):
    """A config file problem: `file`, `field` (dotted path) and `problem` for the operator."""

    def __init__(self, file: Path | str, field: str, problem: str) -> None:
        self.file = str(file)
        self.field = field
        self.problem = problem
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class RaftSection:
    """[raft]: consensus timing and flow-control bounds."""

    tick_ms: int = 100
    """Length of one logical tick in milliseconds (default 100)."""
    election_ticks: int = 10
    """Minimum election timeout in ticks; each node draws from [n, 2n) (default 10)."""
    heartbeat_ticks: int = 1
    """Leader heartbeat interval in ticks; must be < election_ticks (default 1)."""
    max_entries_per_msg: int = 256
    """Entries per AppendEntries message (default 256)."""
    max_bytes_per_msg: int = 1 << 20
    """Entry bytes per AppendEntries message (default 1 MiB)."""
    max_inflight_msgs: int = 64
    """Unacknowledged appends per follower (default 64)."""
    max_uncommitted_bytes: int = 64 << 20
    """Leader's bound on proposed but uncommitted bytes; beyond it proposals are refused (64 MiB)."""
    snapshot_threshold_entries: int = 10_000
    """Bound on the retained Raft log: it is compacted behind a snapshot before it grows
    past this many entries, keeping the newest quarter (default 10000, at least 16;
    hzp2p.node.snapshots)."""
    pre_vote: bool = True
    """Pre-vote before elections (default true)."""
    check_quorum: bool = True
    """A leader steps down when it loses contact with a quorum (default true)."""


@dataclass(frozen=True, slots=True)
class LedgerSection:
    """[ledger]: block building and mempool bounds."""

    block_max_txs: int = 1000
    """Transactions per block (default 1000)."""
    block_max_bytes: int = 1 << 20
    """Encoded bytes per block (default 1 MiB); at least MIN_BLOCK_BYTES, so a maximum-size
    transaction fits a block, at most MAX_BLOCK_BYTES, and below net.max_frame_bytes."""
    block_interval_ms: int = 50
    """Longest wait before a non-full block is proposed (default 50 ms)."""
    mempool_max_bytes: int = 64 << 20
    """Pending transaction bytes held by the mempool (default 64 MiB)."""
    mempool_max_per_sender: int = 10_000
    """Pending transactions per sender key (default 10000)."""
    early_signature_checks: bool = False
    """A follower checks an incoming block's signatures on a worker thread while the block
    waits to commit, so applying it later costs no signature checks (default false: worth
    it with a spare core; with every core busy the thread hand-offs cost more than they
    save — docs/daemon.md)."""
    certify: bool = True
    """Voters attest every applied block and the leader carries quorum certificates in later
    blocks (hzp2p.node.attest; offline receipts need them). Default true."""
    auto_share: bool = True
    """When a grant commits that covers records this institution wrote, its daemon hands the
    record keys to the grantee itself (hzp2p.node.handover; default true)."""


@dataclass(frozen=True, slots=True)
class NetSection:
    """[net]: peer transport bounds and timeouts."""

    max_frame_bytes: int = 4 << 20
    """Largest frame accepted from a peer (default 4 MiB)."""
    handshake_timeout_s: float = 5.0
    """Time allowed for a peer's handshake (default 5 s)."""
    send_queue_len: int = 1024
    """Messages queued per peer before sends are dropped (default 1024)."""
    keepalive_s: float = 1.0
    """Idle time after which a keepalive frame is sent (default 1 s); a peer silent for two
    keepalives gets a replacement connection (hzp2p.net.tcp, issue 22)."""
    read_timeout_s: float = 3.0
    """A peer silent this long is disconnected; must exceed keepalive_s (default 3 s)."""
    peer_addresses: tuple[tuple[int, HostPort], ...] = ()
    """[net.peer_addresses] NODE_ID = "host:port": dial this address for that peer instead
    of its advertised one (ahead of discovery's signed records); `hzp2p sim --engine live`
    routes every node pair through its fault-injecting relay this way. Default: none."""


@dataclass(frozen=True, slots=True)
class AdminSection:
    """[admin]: the local admin socket."""

    socket: Path
    """Unix socket path (default: data_dir/admin.sock); at most 107 bytes."""
    max_request_bytes: int = DEFAULT_ADMIN_MAX_REQUEST_BYTES
    """Largest admin request frame (default 1 MiB)."""


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """[metrics]: the optional Prometheus HTTP endpoint."""

    http: HostPort | None = None
    """'host:port' to serve GET /metrics on (default: none; `admin metrics` always works)."""


@dataclass(frozen=True, slots=True)
class LogSection:
    """[log]: structured logs on stderr."""

    level: str = "info"
    """debug | info | warning | error (default info)."""
    format: str = "json"
    """json (one object per line) | console (default json)."""


@dataclass(frozen=True, slots=True)
class GatewaySection:
    """[gateway]: the HTTP gateway (`hzp2p gateway --config CFG`; hzp2p.gateway, docs/gateway.md).

    Present (even empty) means this node runs a gateway beside it: the daemon then opens
    its database shared, so the gateway can read committed state as a WAL reader."""

    listen: HostPort = HostPort("127.0.0.1", 8480)
    """'host:port' of the API (default 127.0.0.1:8480)."""
    metrics_listen: HostPort | None = None
    """'host:port' for GET /metrics (Prometheus); default: none."""
    tls_cert: Path | None = None
    """PEM certificate chain: HTTPS when set (with tls_key)."""
    tls_key: Path | None = None
    """PEM private key of tls_cert."""
    allow_plain_http: bool = False
    """Serve plain HTTP on a non-loopback address anyway (default false: refused)."""
    credential_key: Path | None = None
    """Ed25519 key file signing health-code credentials (its public key must be registered
    with credkey.register); default data_dir/credential.key when that file exists."""
    credential_validity_s: int = 300
    """Lifetime of a health-code credential (default 300 s: 5 minutes)."""
    clock_window_s: int = 60
    """Allowed difference between a signed request's timestamp and the gateway's clock."""
    replay_cache_size: int = 500_000
    """Nonces remembered (for two clock windows, ~100 bytes each); when full of live nonces,
    signed requests get 503: it bounds signed requests to size / (2 * clock_window_s) a
    second (about 4,000 with the defaults)."""
    max_body_bytes: int = 128 * 1024
    """Largest request body (413 beyond; default 128 KiB: a 64 KiB transaction in hex)."""
    max_header_bytes: int = 16 * 1024
    """Largest request head, all headers together (431 beyond; default 16 KiB)."""
    rate_per_key_per_s: float = 50.0
    """Sustained signed requests per public key (token bucket; 429 beyond)."""
    burst_per_key: int = 100
    """Bucket size per key."""
    rate_per_address_per_s: float = 200.0
    """Sustained requests per client address (429 beyond)."""
    burst_per_address: int = 400
    """Bucket size per address."""
    max_concurrency: int = 256
    """Requests handled at once; more wait up to queue_timeout_ms, then get 503."""
    queue_timeout_ms: int = 1000
    """How long a request may wait for a slot."""
    request_timeout_s: float = 15.0
    """A request taking longer is answered 504."""
    max_tx_wait_s: float = 10.0
    """Longest wait_s a POST /v1/tx may ask for."""


def block_bytes_bound(ledger: LedgerSection, raft: RaftSection) -> int:
    """Blocks are cut at the smaller of `ledger.block_max_bytes` and the Raft message bound
    less the headroom an AppendEntries needs around one block entry."""
    return min(ledger.block_max_bytes, raft.max_bytes_per_msg - BLOCK_MSG_HEADROOM_BYTES)



DB_FILE = "node.db"
"""The node database's file name inside data_dir."""

@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated node config; paths are absolute."""

    path: Path
    node_id: int
    genesis: Path
    data_dir: Path
    listen: HostPort
    signing_key: Path
    node_key: Path
    admin: AdminSection
    advertise: HostPort | None = None
    seeds: tuple[HostPort, ...] = ()
    raft: RaftSection = field(default_factory=RaftSection)
    ledger: LedgerSection = field(default_factory=LedgerSection)
    net: NetSection = field(default_factory=NetSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    log: LogSection = field(default_factory=LogSection)
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
        """The Raft core's tunables from [raft] (tick_ms and snapshot policy stay with the driver)."""
        r = self.raft
        return RaftConfig(
            node_id=self.node_id,
            election_ticks=r.election_ticks,
            heartbeat_ticks=r.heartbeat_ticks,
            max_entries_per_msg=r.max_entries_per_msg,
            max_bytes_per_msg=r.max_bytes_per_msg,
            max_inflight_msgs=r.max_inflight_msgs,
            max_uncommitted_bytes=r.max_uncommitted_bytes,
            # a snapshot chunk must fit a frame with room to spare (docs/membership.md)
            max_snapshot_chunk_bytes=min(256 << 10, self.net.max_frame_bytes // 4),
            pre_vote=r.pre_vote,
            check_quorum=r.check_quorum,
        )


# ---------------------------------------------------------------------------
# Reading

T = TypeVar("T")


class _Reader:
    """Reads one TOML table, tracking which keys were used so the rest can be refused."""

    def __init__(self, file: Path, table: Mapping[str, Any], prefix: str) -> None:
        self.file = file
        self.table = table
        self.prefix = prefix
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.name(key), problem)

    def _get(self, key: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self.error(key, "is required")
            return None
        return self.table[key]

    def integer(self, key: str, default: int | None, *, minimum: int = 1) -> int:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"must be an integer, got {_show(value)}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, *, positive: bool = True) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.error(key, f"must be a number, got {_show(value)}")
        if not math.isfinite(value) or (positive and value <= 0):
            raise self.error(key, f"must be a positive finite number, got {value}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_show(value)}")
        return value

    def string(self, key: str, default: str | None, *, choices: tuple[str, ...] = ()) -> str:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {_show(value)}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def path(self, key: str, default: Path | None = None) -> Path:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty path string, got {_show(value)}")
        if "\x00" in value:
            raise self.error(key, "must not contain NUL characters")
        return (self.file.parent / Path(value).expanduser()).resolve()

    def host_port(self, key: str, required: bool) -> HostPort | None:
        value = self._get(key, required)
        if value is None:
            return None
        return self._host_port_value(key, value)

    def _host_port_value(self, key: str, value: Any) -> HostPort:
        if not isinstance(value, str):
            raise self.error(key, f"must be a 'host:port' string, got {_show(value)}")
        try:
            return parse_host_port(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def host_port_list(self, key: str) -> tuple[HostPort, ...]:
        value = self._get(key, False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of 'host:port' strings, got {_show(value)}")
        return tuple(self._host_port_value(f"{key}[{i}]", v) for i, v in enumerate(value))

    def section(self, key: str, build: Callable[[_Reader], T]) -> T:
        value = self._get(key, False)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table ([{self.name(key)}]), got {_show(value)}")
        reader = _Reader(self.file, value, f"{self.name(key)}.")
        result = build(reader)
        reader.finish()
        return result

    def finish(self) -> None:
        unknown = sorted(k for k in self.table if k not in self.used)
        if unknown:
            raise self.error(unknown[0], "unknown field (check the spelling; see docs/operations.md)")


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _raft(r: _Reader) -> RaftSection:
    d = RaftSection()
    sec = RaftSection(
        tick_ms=r.integer("tick_ms", d.tick_ms),
        election_ticks=r.integer("election_ticks", d.election_ticks, minimum=2),
        heartbeat_ticks=r.integer("heartbeat_ticks", d.heartbeat_ticks),
        max_entries_per_msg=r.integer("max_entries_per_msg", d.max_entries_per_msg),
        max_bytes_per_msg=r.integer("max_bytes_per_msg", d.max_bytes_per_msg, minimum=1024),
        max_inflight_msgs=r.integer("max_inflight_msgs", d.max_inflight_msgs),
        max_uncommitted_bytes=r.integer(
            "max_uncommitted_bytes", d.max_uncommitted_bytes, minimum=1024
        ),
        snapshot_threshold_entries=r.integer(
            "snapshot_threshold_entries", d.snapshot_threshold_entries, minimum=16
        ),
        pre_vote=r.boolean("pre_vote", d.pre_vote),
        check_quorum=r.boolean("check_quorum", d.check_quorum),
    )
    if sec.heartbeat_ticks >= sec.election_ticks:
        raise r.error(
            "heartbeat_ticks",
            f"must be smaller than raft.election_ticks ({sec.election_ticks}), "
            f"got {sec.heartbeat_ticks}",
        )
    if sec.tick_ms > 60_000:
        raise r.error("tick_ms", f"must be at most 60000, got {sec.tick_ms}")
    return sec


def _ledger(r: _Reader) -> LedgerSection:
    d = LedgerSection()
    return LedgerSection(
        block_max_txs=r.integer("block_max_txs", d.block_max_txs),
        block_max_bytes=_block_max_bytes(r, d.block_max_bytes),
        block_interval_ms=r.integer("block_interval_ms", d.block_interval_ms),
        mempool_max_bytes=r.integer("mempool_max_bytes", d.mempool_max_bytes, minimum=1024),
        mempool_max_per_sender=r.integer("mempool_max_per_sender", d.mempool_max_per_sender),
        early_signature_checks=r.boolean("early_signature_checks", d.early_signature_checks),
        certify=r.boolean("certify", d.certify),
        auto_share=r.boolean("auto_share", d.auto_share),
    )


def _block_max_bytes(r: _Reader, default: int) -> int:
    value = r.integer("block_max_bytes", default)
    if value < MIN_BLOCK_BYTES:
        raise r.error(
            "block_max_bytes",
            f"must be >= {MIN_BLOCK_BYTES} so a maximum-size transaction ({MAX_TX_BYTES} bytes) "
            f"fits in a block, got {value}",
        )
    if value > MAX_BLOCK_BYTES:
        raise r.error(
            "block_max_bytes",
            f"must be at most {MAX_BLOCK_BYTES} (the largest block every node accepts), got {value}",
        )
    return value


def _net(r: _Reader) -> NetSection:
    d = NetSection()
    sec = NetSection(
        max_frame_bytes=r.integer("max_frame_bytes", d.max_frame_bytes, minimum=4096),
        handshake_timeout_s=r.number("handshake_timeout_s", d.handshake_timeout_s),
        send_queue_len=r.integer("send_queue_len", d.send_queue_len),
        keepalive_s=r.number("keepalive_s", d.keepalive_s),
        read_timeout_s=r.number("read_timeout_s", d.read_timeout_s),
        peer_addresses=_peer_addresses(r),
    )
    if sec.read_timeout_s <= sec.keepalive_s:
        raise r.error(
            "read_timeout_s",
            f"must exceed net.keepalive_s ({sec.keepalive_s:g}), got {sec.read_timeout_s:g}",
        )
    return sec


def _peer_addresses(r: _Reader) -> tuple[tuple[int, HostPort], ...]:
    value = r._get("peer_addresses", False)
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise r.error("peer_addresses", f"must be a table of NODE_ID = 'host:port', got {_show(value)}")
    out = []
    for key, v in value.items():
        if not key.isdigit() or int(key) < 1:
            raise r.error(f"peer_addresses.{key}", "keys must be node ids (positive integers)")
        out.append((int(key), r._host_port_value(f"peer_addresses.{key}", v)))
    return tuple(sorted(out, key=lambda kv: kv[0]))


def _log(r: _Reader) -> LogSection:
    d = LogSection()
    return LogSection(
        level=r.string("level", d.level, choices=LOG_LEVELS),
        format=r.string("format", d.format, choices=LOG_FORMATS),
    )


def _metrics(r: _Reader) -> MetricsSection:
    return MetricsSection(http=r.host_port("http", required=False))


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _gateway(r: _Reader) -> GatewaySection:
    d = GatewaySection()
    listen = r.host_port("listen", required=False) or d.listen
    cert = r.path("tls_cert", Path()) if "tls_cert" in r.table else None
    key = r.path("tls_key", Path()) if "tls_key" in r.table else None
    cred = r.path("credential_key", Path()) if "credential_key" in r.table else None
    if (cert is None) != (key is None):
        raise r.error("tls_key" if key is None else "tls_cert", "tls_cert and tls_key go together")
    sec = GatewaySection(
        listen=listen,
        metrics_listen=r.host_port("metrics_listen", required=False),
        tls_cert=cert,
        tls_key=key,
        allow_plain_http=r.boolean("allow_plain_http", d.allow_plain_http),
        credential_key=cred,
        credential_validity_s=r.integer("credential_validity_s", d.credential_validity_s),
        clock_window_s=r.integer("clock_window_s", d.clock_window_s),
        replay_cache_size=r.integer("replay_cache_size", d.replay_cache_size, minimum=100),
        max_body_bytes=r.integer("max_body_bytes", d.max_body_bytes, minimum=1024),
        max_header_bytes=r.integer("max_header_bytes", d.max_header_bytes, minimum=1024),
        rate_per_key_per_s=r.number("rate_per_key_per_s", d.rate_per_key_per_s),
        burst_per_key=r.integer("burst_per_key", d.burst_per_key),
        rate_per_address_per_s=r.number("rate_per_address_per_s", d.rate_per_address_per_s),
        burst_per_address=r.integer("burst_per_address", d.burst_per_address),
        max_concurrency=r.integer("max_concurrency", d.max_concurrency),
        queue_timeout_ms=r.integer("queue_timeout_ms", d.queue_timeout_ms, minimum=0),
        request_timeout_s=r.number("request_timeout_s", d.request_timeout_s),
        max_tx_wait_s=r.number("max_tx_wait_s", d.max_tx_wait_s, positive=False),
    )
    if cert is None and not sec.allow_plain_http and not _loopback(listen.host):
        raise r.error(
            "listen",
            f"{listen} is not a loopback address: set tls_cert and tls_key (HTTPS), "
            "or allow_plain_http = true to serve plain HTTP anyway",
        )
    if sec.credential_validity_s > 86_400:
        raise r.error("credential_validity_s", "must be at most 86400 (one day)")
    return sec


def parse_config(data: Mapping[str, Any], *, path: Path | str) -> NodeConfig:
    """Validate an already-parsed TOML document; `path` names the file in errors and anchors paths."""
    file = Path(path).absolute()
    top = _Reader(file, data, "")
    node_id = top.integer("node_id", None)
    genesis = top.path("genesis")
    data_dir = top.path("data_dir")
    listen = top.host_port("listen", required=True)
    assert listen is not None
    advertise = top.host_port("advertise", required=False)
    seeds = top.host_port_list("seeds")
    signing_key = top.path("signing_key")
    node_key = top.path("node_key")
    raft = top.section("raft", _raft)
    ledger = top.section("ledger", _ledger)
    net = top.section("net", _net)

    def admin_section(r: _Reader) -> AdminSection:
        sock = r.path("socket", data_dir / "admin.sock")
        if len(str(sock).encode()) > MAX_UNIX_SOCKET_PATH_BYTES:
            raise r.error(
                "socket",
                f"resolves to {sock}, longer than the {MAX_UNIX_SOCKET_PATH_BYTES}-byte "
                "Unix socket limit; set a shorter admin.socket",
            )
        return AdminSection(
            socket=sock,
            max_request_bytes=r.integer(
                "max_request_bytes", DEFAULT_ADMIN_MAX_REQUEST_BYTES, minimum=1024
            ),
        )

    admin = top.section("admin", admin_section)
    metrics = top.section("metrics", _metrics)
    log = top.section("log", _log)
    gateway = top.section("gateway", _gateway) if "gateway" in data else None
    top.finish()

    if ledger.block_max_bytes >= net.max_frame_bytes:
        raise ConfigError(
            file,
            "ledger.block_max_bytes",
            f"must be smaller than net.max_frame_bytes ({net.max_frame_bytes}) so a block "
            f"fits in one frame, got {ledger.block_max_bytes}",
        )
    # The daemon cuts blocks of at most min(block_max_bytes, max_bytes_per_msg - headroom)
    # bytes, and the Raft core refuses an entry above max_bytes_per_msg or max_uncommitted_bytes:
    # a maximum-size transaction must fit that bound, and so must a full block.
    block_bytes = block_bytes_bound(ledger, raft)
    if block_bytes < MIN_BLOCK_BYTES:
        raise ConfigError(
            file,
            "raft.max_bytes_per_msg",
            f"must be >= {MIN_BLOCK_BYTES + BLOCK_MSG_HEADROOM_BYTES} so a block holding a "
            f"maximum-size transaction ({MAX_TX_BYTES} bytes) fits in one Raft entry, "
            f"got {raft.max_bytes_per_msg}",
        )
    if raft.max_uncommitted_bytes < block_bytes + BLOCK_MSG_HEADROOM_BYTES:
        raise ConfigError(
            file,
            "raft.max_uncommitted_bytes",
            f"must be >= {block_bytes + BLOCK_MSG_HEADROOM_BYTES} so a full block "
            f"({block_bytes} bytes, from ledger.block_max_bytes and raft.max_bytes_per_msg) "
            f"can be proposed, got {raft.max_uncommitted_bytes}",
        )
    if raft.max_bytes_per_msg >= net.max_frame_bytes:
        raise ConfigError(
            file,
            "raft.max_bytes_per_msg",
            f"must be smaller than net.max_frame_bytes ({net.max_frame_bytes}), "
            f"got {raft.max_bytes_per_msg}",
        )
    for i, seed in enumerate(seeds):
        if seed == listen or (advertise is not None and seed == advertise):
            raise ConfigError(file, f"seeds[{i}]", f"{seed} is this node's own address")
        if seed in seeds[:i]:
            raise ConfigError(file, f"seeds[{i}]", f"{seed} is listed twice")
    if node_id > MAX_NODE_ID:
        raise ConfigError(file, "node_id", f"must be at most {MAX_NODE_ID}, got {node_id}")
    for key, key_path in (("signing_key", signing_key), ("node_key", node_key)):
        if key_path == genesis:
            raise ConfigError(file, key, "must not be the genesis file")
    if signing_key == node_key:
        raise ConfigError(
            file, "node_key", "must be a different file from signing_key (two distinct keys)"
        )
    return NodeConfig(
        path=file,
        node_id=node_id,
        genesis=genesis,
        data_dir=data_dir,
        listen=listen,
        advertise=advertise,
        seeds=seeds,
        signing_key=signing_key,
        node_key=node_key,
        raft=raft,
        ledger=ledger,
        net=net,
        admin=admin,
        metrics=metrics,
        log=log,
        gateway=gateway,
    )


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node config file; ConfigError on any problem."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "", "config file not found") from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "", "config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"invalid TOML: {exc}") from None
    return parse_config(data, path=file)
