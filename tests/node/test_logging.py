"""Structured logs carry node_id, term and role on every line."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from hzp2p.node.logging import NodeLogContext, configure_logging


@pytest.fixture(autouse=True)
def _reset_structlog() -> object:
    yield None
    structlog.reset_defaults()


def test_json_lines_carry_node_context() -> None:
    out = io.StringIO()
    ctx = NodeLogContext(node_id=2)
    configure_logging(level="info", fmt="json", context=ctx, stream=out)
    log = structlog.get_logger("hzp2p.test")
    log.info("started", port=7002)
    ctx.update(term=5, role="leader")
    log.warning("elected", votes=2, key=b"\x01\x02")
    log.debug("hidden")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["event"] == "started" and first["port"] == 7002
    assert (first["node_id"], first["term"], first["role"]) == (2, 0, "follower")
    assert (second["node_id"], second["term"], second["role"]) == (2, 5, "leader")
    assert second["level"] == "warning" and second["key"] == "0102"
    assert "ts" in second


def test_debug_level_and_console_format() -> None:
    out = io.StringIO()
    configure_logging(level="debug", fmt="console", context=NodeLogContext(node_id=9), stream=out)
    structlog.get_logger().debug("details", x=1)
    text = out.getvalue()
    assert "details" in text and "node_id=9" in text and "role=follower" in text


def test_exceptions_are_rendered_in_json() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", context=NodeLogContext(node_id=1), stream=out)
    try:
        raise ValueError("bad block")
    except ValueError:
        structlog.get_logger().exception("apply_failed")
    line = json.loads(out.getvalue())
    assert "ValueError: bad block" in line["exception"]


def test_bad_settings_refused() -> None:
    with pytest.raises(ValueError):
        configure_logging(level="loud")
    with pytest.raises(ValueError):
        configure_logging(fmt="xml")
