"""`hzp2p keygen` and `hzp2p join`: an institution's keys and its joining config, without Python.

`keygen DIR --kind K` writes fresh secret keys (mode 0600, never over an existing file)
and prints their public halves: `signing` (the institution's transaction key), `node`
(its daemon's transport identity), `encryption` (X25519, for sealed record keys) and
`sensor` (a cold-chain sensor's key, `--name` its file), `venue` (the key a venue signs its
daily QR code with; `--name` its file when no sensor key is asked for too), and `citizen`
(a citizen's key, DIR/citizen.key, whose public half names her pseudonym: what `hzp2p
citizen --key` signs with; not part of `all`, which is an institution's set). `join` prepares a joining
institution's directory in two steps, because its node id is only known once the
authorities have admitted it:

1. `hzp2p join DIR --genesis G --address HOST:PORT --name N --roles R` copies the
   consortium's genesis, makes the signing and node keys, and prints the exact
   `hzp2p admin ... add-learner --file DIR/join.json` command an authority runs
   (join.json holds exactly add-learner's fields);
2. after the vote, `hzp2p join DIR --node-id ID` writes DIR/config.toml (its seeds are
   the genesis institutions' addresses), ready for `hzp2p run --config DIR/config.toml`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from nacl.public import PrivateKey

from hzp2p.config import ConfigError, load_config, parse_host_port
from hzp2p.crypto.records import pseudonym
from hzp2p.ledger.genesis import ROLES, GenesisError, load_genesis
from hzp2p.node.keys import (
    KeyFileError,
    generate_signing_key,
    load_signing_key,
    verify_key_hex,
    write_key_file,
    write_seed_file,
)

KINDS = ("signing", "node", "encryption", "sensor", "venue")
CITIZEN = "citizen"
JOIN_FILE = "join.json"


class JoinError(Exception):
    """The operation cannot be done as asked (exit 1); str() is the one-line reason."""


def keygen(directory: Path, kinds: list[str], name: str | None = None) -> dict[str, Any]:
    """Write the keys of `kinds` into `directory`; returns {kind: {file, public_key}} (and
    a citizen key's pseudonym)."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for kind in kinds:
        named = kind == "sensor" or (kind == "venue" and "sensor" not in kinds)
        stem = (name or kind) if named else kind  # --name names the sensor's, else the venue's
        path = directory / f"{stem}.key"
        try:
            if kind == "encryption":
                secret = PrivateKey.generate()
                write_seed_file(path, bytes(secret))
                public = bytes(secret.public_key).hex()
            else:
                key = generate_signing_key()
                write_key_file(path, key)
                public = verify_key_hex(key)
        except KeyFileError as exc:
            raise JoinError(str(exc)) from None
        out[kind] = {"file": str(path), "public_key": public}
        if kind == CITIZEN:  # her name on chain: what `hzp2p citizen whoami` prints too
            out[kind]["pseudonym"] = pseudonym(bytes.fromhex(public))
    return out


def prepare(directory: Path, genesis: Path, address: str, name: str,
            roles: list[str]) -> dict[str, Any]:
    """Step 1: genesis copy, keys, and the add-learner command for an authority."""
    try:
        g = load_genesis(genesis)
    except (GenesisError, OSError) as exc:
        raise JoinError(f"--genesis {genesis}: {exc}") from None
    if (directory / JOIN_FILE).exists():
        raise JoinError(f"{directory} already holds a joining institution ({JOIN_FILE})")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(genesis, directory / "genesis.toml")
    keys = keygen(directory, ["signing", "node"])
    info = {  # exactly add-learner's fields: `admin add-learner --file DIR/join.json`
        "name": name,
        "roles": sorted(set(roles)),
        "address": address,
        "signing_key": keys["signing"]["public_key"],
        "node_key": keys["node"]["public_key"],
    }
    (directory / JOIN_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {**info, "chain_id": g.chain_id, "join_file": str(directory / JOIN_FILE),
            "add_learner": f"hzp2p admin --config AUTHORITY_CONFIG add-learner --file "
                           f"{directory / JOIN_FILE}"}


def finish(directory: Path, node_id: int) -> dict[str, Any]:
    """Step 2: the config for node `node_id` (the id the admission assigned)."""
    try:
        info = json.loads((directory / JOIN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise JoinError(f"{directory} was not prepared by `hzp2p join` (no {JOIN_FILE})") from None
    g = load_genesis(directory / "genesis.toml")
    if any(i.inst_id == node_id for i in g.institutions):
        raise JoinError(f"node id {node_id} belongs to a founding institution; "
                        "use the id the admission assigned (admin members)")
    for kind in ("signing", "node"):
        try:
            key = load_signing_key(directory / f"{kind}.key")
        except KeyFileError as exc:
            raise JoinError(str(exc)) from None
        if verify_key_hex(key) != info[f"{kind}_key"]:
            raise JoinError(f"{directory}/{kind}.key does not match {JOIN_FILE}")
    cfg = directory / "config.toml"
    if cfg.exists():
        raise JoinError(f"{cfg} already exists")
    seeds = ", ".join(f'"{i.address}"' for i in g.institutions)
    cfg.write_text(
        f"# hzp2p node {node_id} ({info['name']}), written by `hzp2p join`; see "
        "docs/operations.md.\n"
        f"node_id = {node_id}\n"
        'genesis = "genesis.toml"\n'
        'data_dir = "data"\n'
        f'listen = "{info["address"]}"\n'
        f"seeds = [{seeds}]\n"
        'signing_key = "signing.key"\n'
        'node_key = "node.key"\n',
        encoding="utf-8",
    )
    try:
        load_config(cfg)  # what we wrote must load
    except ConfigError as exc:
        cfg.unlink()
        raise JoinError(str(exc)) from None
    return {"config": str(cfg), "node_id": node_id,
            "run": f"hzp2p run --config {cfg}"}


# ---------------------------------------------------------------- the commands


def _address(text: str) -> str:
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    unknown = sorted(set(roles) - ROLES)
    if not roles or unknown:
        raise argparse.ArgumentTypeError(
            f"roles are a comma-separated list from {', '.join(sorted(ROLES))}")
    return roles


def _node_id(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node id") from None
    if not 1 <= v < 2**63:
        raise argparse.ArgumentTypeError("node ids are positive integers")
    return v


def _print(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    print(json.dumps(result) if args.json else text)


def cmd_keygen(args: argparse.Namespace) -> int:
    asked = args.kind or ["signing", "node"]
    order = (*KINDS, CITIZEN)
    kinds = ([*KINDS, *([CITIZEN] if CITIZEN in asked else [])] if "all" in asked
             else sorted(set(asked), key=order.index))
    try:
        out = keygen(args.dir, kinds, args.name)
    except JoinError as exc:
        print(f"hzp2p keygen: {exc}", file=sys.stderr)
        return 1
    _print(args, out, "\n".join(f"{k:<10} {v['public_key']}  ({v['file']}, mode 0600)"
                                + (f"\n{'':<10} pseudonym {v['pseudonym']}" if "pseudonym" in v
                                   else "") for k, v in out.items()))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    try:
        if args.node_id is not None:
            if args.genesis or args.address or args.name or args.roles:
                print("hzp2p join: error: --node-id finishes a prepared directory; give it alone",
                      file=sys.stderr)
                return 2
            out = finish(args.dir, args.node_id)
            _print(args, out, f"wrote {out['config']}\nstart the node with: {out['run']}")
            return 0
        missing = [f"--{n}" for n in ("genesis", "address", "name", "roles")
                   if getattr(args, n) is None]
        if missing:
            print(f"hzp2p join: error: preparing needs {', '.join(missing)}", file=sys.stderr)
            return 2
        out = prepare(args.dir, args.genesis, args.address, args.name, args.roles)
    except JoinError as exc:
        print(f"hzp2p join: {exc}", file=sys.stderr)
        return 1
    _print(args, out, (
        f"prepared {args.dir} for {out['name']} ({', '.join(out['roles'])}) on {out['chain_id']}\n"
        f"  signing key {out['signing_key']}\n  node key    {out['node_key']}\n"
        f"an authority proposes the admission with:\n  {out['add_learner']}\n"
        f"after the vote: hzp2p join {args.dir} --node-id ID   (ID: `admin members`)"))
    return 0


def register(subparsers: Any) -> None:
    k = subparsers.add_parser("keygen", help="make key files (0600) and print their public halves")
    k.add_argument("dir", type=Path, metavar="DIR")
    k.add_argument("--kind", action="append", choices=(*KINDS, CITIZEN, "all"), default=None,
                   help="which key (repeatable; default: signing and node)")
    k.add_argument("--name", help="the sensor or venue key's file name (DIR/NAME.key)")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_keygen)

    j = subparsers.add_parser("join", help="prepare a joining institution's keys and config")
    j.add_argument("dir", type=Path, metavar="DIR")
    j.add_argument("--genesis", type=Path, help="the consortium's genesis.toml")
    j.add_argument("--address", type=_address, help="this node's host:port")
    j.add_argument("--name", help="the institution's name")
    j.add_argument("--roles", type=_roles, help="comma-separated roles")
    j.add_argument("--node-id", type=_node_id, help="finish: the id the admission assigned")
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=cmd_join)
