"""The README's "For citizens, venues and researchers" examples, run as written against a
real daemon and gateway (only the GW= line is replaced by the test gateway's address).
tests/integration/test_doc_examples.py skips that block (it runs hzp2p commands only,
without a gateway); its marker names this file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hzp2p.tools.gatewayrun import AUTH, register_credential_key, start_gateway

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"


def example_block() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- doc-test: skip: [^\n]*test_readme_examples\.py[^\n]*-->\n```bash\n(.*?)```", text, re.S)
    assert m, "README has no gateway doc-test block"
    return m.group(1)


def test_readme_gateway_examples_run(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "c")
    try:
        register_credential_key(gw)
        r = gw.cluster.submit(AUTH, "notice.publish", {
            "notice_id": "N1", "title": "Masks on buses", "body": "Masks are required on buses.",
            "effective_date": "2026-12-10", "region": "district-1"})
        assert r["status"] == "committed"
        work = tmp_path / "work"
        work.mkdir()
        (work / "cluster").symlink_to(gw.cluster.root)
        script = re.sub(r"^GW=\S+", f"GW={gw.base_url}", example_block(), flags=re.M)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                             capture_output=True, text=True, timeout=180, check=False)
        assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
        assert "VALID: colour green" in out.stdout
        assert "Masks on buses" in out.stdout
        assert json.loads((work / "code.json").read_text())["colour"] == "green"
    finally:
        gw.stop()
        gw.cluster.close()
