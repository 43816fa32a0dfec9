"""Fixtures for the storage tests: one harness per implementation (memory, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import Harness

from hzp2p.storage import SyncStorage


@pytest.fixture(params=["memory", "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path)
    yield h
    h.close()


@pytest.fixture
def store(harness: Harness) -> SyncStorage:
    return harness.store
