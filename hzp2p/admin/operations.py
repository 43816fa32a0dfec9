"""The operations a node offers, declared once each.

Every operation is one `Command` (hzp2p.admin.cli_common): its admin method and wire
parameters, what it answers, and its `hzp2p admin` subcommand. The admin server checks
a request's parameters against `METHOD_PARAMS` before the handler runs; the daemon
serves each operation with the method of the same name on hzp2p.node.handlers.Handlers
and refuses to start if one has no handler. Adding an operation therefore takes one
declaration here (or in the module of its concern, listed below) and one handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from hzp2p.admin.cli import COMMANDS
from hzp2p.admin.cli_common import Command
from hzp2p.admin.protocol import Param

OPERATIONS: Final[tuple[Command, ...]] = COMMANDS
"""Every operation (the submit commands are declared in hzp2p.admin.cli_submit)."""

METHOD_PARAMS: Final[Mapping[str, tuple[Param, ...]]] = {op.method: op.wire for op in OPERATIONS}
"""Admin method -> its parameters, as the server checks them."""

assert len(METHOD_PARAMS) == len(OPERATIONS), "two operations share an admin method"
