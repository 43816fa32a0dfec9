"""`hzp2p init`: write a ready local consortium (genesis, per-node configs, keys, data dirs).

It owns the on-disk layout of a local cluster so `hzp2p run`, the demo and the
integration tests all start from the same files:

    DIR/genesis.toml
    DIR/nodeK/config.toml      (the format hzp2p.config reads; paths relative)
    DIR/nodeK/signing.key      (institution key, mode 0600, hzp2p.node.keys)
    DIR/nodeK/node.key         (transport identity, mode 0600)
    DIR/nodeK/data/            (Raft log, blocks, state, admin socket)

Node 1 and node 2 are authorities; the rest take the other roles in turn
(hzp2p.ledger.genesis.local_roles). Nodes 1..N vote; the next L are learners.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from hzp2p.ledger.genesis import make_local_genesis
from hzp2p.node.keys import write_key_file

MAX_NODES = 64
DEFAULT_BASE_PORT = 7100


class ScaffoldError(Exception):
    """The consortium cannot be written (non-empty directory, I/O error)."""


@dataclass(frozen=True, slots=True)
class NodeFiles:
    node_id: int
    directory: Path
    config: Path
    address: str
    roles: tuple[str, ...]
    voter: bool


def _config_text(
    node_id: int, listen: str, seeds: list[str], tick_ms: int, election_ticks: int
) -> str:
    seed_list = ", ".join(f'"{s}"' for s in seeds)
    return (
        f"# hzp2p node {node_id}, written by `hzp2p init`; see docs/operations.md.\n"
        f"node_id = {node_id}\n"
        'genesis = "../genesis.toml"\n'
        'data_dir = "data"\n'
        f'listen = "{listen}"\n'
        f"seeds = [{seed_list}]\n"
        'signing_key = "signing.key"\n'
        'node_key = "node.key"\n'
        "\n[raft]\n"
        f"tick_ms = {tick_ms}\n"
        f"election_ticks = {election_ticks}\n"
        "heartbeat_ticks = 2\n"
        "\n[ledger]\n"
        "block_interval_ms = 20\n"
        "\n[log]\n"
        'level = "info"\n'
        'format = "json"\n'
    )


def write_consortium(
    directory: str | os.PathLike[str],
    n_voters: int,
    n_learners: int = 0,
    *,
    host: str = "127.0.0.1",
    base_port: int = DEFAULT_BASE_PORT,
    tick_ms: int = 50,
    election_ticks: int = 10,
) -> list[NodeFiles]:
    """Write the consortium under `directory` (created if missing; must be empty)."""
    root = Path(directory)
    if root.exists():
        if not root.is_dir():
            raise ScaffoldError(f"{root}: exists and is not a directory")
        if any(root.iterdir()):
            raise ScaffoldError(f"{root}: directory is not empty; refusing to overwrite")
    genesis, secrets = make_local_genesis(n_voters, n_learners, host, base_port)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "genesis.toml").write_text(genesis.to_toml(), encoding="utf-8")
        out: list[NodeFiles] = []
        addresses = {i.inst_id: i.address for i in genesis.institutions}
        for inst in genesis.institutions:
            k = inst.inst_id
            node_dir = root / f"node{k}"
            (node_dir / "data").mkdir(parents=True)
            os.chmod(node_dir / "data", 0o700)
            write_key_file(node_dir / "signing.key", SigningKey(secrets[k].signing_seed))
            write_key_file(node_dir / "node.key", SigningKey(secrets[k].node_seed))
            seeds = [a for nid, a in sorted(addresses.items()) if nid != k]
            cfg = node_dir / "config.toml"
            cfg.write_text(
                _config_text(k, inst.address, seeds, tick_ms, election_ticks), encoding="utf-8"
            )
            out.append(NodeFiles(k, node_dir, cfg, inst.address, inst.roles, inst.voter))
    except OSError as exc:
        raise ScaffoldError(f"{root}: cannot write the consortium: {exc.strerror}") from None
    return out
