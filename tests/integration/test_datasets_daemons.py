"""Data sets on real daemons, through `hzp2p admin dataset`: encrypted publication to a scope,
a node outside it holding no plaintext and refused clearly, a research request approved, the
content fetched over the peer transport and opened, the owner's access log, revocation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hzp2p.config import load_config
from hzp2p.tools.contentnet import RelayHost
from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

MARKER = b"DATASET-PLAINTEXT-MARKER-7731"
LAB = 3  # make_local_genesis roles: 1, 2 authorities, 3 lab


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("data") / "c", 3)
    try:
        c.start_all()
        c.wait_leader(20)
        c.wait_up(30)
        yield c
    finally:
        c.close()


def admin(c: LocalCluster, k: int, *argv: str) -> tuple[int, dict | str, str]:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(k)),
                           "--json", "--timeout", "60", *argv],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    try:
        out: dict | str = json.loads(done.stdout)  # type: ignore[type-arg]
    except json.JSONDecodeError:
        out = done.stdout
    return done.returncode, out, done.stderr


def _files_with(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_restricted_data_set_request_approve_fetch_log_revoke(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    c = cluster
    src = tmp_path / "cases.csv"
    body = b"district,week,cases\n" + b"".join(
        b"d%d,2026-W%02d,%d\n" % (i % 16, i % 52 + 1, i) for i in range(20000)) + MARKER + b"\n"
    body += os.urandom(3 << 20)  # several chunks
    src.write_bytes(body)
    code, r, err = admin(c, 1, "dataset", "publish", "cases-2026", "--file", str(src),
                         "--title", "confirmed cases " + MARKER.decode(),
                         "--scope", "roles:authority", "--wait", "20")
    assert code == 0, err
    assert isinstance(r, dict) and r["status"] == "committed" and r["holders"] == [1, 2], r
    c.wait_converged(20)
    # the lab is outside the scope: a clear refusal, and no plaintext anywhere on its node
    code, _, err = admin(c, LAB, "dataset", "fetch", "cases-2026", "--out", str(tmp_path / "x"))
    assert code == 1 and "holds no current key" in err and "dataset request" in err, err
    code, r, err = admin(c, LAB, "dataset", "show", "cases-2026")
    assert code == 0 and isinstance(r, dict) and r["versions"][0]["metadata"] is None, r
    # an authority in scope fetches it from node 1 over the peer transport
    code, r, err = admin(c, 2, "dataset", "fetch", "cases-2026", "--out", str(tmp_path / "a.csv"))
    assert code == 0, err
    assert (tmp_path / "a.csv").read_bytes() == body
    # the lab asks, the owner approves, the lab fetches and opens it
    code, r, err = admin(c, LAB, "dataset", "request", "cases-2026", "--purpose",
                         "vaccine effectiveness study", "--days", "30", "--request-id", "rq-lab")
    assert code == 0 and isinstance(r, dict) and r["status"] == "committed", err
    c.wait_converged(20)
    code, r, err = admin(c, 1, "dataset", "approve", "rq-lab")
    assert code == 0 and isinstance(r, dict) and r["status"] == "committed", (r, err)
    c.wait_converged(20)
    out = tmp_path / "lab.csv"
    code, r, err = admin(c, LAB, "dataset", "fetch", "cases-2026", "--out", str(out))
    assert code == 0, err
    assert isinstance(r, dict) and r["fetch_tx"] and hashlib.sha256(out.read_bytes()).digest() == \
        hashlib.sha256(body).digest()
    def counted(k: int, line: str) -> float:
        text = c.call(k, "metrics")["text"]
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

    assert counted(1, 'hzp2p_content_chunks_total{event="served"}') + counted(
        2, 'hzp2p_content_chunks_total{event="served"}') >= 13
    assert counted(LAB, 'hzp2p_content_bytes_total{direction="fetched"}') >= len(body)
    # the owner lists the access; the lab may not read the log
    code, r, err = admin(c, 1, "dataset", "access-log", "cases-2026")
    assert code == 0 and isinstance(r, dict), err
    kinds = [(e["kind"], e["who"]) for e in r["entries"]]
    assert ("grant", LAB) in kinds and ("fetch", LAB) in kinds and ("fetch", 2) in kinds, kinds
    assert [e["purpose"] for e in r["entries"] if e["kind"] == "fetch" and e["who"] == LAB] == [
        "vaccine effectiveness study"]
    code, _, err = admin(c, LAB, "dataset", "access-log", "cases-2026")
    assert code == 1 and "owner" in err
    # revocation: the lab's later fetches are refused (its node already holds the blob; it
    # still may not open it through the daemon)
    code, r, err = admin(c, 1, "dataset", "revoke", "rq-lab", "--reason", "study ended")
    assert code == 0, err
    c.wait_converged(20)
    code, _, err = admin(c, LAB, "dataset", "fetch", "cases-2026", "--out", str(tmp_path / "y"))
    assert code == 1 and "holds no current key" in err
    # a member outside the scope never had metadata or content in the clear: stop the lab's
    # daemon (checkpointing its WAL) and grep every file of its node
    lab_dir = c.config(LAB).parent
    out.unlink()
    c.stop(LAB)
    hits = [h for h in _files_with(lab_dir, MARKER) if not h.endswith(".log")]
    assert not hits, hits
    c.start(LAB)
    c.wait_up(30)


def test_public_data_set_and_bad_usage(cluster: LocalCluster, tmp_path: Path) -> None:
    c = cluster
    src = tmp_path / "weekly.csv"
    src.write_bytes(b"week,cases\n2026-W01,12\n")
    code, r, err = admin(c, 2, "dataset", "publish", "weekly", "--file", str(src), "--title",
                         "weekly totals", "--scope", "public")
    assert code == 0, err
    c.wait_converged(20)
    code, r, err = admin(c, LAB, "dataset", "fetch", "weekly", "--out", str(tmp_path / "w.csv"))
    assert code == 0 and (tmp_path / "w.csv").read_bytes() == src.read_bytes(), err
    # a new version chains to the previous
    src.write_bytes(b"week,cases\n2026-W01,12\n2026-W02,15\n")
    code, r, err = admin(c, 2, "dataset", "publish", "weekly", "--file", str(src), "--scope",
                         "public")
    assert code == 0 and isinstance(r, dict) and r["version"] == 2, err
    code, r, err = admin(c, 2, "dataset", "show", "weekly")
    assert code == 0 and isinstance(r, dict) and [v["supersedes"] for v in r["versions"]] == [None, 1]
    code, _, err = admin(c, 1, "dataset", "publish", "weekly", "--file", str(src), "--scope", "everyone")
    assert code == 2 and "scope" in err
    code, _, err = admin(c, 1, "dataset", "fetch", "weekly")
    assert code == 2 and "--out" in err
    code, _, err = admin(c, 1, "dataset", "fetch", "nope", "--out", str(tmp_path / "n"))
    assert code == 1 and "unknown data set" in err


def _relayed_cluster(root: Path, host: RelayHost) -> LocalCluster:
    """Three daemons; every connection of node 3 goes through `host`'s relays."""
    c = LocalCluster(root, 3)
    listen = {k: load_config(c.config(k)).listen for k in c.ids}
    routes = {1: [3], 2: [3], 3: [1, 2]}  # who dials whom through a relay
    for k, peers in routes.items():
        lines = ["", "[net.peer_addresses]"]
        for j in peers:
            h, p = host.add((listen[j].host, listen[j].port))
            lines.append(f'{j} = "{h}:{p}"')
        with c.config(k).open("a") as f:
            f.write("\n".join(lines) + "\n")
    return c


def test_delivery_to_a_daemon_survives_its_connections_cut_twice(tmp_path: Path) -> None:
    """20 MB restricted data set held by nodes 1 and 2, fetched by node 3's daemon
    (`admin dataset fetch`) while every connection of node 3 is cut twice: it completes and
    matches. The relays cap each connection at 8 MB/s so the cuts land mid-transfer."""
    host = RelayHost(rate_bytes_per_s=8e6)
    c = _relayed_cluster(tmp_path / "c", host)
    try:
        c.start_all()
        c.wait_leader(20)
        c.wait_up(30)
        src = tmp_path / "big.bin"
        src.write_bytes(os.urandom(20 << 20))
        r = c.call(1, "dataset", {"action": "publish", "dataset_id": "big", "file": str(src),
                                  "scope": "institutions:1,2,3", "wait_s": 20}, timeout_s=120)
        assert r["status"] == "committed", r
        r = c.call(2, "dataset", {"action": "pull", "dataset_id": "big", "wait_s": 20},
                   timeout_s=120)  # node 2 holds it too (its link to node 1 is not relayed)
        out = tmp_path / "big.out"
        proc = subprocess.Popen(
            [sys.executable, "-m", "hzp2p.cli", "admin", "--config", str(c.config(3)), "--json",
             "--timeout", "300", "dataset", "fetch", "big", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def fetched() -> float:
            text = c.call(3, "metrics")["text"]
            return sum(float(x.split()[-1]) for x in text.splitlines()
                       if x.startswith('hzp2p_content_chunks_total{event="fetched"}'))

        chunks = -(-(20 << 20) // (256 * 1024))
        for fraction in (0.25, 0.6):
            deadline = time.monotonic() + 120
            while fetched() < fraction * chunks:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.02)
            host.cut_all()
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        assert json.loads(stdout)["size"] == 20 << 20
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
        assert sum(r.cuts for r in host.relays) == 2 * len(host.relays)
        text = c.call(3, "metrics")["text"]
        assert 'hzp2p_content_chunks_total{event="retried"}' in text
    finally:
        c.close()
        host.close()
