"""The web pages' server side (hzp2p.gateway.page) without a browser: static files only,
gzipped, revalidated by ETag, under a CSP; and the two message files say the same things."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hzp2p.gateway import page, problems

WEB = page.WEB_DIR


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "citizen.js").write_text("console.log('built');\n" * 50)
    app = FastAPI()
    problems.install(app)
    page.register(app, page.Assets(page.STATIC_DIR, dist))
    return TestClient(app)


def test_pages_are_static_files_with_security_headers(client: TestClient) -> None:
    for path, name in page.PAGES.items():
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.content == (page.STATIC_DIR / name).read_bytes()  # nothing rendered in
        csp = r.headers["content-security-policy"]
        assert "script-src 'self' 'wasm-unsafe-eval'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    css = client.get("/assets/style.css")
    assert css.headers["content-type"].startswith("text/css")


def test_gzip_etag_and_missing_assets(client: TestClient) -> None:
    r = client.get("/assets/citizen.js", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.text.startswith("console.log")  # httpx decoded it
    raw = client.get("/assets/citizen.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert len(gzip.compress(raw.content)) < len(raw.content)
    again = client.get("/assets/citizen.js", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    missing = client.get("/assets/venue.js")
    assert missing.status_code == 404 and "npm ci" in missing.json()["detail"]
    assert client.get("/assets/..%2Fpackage.json").status_code in (404, 422)
    assert client.get("/assets/package.json").status_code == 422  # only .js and .css


def test_every_message_exists_in_both_languages() -> None:
    en = json.loads((WEB / "src" / "messages" / "en.json").read_text(encoding="utf-8"))
    zh = json.loads((WEB / "src" / "messages" / "zh.json").read_text(encoding="utf-8"))
    assert en.keys() == zh.keys()
    for k in en:  # the same {placeholders}
        assert set(re.findall(r"\{(\w+)\}", en[k])) == set(re.findall(r"\{(\w+)\}", zh[k])), k
    used = set()
    for f in (WEB / "static").glob("*.html"):
        used |= set(re.findall(r'data-i18n(?:-label|-placeholder)?="([^"]+)"', f.read_text(encoding="utf-8")))
    for f in (WEB / "src").glob("*.js"):
        used |= set(re.findall(r"\bt\('([a-z_]+\.[a-z_.\-]+)'", f.read_text(encoding="utf-8")))
    assert used - en.keys() == set()
