"""One real daemon: a one-node cluster commits only durable writes, survives bad admin input,
keeps its socket private, shuts down cleanly on SIGTERM and resumes from disk."""

from __future__ import annotations

import socket
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from hzp2p.admin.protocol import AdminError
from hzp2p.tools.localcluster import LocalCluster, free_base_port

pytestmark = pytest.mark.slow


def raw_exchange(path: str, data: bytes, timeout_s: float = 5.0) -> Any:
    """Send raw bytes on the admin socket; return the first decoded response (or None on EOF)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall(data)
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                return None
            head += chunk
        (n,) = struct.unpack(">I", head)
        body = b""
        while len(body) < n:
            chunk = s.recv(n - len(body))
            if not chunk:
                break
            body += chunk
        return msgpack.unpackb(body, raw=False)


def frame(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def test_single_node_bad_input_clean_stop_and_restart(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", 1) as c:
        http_port = free_base_port(1)
        with c.config(1).open("a") as f:
            f.write(f'\n[metrics]\nhttp = "127.0.0.1:{http_port}"\n')
        c.start(1)
        c.wait_leader(20)
        sock = c.sockets[1]
        second = subprocess.run(
            [sys.executable, "-m", "hzp2p.cli", "run", "--config", str(c.config(1))],
            capture_output=True, text=True, timeout=30, check=False)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith("hzp2p run: database")
        assert "locked" in second.stderr
        assert stat.S_IMODE(Path(sock).stat().st_mode) == 0o600
        r = c.submit(1, "epi.report", {"report_id": "one", "region": "r", "metric": "m",
                                       "value": 1, "period": "p"})
        assert r["status"] == "committed" and r["height"] == 1

        garbage = raw_exchange(sock, struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
        assert garbage["ok"] is False and garbage["error"]["code"] == "bad_request"
        oversized = raw_exchange(sock, struct.pack(">I", 1 << 30))
        assert oversized["ok"] is False and "exceeds" in oversized["error"]["message"]
        unknown = raw_exchange(sock, frame({"id": 7, "method": "launch", "params": {}}))
        assert unknown["id"] == 7 and unknown["error"]["code"] == "unknown_method"
        wrong = raw_exchange(sock, frame({"id": 8, "method": "block", "params": {"height": "x"}}))
        assert wrong["id"] == 8 and wrong["error"]["code"] == "bad_request"
        not_a_request = raw_exchange(sock, frame([1, 2, 3]))
        assert not_a_request["ok"] is False
        with pytest.raises(AdminError) as exc:
            c.call(1, "submit", {"type": "epi.report", "payload": {"report_id": 5}, "wait_s": "soon"})
        assert exc.value.code == "bad_request"
        bad_tx = c.submit(1, "no.such.type", {"a": 1}, wait_s=2)
        assert bad_tx["status"] == "rejected" and "unknown transaction type" in bad_tx["reason"]
        with pytest.raises(AdminError) as exc:
            c.call(1, "block", {"height": 99})
        assert exc.value.code == "not_found"
        lin = c.call(1, "members", {"linearizable": True})
        assert [m["inst_id"] for m in lin["members"]] == [1]
        assert c.status(1) is not None  # still serving after all of that
        with socket.create_connection(("127.0.0.1", http_port), timeout=5) as h:
            h.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            page = b""
            while chunk := h.recv(65536):
                page += chunk
        assert page.split(b" ", 2)[1] == b"200" and b"hzp2p_chain_height 1" in page
        assert b'hzp2p_admin_requests_total{method="submit"}' in page

        assert c.stop(1) == 0  # SIGTERM: clean shutdown, exit status 0
        assert not Path(sock).exists()
        c.start(1)
        c.wait_leader(20)
        st = c.status(1)
        assert st is not None and st["height"] == 1
        again = c.call(1, "tx", {"tx_hash": r["tx_hash"]})
        assert (again["status"], again["height"]) == ("committed", 1)
        assert c.call(1, "verify", {"integrity": True})["ok"] is True
