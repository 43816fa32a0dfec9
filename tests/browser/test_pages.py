"""The gateway's pages in a real browser: the dashboard shows the chain's figures; a citizen
creates her key, decrypts a record an institution wrote, grants and revokes access and sees
her access log change; a venue verifies her code. Screenshots are saved (conftest)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest

from hzp2p.client import lab_result_payload
from hzp2p.credentials import qr
from hzp2p.crypto.records import encrypt_record, encryption_public_key, open_sealed_key, seal_key_to
from hzp2p.gateway.client import GatewayClient
from hzp2p.tools.gatewayrun import AUTH, HOSPITAL, LAB, Gateway
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, Watched

pytestmark = pytest.mark.slow
expect = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[browser]')").expect
WAIT_MS = 15_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def admin_submit_raw(gw: Gateway, tx_wire: bytes) -> dict[str, Any]:
    """An institution's transaction, signed with its key, submitted with `hzp2p admin submit-raw`."""
    out = subprocess.run(
        [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(gw.cluster.config(gw.node)), "--json",
         "submit-raw", "-", "--wait", "15"],
        input=tx_wire.hex(), capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    receipt: dict[str, Any] = json.loads(out.stdout)
    assert receipt["status"] == "committed", receipt
    return receipt


def ready(w: Any, path: str, gw: Gateway) -> None:
    w.page.goto(gw.base_url + path)
    w.page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)


def test_dashboard_shows_the_figures(gw: Gateway, open_page: Any) -> None:
    c = gw.cluster
    assert c.submit(AUTH, "notice.publish", {
        "notice_id": "N1", "title": "Masks on buses", "body": "Masks are required on buses.",
        "effective_date": "2026-12-10", "region": "district-1"})["status"] == "committed"
    for i, (region, period, value) in enumerate((("district-1", "2026-W01", 5), ("district-1", "2026-W02", 7),
                                                 ("district-1", "2026-W03", 11), ("district-2", "2026-W03", 3))):
        assert c.submit(AUTH, "epi.report", {"report_id": f"r{i}", "region": region, "metric": "confirmed",
                                             "value": value, "period": period})["status"] == "committed"
    assert c.submit(AUTH, "data.publish", {"dataset_id": "weekly-cases", "metadata": {"format": "csv"},
                                           "content_hash": "ab" * 32, "access": "public"})["status"] == "committed"
    w = open_page()
    page = w.page
    page.clock.install()
    ready(w, "/", gw)
    epi = page.locator("#epi")
    assert epi.locator("figure").count() == 2
    assert page.get_by_role("img", name="confirmed in district-1, by period").is_visible()
    assert "11" in epi.locator("figure").first.inner_text()
    assert "Masks on buses" in page.locator("#notices").inner_text()
    assert "weekly-cases" in page.locator("#datasets").inner_text()
    members = page.locator("#members").inner_text()
    assert "Voters (order blocks): 1" in members and "laboratory" in members
    assert int(page.locator("#height").inner_text()) >= 6
    assert "epi.report" in page.locator("#blocks").inner_text()
    w.shot("dashboard-desktop")
    # chain health follows the chain: a new block shows after the next refresh
    height = c.submit(AUTH, "notice.publish", {
        "notice_id": "N2", "title": "Clinics open late", "body": "Until 21:00.",
        "effective_date": "2026-12-11", "region": "district-2"})["height"]
    page.clock.fast_forward(15_000)
    expect(page.locator("#height")).to_have_text(str(height))  # (no wait_for_function: the CSP forbids eval)
    expect(page.locator("#blocks")).to_contain_text("notice.publish")
    # the block explorer, by keyboard: type a height and press Enter
    page.locator("#block-height").fill("2")
    page.locator("#block-height").press("Enter")
    page.wait_for_selector("#block h3")
    assert "Block 2" in page.locator("#block").inner_text()
    # Chinese
    page.select_option("#lang", "zh")
    assert page.locator("h1").inner_text() == "公共卫生账本"
    assert page.get_by_role("img", name="district-1的confirmed\uff08按周期\uff09").is_visible()
    phone = open_page(PHONE, "zh-CN")
    ready(phone, "/", gw)
    assert phone.page.locator("h1").inner_text() == "公共卫生账本"  # navigator.language picks Chinese
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide on a {PHONE['width']}px phone"
    phone.shot("dashboard-phone-zh")


def test_citizen_key_records_grant_revoke(gw: Gateway, open_page: Any) -> None:
    w = open_page(PHONE)
    page = w.page
    ready(w, "/citizen", gw)
    assert page.locator("#personal").is_hidden()
    assert "lose access" in page.locator(".warning").first.inner_text()
    page.get_by_label("Or paste the key (64 hex digits)").fill("not a key")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#announce.error")).to_contain_text("That is not a key")
    page.get_by_role("button", name="Create a new key").click()
    page.wait_for_selector("#code-colour")
    subject = page.locator("#pseudonym").inner_text()
    public_key = bytes.fromhex(page.locator("#public-key").inner_text())
    assert page.locator("#code-colour").get_attribute("data-colour") == "green"
    # her key, as the page keeps it, names the same pseudonym in Python
    seed = page.evaluate("localStorage.getItem('hzp2p.citizen.seed')")
    alice = nacl.signing.SigningKey(bytes.fromhex(seed))
    assert bytes(alice.verify_key) == public_key
    me = GatewayClient(gw.base_url, alice)
    assert me.pseudonym == subject

    # the lab writes her positive result, encrypted to her and to itself, via the admin command
    lab_key = gw.key(LAB)
    env = encrypt_record("LR1", subject, "lab_result", {"test": "PCR", "ct": 21},
                         {"subject": encryption_public_key(public_key),
                          f"inst:{LAB}": encryption_public_key(bytes(lab_key.verify_key))})
    tx = gw.client(LAB).tx("lab.result", lab_result_payload(
        subject, "T1", "positive", now_ms() - 1000, env.to_payload() | {"record_id": "LR1"}), now_ms())
    admin_submit_raw(gw, tx.encode())

    page.reload()
    page.wait_for_selector("body[data-loaded]")
    assert page.locator("#code-colour").get_attribute("data-colour") == "red"
    assert page.get_by_role("img", name="Health code credential, colour Red").is_visible()
    page.get_by_role("button", name="Decrypt LR1").click()
    record = page.locator("[data-record=LR1]")
    record.locator("dl").wait_for()
    assert "PCR" in record.inner_text() and "21" in record.inner_text()
    assert "Nobody has been handed a key" in page.locator("#access-log").inner_text()
    w.shot("citizen-record-phone")

    # she grants the hospital access to her lab results, signed in the page
    page.select_option("#grantee", str(HOSPITAL))
    page.get_by_label("Lab result").check()
    page.get_by_label("Purpose").fill("care")
    page.get_by_label("For how many days").fill("30")
    page.get_by_role("button", name="Sign and send the grant").click()
    page.wait_for_selector("[data-revoke]", timeout=WAIT_MS)
    grant_id = page.locator("[data-revoke]").get_attribute("data-revoke")
    assert grant_id
    grants = me.get("/v1/me/grants", subject=subject).json()
    assert [(g["grant_id"], g["grantee"], g["record_types"], g["purpose"]) for g in grants] == [
        (grant_id, HOSPITAL, ["lab_result"], "care")]

    # the lab hands the record key over to the hospital under her grant
    lab_gw = GatewayClient(gw.base_url, lab_key)
    lab_view = lab_gw.get("/v1/institution/records/LR1").json()
    record_key = open_sealed_key(bytes.fromhex(lab_view["sealed_key"]), lab_key,
                                 bytes.fromhex(lab_view["key_commitment"]))
    share = gw.client(LAB).tx("access.share", {
        "record_id": "LR1", "grantee": HOSPITAL, "basis": "grant", "grant_id": grant_id, "purpose": "care",
        "sealed_key": seal_key_to(record_key, encryption_public_key(bytes(gw.key(HOSPITAL).verify_key)))},
        now_ms())
    admin_submit_raw(gw, share.encode())
    page.reload()
    page.wait_for_selector("body[data-loaded]")
    log = page.locator("#access-log").inner_text()
    assert "key handed over" in log and "care" in log and "LR1" in log

    # she revokes it
    page.get_by_role("button", name=f"Revoke {grant_id}").click()
    page.wait_for_selector("#announce.ok")
    assert f"Grant {grant_id} revoked" in page.locator("#announce").inner_text()
    page.wait_for_selector("[data-revoke]", state="detached")
    assert "revoked" in page.locator("#grants").inner_text()
    assert me.get("/v1/me/grants", subject=subject).json()[0]["revoked_ms"] is not None
    receipts = page.locator("#receipts").inner_text()
    assert "consent.grant" in receipts and "consent.revoke" in receipts
    w.shot("citizen-phone")

    # the key can leave the browser as a file, in the format of the Python tools
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export key file").click()
    assert Path(dl.value.path()).read_text().strip() == seed
    page.get_by_role("button", name="Show key as QR code").click()
    assert page.get_by_role("img", name="Your private key as a QR code").is_visible()
    # and comes back: forget it, import the exported text
    page.get_by_role("button", name="Remove key from this browser").click()
    page.wait_for_selector("#key-none:not([hidden])")
    page.get_by_label("Or paste the key (64 hex digits)").fill(seed)
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_selector("[data-record=LR1]")
    assert page.locator("#pseudonym").inner_text() == subject


def test_venue_verifies_a_code(gw: Gateway, open_page: Any) -> None:
    bob = GatewayClient(gw.base_url, nacl.signing.SigningKey.generate())
    code = bob.get("/v1/me/health-code", subject=bob.pseudonym).json()
    cred = code["credential"]
    assert cred.startswith("HZ1:")
    w = open_page(PHONE)
    page = w.page
    ready(w, "/venue", gw)
    assert "signing keys: 1" in page.locator("#trust").inner_text()
    page.get_by_label("Paste the code's text (HZ1:…)").fill(cred)
    page.get_by_role("button", name="Check", exact=True).click()
    verdict = page.locator("#verdict")
    verdict.wait_for()
    result = page.locator("#result").inner_text()
    assert verdict.get_attribute("data-ok") == "true" and verdict.get_attribute("data-colour") == "green", result
    assert "Green · valid" in verdict.inner_text()
    assert bob.pseudonym[:12] in page.locator("#result").inner_text()
    w.shot("venue-valid-phone")
    # one character changed in the signed part: refused
    i = len(cred) // 2
    tampered = cred[:i] + ("A" if cred[i] != "A" else "B") + cred[i + 1:]
    page.get_by_label("Paste the code's text (HZ1:…)").fill(tampered)
    page.get_by_role("button", name="Check", exact=True).click()
    page.wait_for_selector("#verdict[data-ok=false]")
    assert "NOT VALID" in verdict.inner_text()
    page.get_by_label("Paste the code's text (HZ1:…)").fill("hello")
    page.get_by_role("button", name="Check", exact=True).click()
    expect(page.locator("#problems")).to_contain_text("HZ1:")
    w.shot("venue-invalid-phone")
    # Chinese
    page.select_option("#lang", "zh")
    assert page.locator("h1").inner_text() == "场所核验"
    assert "无效" in verdict.inner_text()


def test_pages_are_labelled_for_assistive_technology(gw: Gateway, open_page: Any) -> None:
    """Every form control has a label, every button a name, every image a text alternative,
    and the language switch is reachable by keyboard."""
    w = open_page()
    for path in ("/", "/citizen", "/venue"):
        ready(w, path, gw)
        missing = w.page.evaluate("""() => {
          const out = [];
          for (const e of document.querySelectorAll('input, select, textarea'))
            if (!e.labels?.length && !e.getAttribute('aria-label')) out.push(e.outerHTML.slice(0, 80));
          for (const e of document.querySelectorAll('button'))
            if (!e.innerText.trim() && !e.getAttribute('aria-label')) out.push(e.outerHTML.slice(0, 80));
          for (const e of document.querySelectorAll('[role=img], img'))
            if (!e.getAttribute('aria-label') && !e.getAttribute('alt')) out.push(e.outerHTML.slice(0, 80));
          return out;
        }""")
        assert missing == [], (path, missing)
        w.page.keyboard.press("Tab")  # the skip link comes first
        assert w.page.evaluate("document.activeElement.className") == "skip"
        assert w.page.evaluate("document.documentElement.lang") == "en"
    r = httpx.get(gw.base_url + "/citizen")
    assert "script-src 'self'" in r.headers["content-security-policy"]


def y4m_of_qr(text: str, path: Path, size: int = 480) -> None:
    """A one-frame Y4M video (what Chromium's fake camera plays) showing `text` as a QR code."""
    from PIL import Image

    img = Image.open(io.BytesIO(qr.to_png(text, scale=5))).convert("RGB")
    frame = Image.new("RGB", (size * 4 // 3, size), "white")
    frame.paste(img, ((frame.width - img.width) // 2, (frame.height - img.height) // 2))
    y, cb, cr = frame.convert("YCbCr").split()
    half = (frame.width // 2, frame.height // 2)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{frame.width} H{frame.height} F10:1 Ip A1:1 C420jpeg\n".encode())
        f.write(b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes())


def test_venue_scans_a_code_with_the_camera(gw: Gateway, browser: Any, tmp_path: Path) -> None:
    """Chromium's fake camera shows her QR code; the page reads it (jsQR, loaded on demand)."""
    carol = GatewayClient(gw.base_url, nacl.signing.SigningKey.generate())
    cred = carol.get("/v1/me/health-code", subject=carol.pseudonym).json()["credential"]
    video = tmp_path / "code.y4m"
    y4m_of_qr(cred, video)
    cam = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True,
        args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={video}"])
    try:
        ctx = cam.new_context(viewport=PHONE, permissions=["camera"])
        w = Watched(ctx.new_page())
        ready(w, "/venue", gw)
        w.page.get_by_role("button", name="Scan with the camera").click()
        w.page.wait_for_selector("#verdict", timeout=WAIT_MS)
        assert w.page.locator("#verdict").get_attribute("data-ok") == "true", w.page.locator("#result").inner_text()
        assert w.page.locator("#code-text").input_value() == cred
        assert w.page.locator("#camera").is_hidden()  # the camera is off again
        w.shot("venue-camera-phone")
        assert not w.errors, w.errors
    finally:
        cam.close()


def test_citizen_code_is_refreshed_before_it_expires(gw: Gateway, open_page: Any) -> None:
    """Her key arrives in the URL fragment (as `hzp2p demo --keep` prints it) and leaves the
    address bar; the page's clock jumps to a minute before her credential expires: it fetches
    a new one — the gateway first refuses the request as 4 minutes off its clock, the page
    takes the offset from the answer's Date header and signs again."""
    dave = nacl.signing.SigningKey.generate()
    w = open_page(PHONE)
    page = w.page
    asked: list[int] = []
    page.on("response", lambda r: asked.append(r.status) if r.url.endswith("/v1/me/health-code") else None)
    page.clock.install()
    page.goto(f"{gw.base_url}/citizen#key={bytes(dave).hex()}")
    page.wait_for_selector("body[data-loaded]")
    assert page.url == f"{gw.base_url}/citizen"
    assert page.locator("#pseudonym").inner_text() == GatewayClient(gw.base_url, dave).pseudonym
    assert asked == [200]
    page.clock.fast_forward(4 * 60_000 + 5_000)  # the refresh is due 60 s before expiry
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(asked) < 3 and time.monotonic() < deadline:
        page.wait_for_event("response", timeout=WAIT_MS)
    assert asked == [200, 401, 200]
    assert page.get_by_role("img", name="Health code credential, colour Green").is_visible()
    # the one expected console error: the refused request
    assert len(w.errors) == 1 and "401" in w.errors[0], w.errors
    w.errors.clear()


def test_citizen_page_works_by_keyboard(gw: Gateway, open_page: Any) -> None:
    """Tab to "Create a new key", Enter; then Tab on to the health code's details and open
    them with Enter — no mouse."""
    w = open_page(PHONE)
    page = w.page
    ready(w, "/citizen", gw)

    def tab_to(selector: str, limit: int = 30) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement === document.querySelector({selector!r})"):
                return
        raise AssertionError(f"{selector} not reachable with Tab")

    tab_to("#key-create")
    page.keyboard.press("Enter")
    page.wait_for_selector("#code-colour")
    tab_to("#code details summary")
    page.keyboard.press("Enter")
    assert page.locator("#credential").is_visible()
