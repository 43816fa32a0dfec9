"""Fixtures for the admin tests: short socket directories and a threaded fake daemon."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_helpers import ThreadedServer


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory path (Unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="hzadm") as d:
        yield Path(d)


@pytest.fixture
def threaded_server(short_tmp: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(short_tmp / "admin.sock") as srv:
        yield srv
