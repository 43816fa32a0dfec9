"""`hzp2p demo --keep` ends by printing the URLs of the dashboard and of Alice's page and
serving them until Enter: her page, opened from that URL in a real browser, holds her key
and decrypts her vaccination record; the venue page verifies her code. The screenshots
(artifacts: demo-*.png) are the README's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PHONE, artifacts_dir

pytestmark = pytest.mark.slow
LINE = re.compile(r"\s+(dashboard|Alice's page|venue check)\s+(http://\S+)")


def test_demo_keep_serves_the_pages(browser: Any, open_page: Any) -> None:
    demo = subprocess.Popen([sys.executable, "-m", "hzp2p.cli", "demo", "--keep"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert demo.stdin is not None and demo.stdout is not None and demo.stderr is not None
    urls: dict[str, str] = {}
    try:
        for line in demo.stdout:
            m = LINE.match(line)
            if m:
                urls[m.group(1)] = m.group(2)
            if len(urls) == 3:
                break
        assert len(urls) == 3, f"demo printed no URLs (exit {demo.poll()})"
        assert re.search(r"/citizen#key=[0-9a-f]{64}$", urls["Alice's page"])

        w = open_page({"width": 1100, "height": 1300})
        w.page.goto(urls["dashboard"])
        w.page.wait_for_selector("body[data-ready=true]")
        assert "City Hospital" in w.page.locator("#members").inner_text()
        w.shot("demo-dashboard", full_page=False)

        alice = open_page({"width": PHONE["width"], "height": 1400})
        page = alice.page
        page.goto(urls["Alice's page"])
        page.wait_for_selector("body[data-loaded]")
        assert "#key" not in page.url  # moved into the browser's storage, out of the address bar
        # the story ends with her appeal corrected: green
        assert page.locator("#code-colour").get_attribute("data-colour") == "green"
        page.get_by_role("button", name="Decrypt VAX-1").click()
        page.locator("[data-record=VAX-1] dl").wait_for()
        assert "Alice" in page.locator("[data-record=VAX-1]").inner_text()
        assert "treatment" in page.locator("#access-log").inner_text()
        page.evaluate("window.scrollTo(0, 0)")
        alice.shot("demo-citizen", full_page=False)
        credential = page.locator("#credential").text_content()
        assert credential and credential.startswith("HZ1:")

        venue = alice.page.context.new_page()
        venue.goto(urls["venue check"])
        venue.wait_for_selector("body[data-ready=true]")
        venue.fill("#code-text", credential)
        venue.click("#verify-form button[type=submit]")
        venue.wait_for_selector("#verdict[data-ok=true][data-colour=green]")
        venue.set_viewport_size({"width": PHONE["width"], "height": 1000})
        venue.screenshot(path=str(artifacts_dir() / "demo-venue.png"))
    finally:
        demo.stdin.close()  # Enter: the demo stops its daemons
        rc = demo.wait(timeout=120)
        err = demo.stderr.read()
        kept = re.search(r"kept (\S+)", err)
        if kept:
            shutil.rmtree(Path(kept.group(1)), ignore_errors=True)
    assert rc == 0, err[-2000:]
