"""What every `hzp2p admin` subcommand module shares: the command record, usage errors,
and the plain-text rendering of results.

It exists so the subcommands can live in modules by concern (hzp2p.admin.cli for
the parser, runner and read/membership commands; hzp2p.admin.cli_submit for the
submit commands) without importing each other.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hzp2p.admin.protocol import MAX_INT, Param

DEFAULT_WAIT_S = 10.0
WAIT_MARGIN_S = 5.0
"""Extra client time beyond --wait, so the daemon's own answer arrives first."""
PROG = "hzp2p admin"


class Usage(Exception):
    """Wrong usage found after parsing (exit 2)."""


@dataclass(frozen=True)
class Command:
    """One operation a node offers, declared once: its admin method and wire parameters
    (checked by the server before the handler runs), what it answers, and its `hzp2p admin`
    subcommand (arguments, rendering, what counts as failure). The daemon serves it with
    the handler of the same name (hzp2p.node.handlers); see hzp2p.admin.operations."""

    name: str
    method: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    params: Callable[[argparse.Namespace], dict[str, Any]]
    render: Callable[[Any], str]
    failure: Callable[[argparse.Namespace, Any], str | None] = lambda _a, _r: None
    """A one-line reason when the result means the operation failed (exit 1)."""
    reads: bool = False
    waits: bool = False
    call: Callable[[Path, dict[str, Any], float], Any] | None = None
    """Instead of one `call_sync(socket, method, params)`: (socket, params, timeout) -> result
    (a command that needs several requests, e.g. submit-many)."""
    streams: bool = False
    """`call` prints its own output as it comes (JSON lines); the runner prints nothing more."""
    wire: tuple[Param, ...] = ()
    """The admin method's parameters, as the server checks them."""
    result: str = ""
    """What the method answers (the JSON keys), for docs and `hzp2p admin --help`."""


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) or "-"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def render_mapping(result: Any, skip: tuple[str, ...] = ()) -> str:
    if not isinstance(result, Mapping):
        return fmt(result)
    lines = []
    for key, value in result.items():
        if key in skip:
            continue
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{key}:")
            lines.extend(f"  {row(v)}" for v in value)
        else:
            lines.append(f"{key}: {fmt(value)}")
    return "\n".join(lines)


def row(item: Mapping[str, Any]) -> str:
    return "  ".join(f"{k}={fmt(v)}" for k, v in item.items())


def iso_ms(t_ms: Any) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time (what people read), '-' for none."""
    import datetime as dt

    if not isinstance(t_ms, int) or isinstance(t_ms, bool):
        return "-"
    try:
        return dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(t_ms)


def celsius(centi: Any) -> str:
    """Hundredths of a degree as °C."""
    if not isinstance(centi, int) or isinstance(centi, bool):
        return "-"
    return f"{centi / 100:.2f} °C"


def table(columns: list[str], rows: list[list[str]], title: str | None = None) -> str:
    """A plain-text table for people (rich, no colour codes, so it pipes and greps)."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for r in rows:
        t.add_row(*r)
    out = io.StringIO()
    Console(file=out, width=160, color_system=None, highlight=False).print(t)
    return out.getvalue().rstrip()


# -- argparse types several subcommand modules share (argparse turns their errors into exit 2)

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def non_negative_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{MAX_INT}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def pseudonym_arg(text: str) -> str:
    if not _PSEUDONYM.fullmatch(text.lower()):
        raise argparse.ArgumentTypeError(
            f"a subject pseudonym is 32 hex digits (hzp2p.crypto.records.pseudonym), got {text!r}"
        )
    return text.lower()


def lot_id_arg(text: str) -> str:
    if not _ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a lot id is 1..64 of [A-Za-z0-9._:-], got {text!r}")
    return text
