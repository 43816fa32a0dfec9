"""`hzp2p init` and `hzp2p demo`: the tools' subcommands.

It owns argument parsing and exit statuses for these two commands (0 ok, 1 the
operation failed with a one-line reason on stderr, 2 wrong usage); the work is
in hzp2p.tools.scaffold and hzp2p.tools.demo. `hzp2p run` is hzp2p.node.cli.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hzp2p.tools.scaffold import DEFAULT_BASE_PORT, MAX_NODES, ScaffoldError, write_consortium


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _port(text: str) -> int:
    v = _positive(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1..65535), got {v}")
    return v


def _host(text: str) -> str:
    if not text or any(c.isspace() or c in "[]/\"'" for c in text) or ":" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name or IPv4 address")
    return text


def _usage(msg: str) -> int:
    print(f"hzp2p: error: {msg}", file=sys.stderr)
    return 2


def cmd_init(args: argparse.Namespace) -> int:
    total = args.nodes + args.learners
    if total > MAX_NODES:
        return _usage(f"--nodes + --learners must be at most {MAX_NODES}, got {total}")
    if args.base_port + total - 1 > 65535:
        return _usage(f"--base-port {args.base_port} leaves no room for {total} ports")
    try:
        nodes = write_consortium(
            args.dir, args.nodes, args.learners, host=args.host, base_port=args.base_port
        )
    except ScaffoldError as exc:
        print(f"hzp2p init: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out: dict[str, Any] = {
            "dir": str(args.dir),
            "genesis": str(args.dir / "genesis.toml"),
            "nodes": [
                {"node_id": n.node_id, "config": str(n.config), "address": n.address,
                 "roles": list(n.roles), "voter": n.voter}
                for n in nodes
            ],
        }
        print(json.dumps(out))
    else:
        print(f"wrote a {args.nodes}-voter consortium ({args.learners} learners) in {args.dir}")
        for n in nodes:
            kind = "voter" if n.voter else "learner"
            print(f"  node{n.node_id}: {n.address} {'/'.join(n.roles)} ({kind}) -> {n.config}")
        print(f"start each node with: hzp2p run --config {args.dir}/nodeK/config.toml")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from hzp2p.tools.demo import run_demo
    except ModuleNotFoundError as exc:
        if exc.name != "hzp2p.tools.demo":
            raise
        print("hzp2p demo: not available in this build", file=sys.stderr)
        return 1
    return run_demo(json_output=args.json, keep=args.keep,
                    hzp2p_main=getattr(args, "hzp2p_main", None))


def register(subparsers: Any) -> None:
    from pathlib import Path

    p = subparsers.add_parser("init", help="write a ready local consortium (genesis, configs, keys)")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--nodes", type=_positive, required=True, help="voting nodes")
    p.add_argument("--learners", type=_non_negative, default=0, help="non-voting nodes")
    p.add_argument("--host", type=_host, default="127.0.0.1")
    p.add_argument("--base-port", type=_port, default=DEFAULT_BASE_PORT,
                   help="node K listens on base-port + K - 1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_init)

    d = subparsers.add_parser("demo", help="a local 3-node cluster tells a public-health story")
    d.add_argument("--json", action="store_true")
    d.add_argument("--keep", action="store_true", help="keep the temporary directory; at the end, serve the web pages "
                   "(dashboard, Alice's page) until Enter")
    d.set_defaults(func=cmd_demo)
