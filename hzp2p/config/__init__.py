"""A node's configuration: one TOML file read with tomllib, checked against declared sections.

It owns the file format, the defaults and every check on it, so the daemon
never sees an unchecked value. The schema is declared once per section
(hzp2p.config.sections: msgspec Structs whose annotations carry types, bounds
and documentation); one reader checks any section against its declaration
(hzp2p.config.reader) and the reference tables in docs/operations.md are
written from it (hzp2p.config.reference). Every problem raises ConfigError
naming the file, the field (as a dotted path, e.g. `raft.election_ticks`) and
what is wrong; unknown fields are refused (a typo must not silently fall back
to a default). Relative paths are resolved against the config file's directory.

    cfg = load_config("cluster/node1/config.toml")
    cfg.raft.tick_ms, cfg.admin.socket, cfg.advertise_address
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hzp2p.config.reader import ConfigError, read_section
from hzp2p.config.sections import (
    BLOCK_MSG_HEADROOM_BYTES,
    DB_FILE,
    DEFAULT_ADMIN_MAX_REQUEST_BYTES,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_NODE_ID,
    MAX_UNIX_SOCKET_PATH_BYTES,
    AdminSection,
    GatewaySection,
    HostPort,
    LedgerSection,
    LogSection,
    MetricsSection,
    NetSection,
    NodeConfig,
    RaftSection,
    block_bytes_bound,
    parse_host_port,
)

__all__ = [
    "BLOCK_MSG_HEADROOM_BYTES",
    "DB_FILE",
    "DEFAULT_ADMIN_MAX_REQUEST_BYTES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_NODE_ID",
    "MAX_UNIX_SOCKET_PATH_BYTES",
    "AdminSection",
    "ConfigError",
    "GatewaySection",
    "HostPort",
    "LedgerSection",
    "LogSection",
    "MetricsSection",
    "NetSection",
    "NodeConfig",
    "RaftSection",
    "block_bytes_bound",
    "load_config",
    "parse_config",
    "parse_host_port",
]


def parse_config(data: Mapping[str, Any], *, path: Path | str) -> NodeConfig:
    """Validate an already-parsed TOML document; `path` names the file in errors and anchors paths."""
    file = Path(path).absolute()
    return read_section(NodeConfig, dict(data), file=file, prefix="", outer={"path": file})


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
