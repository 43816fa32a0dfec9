"""Structured logging for the daemon: structlog, JSON lines (or console) on stderr.

It owns the processor chain so every log line carries the node's id, current
term and role, read from a small mutable NodeLogContext the daemon updates
whenever the Raft core reports a change:

    ctx = NodeLogContext(node_id=cfg.node_id)
    configure_logging(level=cfg.log.level, fmt=cfg.log.format, context=ctx)
    ctx.update(term=5, role="leader")
    structlog.get_logger("hzp2p.node").info("block_committed", height=12)
    # {"event": "block_committed", "height": 12, "node_id": 1, "term": 5, "role": "leader", ...}
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(slots=True)
class NodeLogContext:
    """What every line says about the node; the daemon mutates it in place."""

    node_id: int | None = None
    term: int = 0
    role: str = "follower"

    def update(self, *, term: int | None = None, role: str | None = None) -> None:
        if term is not None:
            self.term = term
        if role is not None:
            self.role = role

    def processor(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        event.setdefault("node_id", self.node_id)
        event.setdefault("term", self.term)
        event.setdefault("role", self.role)
        return event


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "json",
    context: NodeLogContext | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog process-wide (call once at start-up; tests may call again)."""
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format {fmt!r}")
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    if context is not None:
        processors.append(context.processor)
    processors.append(structlog.processors.StackInfoRenderer())
    if fmt == "json":
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False, default=_json_default),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)
