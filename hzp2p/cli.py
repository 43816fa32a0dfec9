"""The `hzp2p` command: one argparse tree; each concern registers its own subcommands.

Exit status: 0 success, 1 the operation failed (one-line reason on stderr),
2 wrong usage. Subcommand modules expose `register(subparsers)`; each parser
sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in help order. A module that is not
# there yet is skipped, so the command works while the tree grows.
SUBCOMMAND_MODULES = (
    "hzp2p.tools.cli",  # init, demo
    "hzp2p.tools.join",  # keygen, join
    "hzp2p.tools.sensor",  # sensor sign
    "hzp2p.tools.venue",  # venue qr
    "hzp2p.node.cli",  # run
    "hzp2p.admin.cli",  # admin ...
    "hzp2p.sim.cli",  # fuzz, sim
    "hzp2p.analytics.cli",  # export, query
    "hzp2p.admin.cli_receipt",  # verify-receipt
    "hzp2p.gateway.cli",  # gateway, verify-code
    "hzp2p.app.citizen",  # citizen ... (a citizen's app over a gateway)
    "hzp2p.app.institution",  # institution ... (a member's records client over a gateway)
)


class UsageError(Exception):
    """Wrong usage discovered after parsing (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hzp2p", description="A permissioned ledger for public health.")
    parser.add_argument("--version", action="version", version="hzp2p 0.1.0")
    # The command itself, for a subcommand that runs others in-process (`hzp2p demo`) without
    # importing this top layer.
    parser.set_defaults(hzp2p_main=main)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = func(args)
    except UsageError as exc:
        print(f"hzp2p: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except RecursionError:
        print("hzp2p: error: an argument is nested too deeply", file=sys.stderr)
        return 2
    except Exception as exc:  # the last resort: never a traceback, always one line
        if os.environ.get("HZP2P_DEBUG"):
            raise  # for whoever reports it: the whole traceback
        name = type(exc).__name__
        print(f"hzp2p: internal error ({name}): {str(exc).splitlines()[0] if str(exc) else name}"
              " (please report it)", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
