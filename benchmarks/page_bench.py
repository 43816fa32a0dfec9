"""Web page benchmark: the dashboard's first render on loopback and the pages' weight.

A real one-node cluster and a real `hzp2p gateway` process on 127.0.0.1 (a few notices,
epidemic reports and blocks committed), and Debian's headless Chromium driven by
Playwright, each load in a fresh browser context (empty cache):

- dashboard_first_contentful_paint_ms: the browser's own first-contentful-paint;
- dashboard_ready_ms: navigation start until every section shows the chain's data
  (body[data-ready], set once the API calls are answered and drawn);
  the median of --loads loads counts (the machine is shared), the worst is reported too;
- <page>_transfer_kb: compressed bytes the browser fetched for each page (HTML, CSS,
  scripts; the API's JSON excluded), from Resource Timing's encodedBodySize;
- total_assets_gzip_kb: every file the gateway serves for the pages (static/ and dist/,
  including the camera scanner's chunk that loads only on demand), gzipped as served.

Targets (issue 20): first render of the dashboard <= 1 s, total assets <= 500 KB compressed.

    python benchmarks/page_bench.py [--loads 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hzp2p.gateway.page import DIST_DIR, STATIC_DIR, Assets
from hzp2p.tools.gatewayrun import AUTH, register_credential_key, start_gateway

TARGET_FIRST_RENDER_MS = 1000.0
TARGET_TOTAL_KB = 500.0
ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TRANSFER_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').filter((r) => !r.name.includes('/v1/'));
  return (nav.encodedBodySize + res.reduce((n, r) => n + r.encodedBodySize, 0));
}"""


def total_assets_gzip() -> int:
    assets = Assets()
    total = 0
    for d in (STATIC_DIR, DIST_DIR):
        for f in sorted(d.iterdir()):
            if f.is_file():
                a = assets.get(f.name)
                assert a is not None
                total += len(a.gzipped)
    return total


def bench(loads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    root = Path(tempfile.mkdtemp(prefix="hzp2p-pagebench-"))
    gw = start_gateway(root / "c")
    try:
        register_credential_key(gw)
        c = gw.cluster
        c.submit(AUTH, "notice.publish", {"notice_id": "N1", "title": "Masks on buses", "body": "Required.",
                                          "effective_date": "2026-12-10", "region": "district-1"})
        for i in range(8):
            c.submit(AUTH, "epi.report", {"report_id": f"r{i}", "region": f"district-{i % 2 + 1}",
                                          "metric": "confirmed", "value": 3 + i, "period": f"2026-W0{i // 2 + 1}"})
        out: dict[str, Any] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
            fcp: list[float] = []
            ready: list[float] = []
            for _ in range(loads):
                ctx = browser.new_context(viewport={"width": 1280, "height": 900})
                page = ctx.new_page()
                t0 = time.perf_counter()
                page.goto(gw.base_url + "/")
                page.wait_for_selector("body[data-ready=true]", timeout=30_000)
                wall = 1000 * (time.perf_counter() - t0)
                timing = page.evaluate("""() => {
                  const nav = performance.getEntriesByType('navigation')[0];
                  const paint = performance.getEntriesByName('first-contentful-paint')[0];
                  return {fcp: paint ? paint.startTime : null, ready: performance.now() - nav.startTime};
                }""")
                fcp.append(timing["fcp"] if timing["fcp"] is not None else wall)
                ready.append(min(timing["ready"], wall))
                if "dashboard_transfer_kb" not in out:
                    out["dashboard_transfer_kb"] = page.evaluate(TRANSFER_JS) / 1024
                ctx.close()
            for name, path in (("citizen", "/citizen"), ("venue", "/venue")):
                ctx = browser.new_context()
                page = ctx.new_page()
                page.goto(gw.base_url + path)
                page.wait_for_selector("body[data-ready=true]", timeout=30_000)
                out[f"{name}_transfer_kb"] = page.evaluate(TRANSFER_JS) / 1024
                ctx.close()
            browser.close()
        out.update({
            "dashboard_first_contentful_paint_ms": statistics.median(fcp),
            "dashboard_ready_ms": statistics.median(ready),
            "dashboard_ready_worst_ms": max(ready),
            "loads": loads,
        })
        return out
    finally:
        gw.stop()
        gw.cluster.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (DIST_DIR / "dashboard.js").exists():
        print("page_bench: the page scripts are not built (npm ci && npm run build in hzp2p/gateway/web)",
              file=sys.stderr)
        return 2
    out = bench(args.loads)
    out["total_assets_gzip_kb"] = total_assets_gzip() / 1024
    out["meets_first_render_target"] = out["dashboard_ready_ms"] <= TARGET_FIRST_RENDER_MS
    out["meets_weight_target"] = out["total_assets_gzip_kb"] <= TARGET_TOTAL_KB
    out["load_avg_1m"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:38} {v:,.1f}" if isinstance(v, float) else f"{k:38} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
