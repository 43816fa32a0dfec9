"""The gateway's web pages: the public dashboard (`/`), the citizen's page (`/citizen`) and
the venue's page (`/venue`), served as static files.

Nothing is rendered on the server: each page is a fixed HTML file (hzp2p/gateway/web/static)
and a script bundle (hzp2p/gateway/web/dist, built from web/src by `npm ci && npm run build`
in that folder; .ci/run does it) that calls this gateway's /v1 API from the browser. The
citizen's key, her signatures and the decryption of her records stay in her browser; the
venue page verifies credentials in the browser against the trust list. Files are read
once (again when they change on disk), gzipped once, and served with an ETag and a
Content-Security-Policy that allows scripts from this origin only (plus WebAssembly,
which libsodium needs). docs/gateway.md ("Web pages") says why there is a build step.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import structlog
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from hzp2p.gateway.problems import ApiProblem

WEB_DIR = Path(__file__).parent / "web"
STATIC_DIR = WEB_DIR / "static"
DIST_DIR = WEB_DIR / "dist"
PAGES = {"/": "index.html", "/citizen": "citizen.html", "/venue": "venue.html"}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_ASSET = r"^[A-Za-z0-9_\-]{1,64}\.(js|css)$"
BUILD_HINT = "npm ci && npm run build in hzp2p/gateway/web (docs/gateway.md)"
log = structlog.get_logger("hzp2p.gateway")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    content_type: str
    mtime_ns: int


class Assets:
    """The pages' files, read and compressed once per version on disk."""

    def __init__(self, static_dir: Path = STATIC_DIR, dist_dir: Path = DIST_DIR) -> None:
        self.dirs = (static_dir, dist_dir)
        self._cache: dict[str, Asset] = {}

    def get(self, name: str) -> Asset | None:
        """The file `name` (no directories) from static/ or dist/; None if neither has it."""
        assert "/" not in name and not name.startswith("."), name
        for d in self.dirs:
            path = d / name
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            cached = self._cache.get(name)
            if cached is not None and cached.mtime_ns == mtime:
                return cached
            body = path.read_bytes()
            asset = Asset(
                body,
                gzip.compress(body, 9, mtime=0),
                '"' + hashlib.sha256(body).hexdigest()[:20] + '"',
                TYPES.get(path.suffix, "application/octet-stream"),
                mtime,
            )
            self._cache[name] = asset
            return asset
        return None


def respond(request: Request, asset: Asset) -> Response:
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "no-cache",  # revalidate (cheap: 304) so a rebuilt bundle is seen at once
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if asset.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CSP
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = asset.gzipped
    return Response(body, media_type=asset.content_type, headers=headers)


def register(app: FastAPI, assets: Assets | None = None) -> None:
    """Add the pages and /assets/{name} to `app` (outside the OpenAPI schema)."""
    files = assets or Assets()
    if files.get("dashboard.js") is None:
        log.warning("web-pages-not-built", hint=BUILD_HINT)  # the API works; the pages say so

    def page_route(path: str, name: str) -> None:
        async def page(request: Request) -> Response:
            asset = files.get(name)
            assert asset is not None, f"{name} missing from {STATIC_DIR}"
            return respond(request, asset)

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False, name=f"page-{name}")

    for path, name in PAGES.items():
        page_route(path, name)

    @app.get("/assets/{name}", include_in_schema=False)
    async def asset(request: Request, name: Annotated[str, PathParam(pattern=_ASSET)]) -> Response:
        found = files.get(name)
        if found is None:
            hint = f" (the scripts are built by {BUILD_HINT})" if name.endswith(".js") else ""
            raise ApiProblem(404, "not-found", f"no asset {name!r}{hint}")
        return respond(request, found)
