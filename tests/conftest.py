"""Shared pytest configuration: hypothesis profiles and the soak-test switch."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("HZP2P_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: run with HZP2P_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
