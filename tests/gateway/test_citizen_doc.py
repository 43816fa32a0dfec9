"""docs/citizens.md's examples of a day of Alice's app, run as written against a real
daemon and gateway (the HZP2P_GATEWAY= and QR= lines get the test gateway's address and
a real venue code). tests/integration/test_doc_examples.py skips these blocks (it runs
no gateway); their markers name this file. Between the blocks, what the document says
happens: an authority publishes the hall's exposure after her visit; the lab hands the
record's key to the hospital under her grant."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing
import pytest

from hzp2p.client import make_venue_qr
from hzp2p.tools.gatewayrun import AUTH, HOSPITAL, register_credential_key, start_gateway
from tests.gateway.test_citizen_cli import lab_record, share_record

pytestmark = pytest.mark.slow
DOC = Path(__file__).resolve().parents[2] / "docs" / "citizens.md"
DAY_MS, HOUR_MS = 86_400_000, 3_600_000


def blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- doc-test: skip: [^\n]*test_citizen_doc\.py[^\n]*-->\n```bash\n(.*?)```",
                       text, re.S)
    assert len(found) == 3, "docs/citizens.md has three gateway doc-test blocks"
    return found


def test_citizens_doc_examples_run(tmp_path: Path) -> None:
    first, second, third = blocks()
    assert HOSPITAL == 4  # the document's "member 4 is the hospital"
    gw = start_gateway(tmp_path / "c")
    try:
        register_credential_key(gw)
        work = tmp_path / "work"
        work.mkdir()
        (work / "cluster").symlink_to(gw.cluster.root)
        env = {**os.environ,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

        def bash(script: str) -> str:
            out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                                 capture_output=True, text=True, timeout=240, check=False)
            assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
            assert "Traceback" not in out.stderr
            return out.stdout

        # what the document says happened before: her key, the hall's poster, the lab's result
        made = json.loads(bash("hzp2p citizen-key alice.key --json"))
        hall = nacl.signing.SigningKey.generate()
        assert gw.cluster.submit(AUTH, "venue.register", {
            "venue_id": "market-hall", "verify_key": bytes(hall.verify_key)})["status"] == "committed"
        qr = make_venue_qr(hall, gw.chain_id, "market-hall", time.time_ns() // 1_000_000 // DAY_MS)
        lab_record(gw, made["public_key"], "LR1", {"test": "PCR", "result": "negative"})

        script = re.sub(r"^export HZP2P_GATEWAY=\S+", f"export HZP2P_GATEWAY={gw.base_url}",
                        first, flags=re.M)
        script = re.sub(r"^QR=\S+", f"QR='{qr}'", script, flags=re.M)
        out = bash(script)
        assert made["pseudonym"] in out and "check-in at market-hall" in out

        t = time.time_ns() // 1_000_000
        assert gw.cluster.submit(AUTH, "exposure.publish", {
            "exposure_id": "EXP-1", "venue_id": "market-hall", "from_ms": t - HOUR_MS,
            "to_ms": t, "level": "high"})["status"] == "committed"
        out = bash(f"export HZP2P_GATEWAY={gw.base_url}\n{second}")
        assert "matched against 1 check-in(s) on this side: EXP-1" in out
        assert "result: negative" in out and "at market-hall, " in out  # opened on her side
        assert json.loads((work / "grant.json").read_text())["status"] == "committed"

        share_record(gw, "LR1", "G-1", "treatment")
        out = bash(f"export HZP2P_GATEWAY={gw.base_url}\n{third}")
        assert "result: negative" in out  # the hospital decrypted LR1 on its side
        assert "VALID: colour green" in out  # the venue checks the code her screen showed
        assert "G-1" in out and "revoked" in out
    finally:
        gw.stop()
        gw.cluster.close()
