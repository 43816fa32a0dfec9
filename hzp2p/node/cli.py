"""`hzp2p run`: the daemon's subcommand.

It owns argument parsing and exit statuses for `hzp2p run` (0 ok, 1 the
operation failed with a one-line reason on stderr, 2 wrong usage or a bad
config file); the work is in hzp2p.node.daemon. `hzp2p init` and `hzp2p demo`
are tools (hzp2p.tools.cli).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_run(args: argparse.Namespace) -> int:
    from hzp2p.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"hzp2p run: {exc}", file=sys.stderr)
        return 2
    from hzp2p.admin.server import AdminSocketError
    from hzp2p.node.daemon import run_node
    from hzp2p.storage import StorageError

    expected = (ConfigError, StorageError, AdminSocketError, OSError)
    try:
        return run_node(cfg)
    except expected as exc:
        return _run_failed(exc, str(cfg.listen))
    except BaseExceptionGroup as group:
        # Trio wraps a task's failure in an exception group; name the first real cause.
        match, rest = group.split(expected)
        if match is None or rest is not None:
            raise
        return _run_failed(_leaves(match)[0], str(cfg.listen))


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _run_failed(exc: BaseException, listen: str) -> int:
    import errno

    from hzp2p.config import ConfigError

    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        detail = f"cannot listen on {listen}: address already in use (another daemon?)"
    elif isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        detail = str(exc)
    print(f"hzp2p run: {detail}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigError) else 1


def register(subparsers: Any) -> None:
    r = subparsers.add_parser("run", help="run a node in the foreground (JSON logs on stderr)")
    r.add_argument("--config", required=True, metavar="CFG")
    r.add_argument("--json", action="store_true", help="(logs are JSON already; accepted)")
    r.set_defaults(func=cmd_run)
