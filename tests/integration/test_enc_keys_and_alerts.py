"""The node's encryption key store and `admin enc-key rotate`; what needs an operator's
attention (overdue readings, failed hand-overs) in `admin lot`, `admin watch` and the
metrics — on a real cluster.

A hospital (node 4, a learner) writes records with `admin record write`, rotates its
encryption key twice, and still opens what it holds: it hands the keys over under a
grant (automatically) and on an emergency, also after a restart that reloads the key
store from disk. The retired key's file is gone, the current one is 0600, no key
material reaches the node's log or its database, and a store that lost or exposed its
key is refused with a clear message and nothing submitted; the hand-overs it can no
longer make show as failures. A vaccination site (node 5) declares a lot's reading
interval; when no reading arrives in time the lot shows "readings overdue".
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

HOSPITAL, LAB, AUTHORITY, SITE, MAKER = 4, 3, 1, 5, 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("enc") / "c", 3, 3)
    try:
        c.start_all()
        c.wait_leader(20)
        c.wait_up(30)
        yield c
    finally:
        c.close()


def hzp2p(*argv: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "hzp2p.cli", *argv], capture_output=True,
                          text=True, timeout=90, check=False)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def admin(c: LocalCluster, k: int, *argv: str) -> tuple[int, str, str]:
    return hzp2p("admin", "--config", str(c.config(k)), *argv)


def admin_json(c: LocalCluster, k: int, *argv: str) -> dict[str, object]:
    code, out, err = admin(c, k, "--json", *argv)
    assert code == 0, err
    got: dict[str, object] = json.loads(out)
    return got


def state_of(c: LocalCluster, k: int) -> object:
    from hzp2p.contracts.state import DictState

    rows = admin_json(c, k, "state-scan", "-", "--limit", "10000")["items"]
    assert isinstance(rows, list)
    return DictState({bytes.fromhex(a): bytes.fromhex(b) for a, b in rows})


def test_rotation_rewraps_forgets_the_old_key_and_the_node_still_hands_keys_over(
    cluster: LocalCluster,
) -> None:
    from nacl.signing import SigningKey

    from hzp2p.client import Client
    from hzp2p.ledger.genesis import load_genesis
    from hzp2p.node.keys import load_signing_key

    c = cluster
    store = c.files[HOSPITAL].directory / "data" / "enckeys"
    chain_id = load_genesis(c.root / "genesis.toml").chain_id
    alice = SigningKey.generate()
    app = Client(alice, chain_id)
    pub = bytes(alice.verify_key).hex()

    def write(rid: str) -> None:
        code, out, err = admin(c, HOSPITAL, "--json", "record", "write", "--type", "diagnosis",
                               "--subject-key", pub, "--record-id", rid, "--fields",
                               json.dumps({"dx": f"case {rid}"}), "--wait", "15")
        assert code == 0 and json.loads(out)["status"] == "committed", err

    write("RX-1")
    write("RX-2")
    st = admin_json(c, HOSPITAL, "enc-key", "status")
    assert (st["current_key_id"], st["held_key_ids"], st["held_records"], st["stale_records"]) \
        == (0, [0], 2, 0)
    assert store.is_dir() and stat.S_IMODE(store.stat().st_mode) == 0o700
    # first rotation: from the derived key 0 (kept: it is the signing key's) to key 1
    code, out, err = admin(c, HOSPITAL, "--json", "enc-key", "rotate", "--wait", "20")
    assert code == 0, err
    r1 = json.loads(out)
    assert (r1["status"], r1["key_id"], r1["previous_key_id"], r1["rewrapped"], r1["failed"],
            r1["stale"], r1["forgotten"]) == ("committed", 1, 0, 2, 0, 0, []), r1
    key1 = store / "enc-1.key"
    assert stat.S_IMODE(key1.stat().st_mode) == 0o600
    secret1 = key1.read_text().strip()
    write("RX-3")  # sealed to key 1
    # second rotation: key 1 is forgotten once every record is re-wrapped to key 2
    code, out, err = admin(c, HOSPITAL, "enc-key", "rotate", "--wait", "20")
    assert code == 0 and "key 1 -> 2: 3 record(s) re-wrapped, 0 failed, 0 left" in out, out
    for line in err.splitlines():  # progress, when the rotation takes long enough to show it
        assert re.fullmatch(r"hzp2p admin enc-key rotate: key 2 registered; \d of 3 record\(s\) "
                            r"left to re-wrap", line), err
    assert "forgotten keys: 1" in out
    assert not key1.exists()
    key2 = store / "enc-2.key"
    assert stat.S_IMODE(key2.stat().st_mode) == 0o600
    secret2 = key2.read_text().strip()
    st = admin_json(c, HOSPITAL, "enc-key", "status")
    assert (st["current_key_id"], st["held_key_ids"], st["stale_records"]) == (2, [0, 2], 0)
    # the lab cannot be handed anything yet; Alice grants it; the hospital shares by itself
    now = int(time.time() * 1000)
    grant = app.tx("consent.grant", {"grant_id": "G-R", "grantee": LAB,
                                     "record_types": ["diagnosis"], "purpose": "review",
                                     "expiry_ms": now + 86_400_000}, now)
    code, out, err = admin(c, HOSPITAL, "--json", "submit-raw", grant.encode().hex(),
                           "--wait", "15")
    assert code == 0 and json.loads(out)["status"] == "committed", err
    lab = Client(load_signing_key(c.files[LAB].directory / "signing.key"), chain_id, LAB)
    deadline = time.monotonic() + 40
    while True:
        state = state_of(c, HOSPITAL)
        try:
            got = {rid: lab.read_record(state, rid) for rid in ("RX-1", "RX-2", "RX-3")}  # type: ignore[arg-type]
            break
        except Exception:
            assert time.monotonic() < deadline, "the hospital did not hand the keys over"
            time.sleep(0.5)
    assert got == {rid: {"dx": f"case {rid}"} for rid in ("RX-1", "RX-2", "RX-3")}
    assert app.read_record(state, "RX-3") == {"dx": "case RX-3"}  # type: ignore[arg-type]
    # a restart reloads the store from disk; the node still opens what it holds
    assert c.stop(HOSPITAL) == 0
    c.start(HOSPITAL)
    c.wait_up(30)
    code, _, err = admin(c, AUTHORITY, "submit", "access.emergency", "--payload",
                         json.dumps({"record_id": "RX-2", "reason": "patient in A&E"}),
                         "--wait", "15")
    assert code == 0, err
    code, out, err = admin(c, HOSPITAL, "--json", "emergency", "fulfil", "RX-2", "--to",
                           str(AUTHORITY), "--wait", "15")
    assert code == 0 and json.loads(out)["status"] == "committed", err
    # no key material in the log or the database (the retired key's nowhere at all)
    logged = c.log_path(HOSPITAL).read_text(errors="replace")
    assert "enc_key_rotation_done" in logged
    for secret in (secret1, secret2):
        assert secret not in logged
        assert bytes.fromhex(secret) not in (c.files[HOSPITAL].directory / "data" /
                                            "node.db").read_bytes()
    for path in c.root.rglob("*"):
        if path.is_file():
            assert secret1.encode() not in path.read_bytes(), path
            assert bytes.fromhex(secret1) not in path.read_bytes(), path


def test_a_lost_or_exposed_key_file_is_refused_and_nothing_is_submitted(
    cluster: LocalCluster,
) -> None:
    c = cluster
    key = c.files[HOSPITAL].directory / "data" / "enckeys" / "enc-2.key"
    for argv, says in ((["enc-key"], "the following arguments are required"),
                       (["enc-key", "forget"], "invalid choice")):
        code, _, err = admin(c, HOSPITAL, *argv)
        assert code == 2 and says in err, err
    # a key file others can read: the daemon refuses to start, naming the file
    assert c.stop(HOSPITAL) == 0
    key.chmod(0o644)
    c.start(HOSPITAL)
    proc = c.procs[HOSPITAL]
    assert proc.wait(timeout=30) == 2
    assert "enc-2.key: permissions 0644 are too open" in c.log_path(HOSPITAL).read_text()
    # a lost key file: the daemon runs, but will not seal, rotate or hand over with it
    saved = key.read_bytes()
    key.unlink()
    c.start(HOSPITAL)
    c.wait_up(30)
    height = admin_json(c, HOSPITAL, "status")["height"]
    for argv, says in (
        (["enc-key", "rotate"], "current key (id 2) is not in this node's key store"),
        (["record", "write", "--type", "diagnosis", "--subject-key", "ab" * 32, "--fields",
          "{}"], "current encryption key (id 2) is not in the node's key store"),
    ):
        code, _, err = admin(c, HOSPITAL, *argv)
        assert code == 1 and says in err, err
    st = admin_json(c, HOSPITAL, "enc-key", "status")
    assert (st["current_key_id"], st["held_key_ids"], st["stale_records"]) == (2, [0], None)
    assert admin_json(c, HOSPITAL, "status")["height"] == height  # nothing was submitted
    assert not key.exists()
    # a grant now names the hospital's records: its daemon cannot hand them over, says so
    from nacl.signing import SigningKey

    from hzp2p.client import Client
    from hzp2p.ledger.genesis import load_genesis

    chain_id = load_genesis(c.root / "genesis.toml").chain_id
    app = Client(SigningKey.generate(), chain_id)
    code, out, err = admin(c, HOSPITAL, "--json", "record", "write", "--type", "diagnosis",
                           "--subject-key", bytes(app.key.verify_key).hex(), "--fields", "{}")
    assert code == 1  # cannot even seal a new one
    key.write_bytes(saved)
    key.chmod(0o600)
    assert c.stop(HOSPITAL) == 0
    c.start(HOSPITAL)
    c.wait_up(30)
    code, out, err = admin(c, HOSPITAL, "--json", "record", "write", "--type", "diagnosis",
                           "--subject-key", bytes(app.key.verify_key).hex(), "--record-id",
                           "RX-9", "--fields", "{}", "--wait", "15")
    assert code == 0, err
    assert c.stop(HOSPITAL) == 0
    key.unlink()
    c.start(HOSPITAL)
    c.wait_up(30)
    start = int(admin_json(c, HOSPITAL, "status")["height"])  # type: ignore[call-overload]
    now = int(time.time() * 1000)
    grant = app.tx("consent.grant", {"grant_id": "G-F", "grantee": 2,
                                     "record_types": ["diagnosis"], "purpose": "audit",
                                     "expiry_ms": now + 86_400_000}, now)
    code, out, err = admin(c, HOSPITAL, "--json", "submit-raw", grant.encode().hex(),
                           "--wait", "15")
    assert code == 0 and json.loads(out)["status"] == "committed", err

    def failed_metric() -> float:
        text = admin_json(c, HOSPITAL, "metrics")["text"]
        assert isinstance(text, str)
        for line in text.splitlines():
            if line.startswith('hzp2p_handover_total{outcome="failed"}'):
                return float(line.split()[-1])
        return 0.0

    c.wait_for("a failed hand-over in the metrics", lambda: failed_metric() >= 1, 30)
    # the failure is an event of the watch stream (numbered with the next block's height)
    admin(c, AUTHORITY, "submit", "epi.report", "--payload", json.dumps({
        "report_id": "tick-f", "region": "north", "metric": "cases", "value": 1,
        "period": "2026-W42"}), "--wait", "15")
    head = int(admin_json(c, HOSPITAL, "status")["height"])  # type: ignore[call-overload]
    code, out, err = admin(c, HOSPITAL, "watch", "--from-height", str(start),
                           "--until-height", str(head), "--types", "handover_failed")
    assert code == 0, err
    (ev,) = [json.loads(line) for line in out.splitlines()]
    assert (ev["record_id"], ev["grantee"], ev["grant_id"]) == ("RX-9", 2, "G-F")
    assert "not in the node's key store" in ev["reason"]


def test_readings_overdue_in_lot_status_watch_and_metrics(cluster: LocalCluster) -> None:
    c = cluster
    now = int(time.time() * 1000)
    for k, argv in (
        (MAKER, ["lot.register", "--payload", json.dumps({
            "lot_id": "LOT-M", "product": "covax", "quantity": 10,
            "expiry_ms": now + 30 * 86_400_000, "temp_min_centi_c": 200,
            "temp_max_centi_c": 800})]),
        (MAKER, ["lot.transfer", "--payload", json.dumps({"lot_id": "LOT-M", "to": SITE})]),
    ):
        code, _, err = admin(c, k, "submit", *argv, "--wait", "15")
        assert code == 0, err
    start = int(admin_json(c, SITE, "status")["height"])  # type: ignore[call-overload]
    # bad declarations: refused with the contract's reason, exit 1
    for k, payload, says in (
        (MAKER, {"lot_id": "LOT-M", "interval_ms": 2000}, "not the custodian"),
        (SITE, {"lot_id": "LOT-M", "interval_ms": 10}, "interval_ms must be 0"),
        (SITE, {"lot_id": "NO-LOT", "interval_ms": 2000}, "unknown lot"),
    ):
        code, _, err = admin(c, k, "submit", "lot.monitor", "--payload", json.dumps(payload),
                             "--wait", "15")
        assert code == 1 and says in err, err
    code, _, err = admin(c, SITE, "submit", "lot.monitor", "--payload",
                         json.dumps({"lot_id": "LOT-M", "interval_ms": 2000}), "--wait", "15")
    assert code == 0, err
    got = admin_json(c, SITE, "lot", "LOT-M")["readings"]
    assert isinstance(got, dict) and got["interval_ms"] == 2000 and got["overdue"] is False
    # no reading comes; block time moves on with other institutions' work
    n = 0

    def overdue() -> bool:
        nonlocal n
        n += 1
        admin(c, AUTHORITY, "submit", "epi.report", "--payload", json.dumps({
            "report_id": f"tick-{n}", "region": "north", "metric": "cases", "value": 1,
            "period": "2026-W42"}), "--wait", "15")
        r = admin_json(c, SITE, "lot", "LOT-M")["readings"]
        return isinstance(r, dict) and r["overdue"] is True

    c.wait_for("the lot's readings to be overdue", overdue, 30)
    code, out, err = admin(c, SITE, "lot", "LOT-M")
    assert code == 0 and "READINGS OVERDUE" in out and "every 2000 ms" in out, out
    head = int(admin_json(c, SITE, "status")["height"])  # type: ignore[call-overload]
    code, out, err = admin(c, SITE, "watch", "--from-height", str(start), "--until-height",
                           str(head), "--types", "overdue")
    assert code == 0, err
    (ev,) = [json.loads(line) for line in out.splitlines()]
    assert (ev["lot_id"], ev["interval_ms"], ev["last_t_ms"]) == ("LOT-M", 2000, None)
    assert start < ev["height"] <= head

    def gauge() -> float:
        text = admin_json(c, SITE, "metrics")["text"]
        assert isinstance(text, str)
        line = next(x for x in text.splitlines() if x.startswith("hzp2p_lots_readings_overdue "))
        return float(line.split()[-1])

    c.wait_for("the overdue gauge", lambda: gauge() == 1.0, 30)
