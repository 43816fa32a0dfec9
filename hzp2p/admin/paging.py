"""Paging for every list an operation answers: `--limit N --after CURSOR`, `next` in JSON.

Declared once here for both sides: which operations answer a list (`PAGED`: the
result's list field and the row fields that order it), the CLI's arguments and
rendering (`with_paging` wraps those commands), and the cursor's form. The daemon pages
the handler's whole answer the same way (hzp2p.node.paging), so a handler need not
know about it.

A page is the rows in the list's order (its key fields, compared as a tuple; no key
fields: the list's own order, for append-only logs, whose positions never move) after
the cursor, at most `limit` of them; `next` is the cursor of its last row when more
follow, else null — pass it as `--after` to get the next page (like `state-scan`).
A cursor is the hex of the JSON list of the last row's key values: opaque to people,
checked by both sides.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from hzp2p.admin.cli_common import Command
from hzp2p.admin.protocol import Param

MAX_LIMIT: Final = 100_000
LIMIT = Param("limit", "int", required=False, min_value=1, max_value=MAX_LIMIT)
AFTER = Param("after", "hex", required=False, max_len=2048)


@dataclasses.dataclass(frozen=True)
class Paged:
    """How one operation's list is paged: its field in the result (the first present of
    `fields`) and the row fields ordering it (empty: the list's own, append-only order)."""

    fields: tuple[str, ...]
    key: tuple[str, ...] = ()


PAGED: Final[Mapping[str, Paged]] = {
    "peers": Paged(("peers",), ("node_id",)),
    "members": Paged(("members",), ("inst_id",)),
    "proposals": Paged(("proposals",), ("id",)),
    "subject_records": Paged(("records",)),
    "lot_history": Paged(("events",)),
    "access_log": Paged(("entries",)),
    "doses": Paged(("doses",), ("administered_ms", "subject", "product", "dose")),
    "temperatures": Paged(("readings",), ("t_ms", "height", "sensor_id", "temp_centi_c")),
    "grants": Paged(("grants",), ("grant_id",)),
    "stock": Paged(("stock",), ("custodian", "product")),
    "expiring": Paged(("lots",), ("expiry_ms", "lot_id")),
    "doses_per_day": Paged(("days",), ("day", "product")),
    "reports": Paged(("sums", "reports"), ("metric", "region", "period", "report_id")),
    "datasets": Paged(("datasets",), ("dataset_id",)),
    "exposures": Paged(("exposures",), ("exposure_id",)),
    "appeals": Paged(("appeals",), ("opened_ms", "subject", "appeal_id")),
    "health_code": Paged(("history",)),  # with --history: every change, oldest first
}
"""Admin method -> how its list is paged (every operation that answers a list, but
state-scan, which pages by storage key itself, and watch, which resumes by height)."""


def encode_cursor(key: Sequence[Any]) -> str:
    return json.dumps(list(key), separators=(",", ":")).encode().hex()


def decode_cursor(text: str) -> list[Any]:
    """The key values inside a cursor; ValueError if it is not one."""
    try:
        value = json.loads(bytes.fromhex(text).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor (use the `next` of the previous page)") from None
    if not isinstance(value, list) or not all(
            v is None or isinstance(v, int | str) for v in value):
        raise ValueError("not a cursor (use the `next` of the previous page)")
    return value


def _cursor_arg(text: str) -> str:
    try:
        decode_cursor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.lower()


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..{MAX_LIMIT}, got {text!r}")
    return n


def paged(cmd: Command) -> Command:
    """`cmd` with --limit/--after, their wire parameters, and `(more: --after X)` shown."""

    def add_args(p: argparse.ArgumentParser) -> None:
        cmd.add_args(p)
        p.add_argument("--limit", type=_positive, metavar="N", help="at most N rows")
        p.add_argument("--after", type=_cursor_arg, metavar="CURSOR",
                       help="the rows after this cursor (the `next` of the previous page)")

    def params(args: argparse.Namespace) -> dict[str, Any]:
        out = dict(cmd.params(args))
        if args.limit is not None:
            out["limit"] = args.limit
        if args.after is not None:
            out["after"] = args.after
        return out

    def render(result: Any) -> str:
        text = cmd.render(result)
        nxt = result.get("next") if isinstance(result, Mapping) else None
        return text + (f"\n(more: --after {nxt})" if nxt else "")

    wire = (*tuple(p for p in cmd.wire if p.name not in ("limit", "after")), LIMIT, AFTER)
    result = cmd.result + "; next: the cursor of the next page (pass it as --after), or null"
    return dataclasses.replace(cmd, add_args=add_args, params=params, render=render, wire=wire,
                               result=result)


def with_paging(commands: Sequence[Command]) -> tuple[Command, ...]:
    """Every command in `commands` whose operation answers a list, paged."""
    return tuple(paged(c) if c.method in PAGED else c for c in commands)

