"""A real headless Chromium (Debian's `chromium` package) driven by Playwright, against a
real daemon and a real `hzp2p gateway` process (hzp2p.tools.gatewayrun).

Skips, saying why, when Chromium, the playwright package or the built page scripts are
missing; .ci/run installs and builds all three, so in CI these tests run. Each page
records console errors and uncaught exceptions; a test fails on any. Screenshots go to
$HZP2P_TEST_ARTIFACTS/browser (default tmp/test-artifacts/browser in the checkout, not
committed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hzp2p.gateway.page import BUILD_HINT, DIST_DIR
from hzp2p.tools.gatewayrun import Gateway, running_gateway

CHROMIUM = os.environ.get("HZP2P_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Playwright already passes --headless and --no-sandbox (as root) and gives every launch a
# fresh temporary profile (its own --user-data-dir); these keep the browser off the network.
CHROMIUM_ARGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
LIMITS = """rate_per_key_per_s = 200.0
burst_per_key = 400
rate_per_address_per_s = 10000.0
burst_per_address = 10000
"""


def artifacts_dir() -> Path:
    root = os.environ.get("HZP2P_TEST_ARTIFACTS")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "tmp" / "test-artifacts"
    d = base / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _why_skip() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[browser]')"
    if not (DIST_DIR / "citizen.js").exists():
        return f"the page scripts are not built ({BUILD_HINT})"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module, closed (and Playwright's event loop with it) before
    the rest of the suite runs."""
    why = _why_skip()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("web") / "c", LIMITS) as g:
        yield g


class Watched:
    """A page and the console errors and exceptions it produced."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("dialog", lambda d: d.accept())

    def shot(self, name: str, full_page: bool = True) -> Path:
        path = artifacts_dir() / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """open_page(viewport) -> Watched, in a fresh context (own storage); asserts no errors."""
    contexts: list[Any] = []
    watched: list[Watched] = []

    def make(viewport: dict[str, int] = DESKTOP, locale: str = "en-GB") -> Watched:
        ctx = browser.new_context(viewport=viewport, locale=locale, accept_downloads=True)
        contexts.append(ctx)
        w = Watched(ctx.new_page())
        watched.append(w)
        return w

    yield make
    for ctx in contexts:
        ctx.close()
    errors = [e for w in watched for e in w.errors]
    assert not errors, errors
