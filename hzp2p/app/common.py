"""What every `hzp2p citizen` / `institution` subcommand shares: options, errors, output.

Kept free of httpx (the `gateway` extra) so that registering the commands costs every
`hzp2p` invocation nothing: `run` imports hzp2p.app.session when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hzp2p.app.session import Session

from hzp2p.app.errors import AppError
from hzp2p.contracts.schema import ID_RE

GATEWAY_ENV = "HZP2P_GATEWAY"


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not 0 < v <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 < S <= 3600)")
    return v


def add_common(p: argparse.ArgumentParser, key_help: str | None) -> None:
    """--gateway, --key (unless key_help is None: public requests), --ca, --insecure, --json."""
    p.add_argument("--gateway", metavar="URL", default=os.environ.get(GATEWAY_ENV),
                   help=f"the gateway's base URL (default: ${GATEWAY_ENV})")
    if key_help is not None:
        p.add_argument("--key", type=Path, required=True, metavar="FILE", help=key_help)
    p.add_argument("--ca", metavar="FILE", help="CA bundle that signed the gateway's certificate")
    p.add_argument("--insecure", action="store_true",
                   help="do not check the gateway's TLS certificate (tests only)")
    p.add_argument("--timeout", type=_seconds, default=30.0, metavar="S",
                   help="give up on an answer after this long (30)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(prog: str, args: argparse.Namespace,
        op: Callable[[Session, argparse.Namespace], tuple[Any, str]]) -> int:
    """Open a session from the common options, run `op` -> (JSON result, text), print it."""
    if not args.gateway:
        print(f"hzp2p {prog}: error: --gateway URL is required (or set ${GATEWAY_ENV})",
              file=sys.stderr)
        return 2
    try:
        from hzp2p.app.session import Session
    except ImportError as exc:
        print(f"hzp2p {prog}: talking to a gateway needs the gateway extra "
              f"(pip install 'hzp2p[gateway]'; {exc.name} is missing)", file=sys.stderr)
        return 1
    session: Session | None = None
    try:
        session = Session(args.gateway, getattr(args, "key", None), ca=args.ca, insecure=args.insecure,
                          timeout_s=args.timeout)
        result, text = op(session, args)
    except AppError as exc:
        if args.json:  # the problem document or rejected receipt, else why in one line
            print(json.dumps(exc.body if exc.body is not None else
                             {"ok": False, "error": str(exc)}))
        print(f"hzp2p {prog}: {'error: ' if exc.code == 2 else ''}{exc}", file=sys.stderr)
        return exc.code
    finally:
        if session is not None:
            session.close()
    print(json.dumps(result) if args.json else text)
    return 0


def ident(text: str) -> str:
    """An argparse type: a record, grant, appeal or exposure id as the contracts accept it."""
    if not ID_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: ids are 1..64 of [A-Za-z0-9._:-]")
    return text


def no_subcommand(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The `func` of a command group run without a subcommand: its usage, exit 2."""

    def func(_args: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: name a subcommand (--help lists them)", file=sys.stderr)
        return 2

    return func
