"""Node config: defaults, relative paths, and errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hzp2p.config import (
    ConfigError,
    HostPort,
    LedgerSection,
    NetSection,
    RaftSection,
    load_config,
    parse_host_port,
)

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
node_id = 3
genesis = "../genesis.toml"
data_dir = "data"
listen = "127.0.0.1:7003"
seeds = ["127.0.0.1:7001", "[::1]:7002"]
signing_key = "signing.key"
node_key = "node.key"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node3" / "config.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_minimal_config_defaults_and_paths(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path)
    base = path.parent.resolve()
    assert cfg.node_id == 3
    assert cfg.genesis == tmp_path.resolve() / "genesis.toml"
    assert cfg.data_dir == base / "data"
    assert cfg.signing_key == base / "signing.key"
    assert cfg.admin.socket == base / "data" / "admin.sock"
    assert cfg.listen == HostPort("127.0.0.1", 7003)
    assert cfg.advertise_address == cfg.listen
    assert cfg.seeds == (HostPort("127.0.0.1", 7001), HostPort("::1", 7002))
    assert str(cfg.seeds[1]) == "[::1]:7002"
    assert cfg.raft == RaftSection() and cfg.ledger == LedgerSection() and cfg.net == NetSection()
    assert cfg.metrics.http is None
    assert (cfg.log.level, cfg.log.format) == ("info", "json")
    with pytest.raises(AttributeError):
        cfg.node_id = 4  # type: ignore[misc]


def test_sections_override_defaults(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            MINIMAL
            + """
advertise = "node3.example:7003"
[raft]
tick_ms = 20
election_ticks = 20
heartbeat_ticks = 4
pre_vote = false
[ledger]
early_signature_checks = true
[net]
handshake_timeout_s = 2.5
[admin]
socket = "/tmp/x.sock"
[metrics]
http = "0.0.0.0:9100"
[log]
level = "debug"
format = "console"
""",
        )
    )
    assert (cfg.raft.tick_ms, cfg.raft.election_ticks, cfg.raft.heartbeat_ticks) == (20, 20, 4)
    assert cfg.raft.pre_vote is False
    assert cfg.ledger.early_signature_checks is True
    assert cfg.net.handshake_timeout_s == 2.5
    assert cfg.admin.socket == Path("/tmp/x.sock")
    assert cfg.metrics.http == HostPort("0.0.0.0", 9100)
    assert cfg.advertise_address == HostPort("node3.example", 7003)


@pytest.mark.parametrize(
    ("patch", "field", "problem"),
    [
        ("node_id = 0", "node_id", "must be >= 1"),
        ('node_id = "3"', "node_id", "must be an integer"),
        ("node_id = true", "node_id", "must be an integer"),
        ('listen = "localhost"', "listen", "has no ':port'"),
        ('listen = "h:99999"', "listen", "port must be in 1..65535"),
        ('listen = ":7000"', "listen", "empty or invalid host"),
        ('listen = "::1:7000"', "listen", "[addr]:port"),
        ("seeds = '127.0.0.1:1'", "seeds", "must be a list"),
        ('seeds = ["127.0.0.1:7001", 5]', "seeds[1]", "must be a 'host:port' string"),
        ('seeds = ["127.0.0.1:7003"]', "seeds[0]", "own address"),
        ('seeds = ["a:1", "b:2", "a:1"]', "seeds[2]", "listed twice"),
        ("node_id = 9223372036854775808", "node_id", "at most"),
        ("genesis = 7", "genesis", "must be a non-empty path string"),
        ('node_key = "signing.key"', "node_key", "different file"),
        ("colour = 'blue'", "colour", "unknown field"),
        ("[raft]\nelection_tick = 5", "raft.election_tick", "unknown field"),
        ("[raft]\nheartbeat_ticks = 10", "raft.heartbeat_ticks", "smaller than raft.election_ticks"),
        ("[raft]\ntick_ms = -5", "raft.tick_ms", "must be >= 1"),
        ("[raft]\npre_vote = 1", "raft.pre_vote", "must be true or false"),
        ('[ledger]\nearly_signature_checks = "yes"', "ledger.early_signature_checks",
         "must be true or false"),
        ("[raft]\nmax_bytes_per_msg = 8388608", "raft.max_bytes_per_msg", "smaller than net.max_frame_bytes"),
        ("[ledger]\nblock_max_bytes = 8388608", "ledger.block_max_bytes", "smaller than net.max_frame_bytes"),
        ("[ledger]\nblock_max_txs = 0", "ledger.block_max_txs", "must be >= 1"),
        ("[ledger]\nblock_max_bytes = 1024", "ledger.block_max_bytes", "maximum-size transaction (65536 bytes) fits"),
        ("[ledger]\nblock_max_bytes = 65536", "ledger.block_max_bytes", "must be >= 65797"),
        ("[ledger]\nblock_max_bytes = 8388609\n[net]\nmax_frame_bytes = 16777216", "ledger.block_max_bytes", "at most 8388608"),
        ("[raft]\nmax_bytes_per_msg = 65536", "raft.max_bytes_per_msg", "must be >= 69893"),
        ("[raft]\nmax_uncommitted_bytes = 65536", "raft.max_uncommitted_bytes", "so a full block"),
        ("[net]\nkeepalive_s = 0", "net.keepalive_s", "positive finite"),
        ("[net]\nread_timeout_s = 1", "net.read_timeout_s", "must exceed net.keepalive_s"),
        ("[net]\nhandshake_timeout_s = 'soon'", "net.handshake_timeout_s", "must be a number"),
        ("[admin]\nsocket = '" + "x" * 120 + "'", "admin.socket", "Unix socket limit"),
        ("[admin]\nmax_request_bytes = 10", "admin.max_request_bytes", "must be >= 1024"),
        ("[metrics]\nhttp = 'nope'", "metrics.http", "has no ':port'"),
        ("[log]\nlevel = 'loud'", "log.level", "must be one of debug, info, warning, error"),
        ("[log]\nformat = 'xml'", "log.format", "must be one of json, console"),
        ("raft = 5", "raft", "must be a table"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, patch: str, field: str, problem: str) -> None:
    if patch.startswith("["):  # a section: append it
        text = MINIMAL + patch + "\n"
    else:  # a top-level field: replace it
        key = patch.split("=")[0].strip()
        lines = [ln for ln in MINIMAL.splitlines() if not ln.startswith(f"{key} ")]
        text = "\n".join([*lines, patch]) + "\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.field == field
    assert problem in err.problem
    assert str(err).startswith(f"{path.absolute()}: {field}: ")


@pytest.mark.parametrize("missing", ["node_id", "genesis", "data_dir", "listen", "signing_key", "node_key"])
def test_required_fields(tmp_path: Path, missing: str) -> None:
    text = "\n".join(ln for ln in MINIMAL.splitlines() if not ln.startswith(f"{missing} "))
    with pytest.raises(ConfigError, match=f"{missing}: is required"):
        load_config(write(tmp_path, text))


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "node_id = = 3"))
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_parse_host_port() -> None:
    assert parse_host_port("[fe80::1]:80") == HostPort("fe80::1", 80)
    for bad in ("", "host:", "host:x", "[::1]80", "a b:1"):
        with pytest.raises(ValueError):
            parse_host_port(bad)


def test_every_shipped_config_parses() -> None:
    files = sorted((REPO / "configs").glob("**/*.toml"))
    assert len(files) >= 3 + 5
    ids = {}
    for path in files:
        cfg = load_config(path)
        ids.setdefault(path.parent.name, set()).add(cfg.node_id)
    assert ids["local-3node"] == {1, 2, 3}
    assert {1, 2, 3, 4, 5} <= ids["city-5voters"]
    city = load_config(REPO / "configs/city-5voters/1-health-commission.toml")
    assert city.raft.tick_ms == 100 and 10 <= city.raft.election_ticks <= 20


def test_raft_config_mapping(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "[raft]\nelection_ticks = 12\nheartbeat_ticks = 3\n"))
    rc = cfg.raft_config()
    assert (rc.node_id, rc.election_ticks, rc.heartbeat_ticks) == (3, 12, 3)
    assert rc.max_uncommitted_bytes == cfg.raft.max_uncommitted_bytes


def test_a_maximum_size_transaction_always_fits_a_block(tmp_path: Path) -> None:
    """At the smallest accepted sizes, a block holding one maximum-size transaction is cut and
    fits the Raft entry bounds (else that transaction would block its sender's queue forever)."""
    import nacl.signing

    from hzp2p.config import BLOCK_MSG_HEADROOM_BYTES
    from hzp2p.ledger.block import Block
    from hzp2p.ledger.builder import MIN_BLOCK_BYTES, BlockBuilder
    from hzp2p.ledger.mempool import Mempool
    from hzp2p.ledger.tx import MAX_TX_BYTES, TxError
    from hzp2p.tools.testkit import LocalChain
    msg_min = MIN_BLOCK_BYTES + BLOCK_MSG_HEADROOM_BYTES
    cfg = load_config(
        write(
            tmp_path,
            MINIMAL
            + f"[raft]\nmax_bytes_per_msg = {msg_min}\nmax_uncommitted_bytes = {msg_min}\n"
            + f"[ledger]\nblock_max_bytes = {MIN_BLOCK_BYTES}\n",
        )
    )
    block_bytes = cfg.block_bytes()  # what the daemon cuts blocks at
    assert block_bytes == MIN_BLOCK_BYTES

    # The largest transaction the ledger accepts (padded up to MAX_TX_BYTES exactly).
    chain = LocalChain(seed=3)

    def padded(n: int) -> dict[str, str]:  # n bytes of padding, in strings the codec accepts
        return {f"p{i}": "x" * min(8000, n - i * 8000) for i in range(0, -(-n // 8000))}

    lo, hi = 0, MAX_TX_BYTES
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            chain.tx(3, "epi.report", padded(mid))
            lo = mid
        except TxError:
            hi = mid - 1
    tx = chain.tx(3, "epi.report", padded(lo))
    assert MAX_TX_BYTES - 8 <= len(tx.encode()) <= MAX_TX_BYTES

    mempool = Mempool()
    mempool.add(tx)
    builder = BlockBuilder(1000, block_bytes, 0)
    block = builder.build(
        mempool, nacl.signing.SigningKey(bytes(32)), 1, height=1, prev_hash=bytes(32),
        prev_timestamp_ms=0, state_digest=bytes(32), now_ms=tx.valid_from_ms,
    )
    assert block is not None and [t.hash for t in block.txs] == [tx.hash]
    raw = block.encode()
    assert len(raw) <= block_bytes
    assert len(raw) + BLOCK_MSG_HEADROOM_BYTES <= cfg.raft.max_bytes_per_msg
    assert Block.decode(raw).hash == block.hash
