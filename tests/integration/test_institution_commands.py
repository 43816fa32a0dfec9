"""Institutions' daily work through the `hzp2p` command alone: a manufacturer's fridge sensor.

A 3-voter cluster with learners for the other roles (node 6 is the manufacturer). The
manufacturer registers a lot and a sensor key made by `hzp2p keygen`, signs a CSV of
readings with `hzp2p sensor sign`, and uploads it with `admin readings submit`; an
out-of-range reading quarantines the lot. Bad input at each step is refused with a
clear line and the right exit status, and nothing is submitted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hzp2p.tools.localcluster import LocalCluster

pytestmark = pytest.mark.slow

MAKER = 6  # make_local_genesis roles: 3 lab, 4 hospital, 5 vaccination_site, 6 manufacturer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("inst") / "c", 3, 3)
    try:
        c.start_all()
        c.wait_leader(20)
        c.wait_up(30)
        yield c
    finally:
        c.close()


def hzp2p(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "hzp2p.cli", *argv], capture_output=True,
                          text=True, timeout=60, check=False, input=stdin)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_a_sensor_batch_signed_and_submitted_with_commands(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    c = cluster
    cfg = str(c.config(MAKER))
    expiry = int(time.time() * 1000) + 30 * 86_400_000
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "submit", "lot.register",
                           "--payload", json.dumps({
                               "lot_id": "LOT-F", "product": "covax", "quantity": 100,
                               "expiry_ms": expiry, "temp_min_centi_c": 200,
                               "temp_max_centi_c": 800}), "--wait", "15")
    assert code == 0, err
    code, out, err = hzp2p("keygen", str(tmp_path / "keys"), "--kind", "sensor", "--name",
                           "fridge-1", "--json")
    assert code == 0, err
    sensor = json.loads(out)["sensor"]
    code, out, err = hzp2p("admin", "--config", cfg, "submit", "sensor.register", "--payload",
                           json.dumps({"sensor_id": "FRIDGE-1",
                                       "verify_key": {"$hex": sensor["public_key"]}}),
                           "--wait", "15")
    assert code == 0, err
    now = int(time.time() * 1000)
    csv = f"time,temp_c\n{now},4.5\n{now + 1000},4.75\n{now + 2000},9.5\n"
    code, batch, err = hzp2p("sensor", "sign", "--key", sensor["file"], "--sensor", "FRIDGE-1",
                             "--lot", "LOT-F", "--readings", "-", stdin=csv)
    assert code == 0, err
    (tmp_path / "batch.json").write_text(batch)
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "readings", "submit", "--file",
                           str(tmp_path / "batch.json"), "--wait", "15")
    assert code == 0, err
    assert json.loads(out)["status"] == "committed"
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "lot-history", "LOT-F")
    assert code == 0 and json.loads(out)["record"]["status"] == "quarantined"  # 9.5 C
    # bad input, each refused before anything is sent
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("time,temp_c\nyesterday,4.5\n")
    for argv, stdin, status, says in (
        (["sensor", "sign", "--key", sensor["file"], "--sensor", "FRIDGE-1", "--lot", "LOT-F",
          "--readings", str(bad_csv)], None, 2, "line 2: time 'yesterday'"),
        (["sensor", "sign", "--key", sensor["file"], "--sensor", "FRIDGE-1", "--lot", "LOT-F",
          "--readings", "-"], f"{now},4.123\n", 2, "more than two decimals"),
        (["sensor", "sign", "--key", str(tmp_path / "nokey"), "--sensor", "FRIDGE-1", "--lot",
          "LOT-F", "--readings", "-"], f"{now},4\n", 2, "nokey"),
        (["sensor", "sign", "--key", sensor["file"], "--sensor", "bad id", "--lot", "LOT-F",
          "--readings", "-"], f"{now},4\n", 2, "--sensor must be"),
        (["admin", "--config", cfg, "readings", "submit", "--file", str(bad_csv)], None, 2,
         "--file is not valid JSON"),
    ):
        code, out, err = hzp2p(*argv, stdin=stdin)
        assert code == status and says in err, (argv, err)


SITE = 5  # the vaccination site


def test_vaccine_views_find_a_recalls_recipients_stock_and_expiry(cluster: LocalCluster) -> None:
    from nacl.signing import SigningKey

    from hzp2p.client import Client
    from hzp2p.ledger.genesis import load_genesis
    from hzp2p.node.keys import load_signing_key

    c = cluster
    maker_cfg, site_cfg = str(c.config(MAKER)), str(c.config(SITE))
    now = int(time.time() * 1000)
    for lot, days in (("LOT-V", 30), ("LOT-W", 400)):
        code, _, err = hzp2p("admin", "--config", maker_cfg, "submit", "lot.register",
                             "--payload", json.dumps({
                                 "lot_id": lot, "product": "covax", "quantity": 10,
                                 "expiry_ms": now + days * 86_400_000, "temp_min_centi_c": 200,
                                 "temp_max_centi_c": 800}), "--wait", "15")
        assert code == 0, err
        code, _, err = hzp2p("admin", "--config", maker_cfg, "submit", "lot.transfer",
                             "--payload", json.dumps({"lot_id": lot, "to": SITE}), "--wait", "15")
        assert code == 0, err
    chain_id = load_genesis(c.root / "genesis.toml").chain_id
    site = Client(load_signing_key(c.files[SITE].directory / "signing.key"), chain_id, SITE)
    citizens = [SigningKey.generate() for _ in range(3)]
    for i, who in enumerate(citizens):
        tx = site.vaccination_record(int(time.time() * 1000), record_id=f"V{i}",
                                     subject_verify_key=bytes(who.verify_key), lot_id="LOT-V",
                                     dose=1, administered_ms=int(time.time() * 1000),
                                     fields={"name": f"citizen {i}"})
        code, out, err = hzp2p("admin", "--config", site_cfg, "--json", "submit-raw",
                               tx.encode().hex(), "--wait", "15")
        assert code == 0 and json.loads(out)["status"] == "committed", err
    code, _, err = hzp2p("admin", "--config", maker_cfg, "submit", "lot.recall", "--payload",
                         json.dumps({"lot_id": "LOT-V", "reason": "vial defect"}), "--wait", "15")
    assert code == 0, err
    # a recalled lot's recipients
    code, out, err = hzp2p("admin", "--config", site_cfg, "--json", "doses", "--lot", "LOT-V",
                           "--linearizable")
    assert code == 0, err
    got = json.loads(out)
    assert got["count"] == 3 and all(d["site"] == SITE for d in got["doses"])
    members = json.loads(hzp2p("admin", "--config", site_cfg, "--json", "members")[1])["members"]
    site_name = next(m["name"] for m in members if m["inst_id"] == SITE)
    assert {d["site_name"] for d in got["doses"]} == {site_name}
    code, out, err = hzp2p("admin", "--config", site_cfg, "doses", "--lot", "LOT-V")
    assert code == 0 and "3 dose(s)" in out and "covax" in out
    # stock: the recalled lot's 7 remaining doses are unusable; LOT-W's 10 available
    code, out, err = hzp2p("admin", "--config", site_cfg, "--json", "stock", "--site", str(SITE))
    assert code == 0, err
    (row,) = json.loads(out)["stock"]
    assert (row["available"], row["active_lots"], row["unusable"]) == (10, 1, 7)
    code, out, err = hzp2p("admin", "--config", site_cfg, "--json", "expiring", "--days", "500")
    assert code == 0 and [lot["lot_id"] for lot in json.loads(out)["lots"]] == ["LOT-W"]
    code, out, err = hzp2p("admin", "--config", site_cfg, "lot", "LOT-V")
    assert code == 0 and "RECALLED" in out and "7 of 10 doses left (3 given)" in out
    code, out, err = hzp2p("admin", "--config", site_cfg, "--json", "doses-per-day", "--site",
                           str(SITE))
    assert code == 0 and sum(d["doses"] for d in json.loads(out)["days"]) == 3
    for argv, status, says in (
        (["doses"], 2, "one of the arguments --subject --lot --site is required"),
        (["doses", "--subject", "nope"], 2, "a subject pseudonym is 32 hex digits"),
        (["doses", "--lot", "LOT-V", "--from", "2026-01-01"], 2, "--from/--to go with --site"),
        (["lot", "NO-SUCH-LOT"], 1, "no lot 'NO-SUCH-LOT'"),
        (["expiring", "--days", "0"], 2, "expected a positive integer"),
    ):
        code, out, err = hzp2p("admin", "--config", site_cfg, *argv)
        assert code == status and says in err, (argv, err)


def test_reports_datasets_and_a_paged_state_scan(cluster: LocalCluster, tmp_path: Path) -> None:
    cfg = str(cluster.config(1))
    lines = [json.dumps({"type": "epi.report", "payload": {
        "report_id": f"w{w}-{region}", "region": region, "metric": "cases", "value": v,
        "period": f"2026-W{w}"}}) for w, region, v in
        ((40, "north", 3), (40, "south", 4), (41, "north", 5))]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = hzp2p("admin", "--config", cfg, "submit-many", "--file", str(tmp_path / "r.jsonl"),
                         "--wait", "15")
    assert code == 0, err
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "reports", "--region", "north",
                           "--linearizable")
    assert code == 0 and json.loads(out)["count"] == 2, err
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "reports", "--sum", "--from",
                           "2026-W40", "--to", "2026-W40")
    sums = json.loads(out)["sums"]
    assert code == 0 and sum(r["value"] for r in sums) == 7 and {r["region"] for r in sums} == {
        "north", "south"}
    code, out, _ = hzp2p("admin", "--config", cfg, "reports", "--sum")
    assert code == 0 and "2026-W41" in out
    code, out, err = hzp2p("admin", "--config", cfg, "--json", "datasets")
    assert code == 0 and json.loads(out)["datasets"] == []
    # state-scan pages with a cursor past the daemon's row cap
    seen: list[str] = []
    after: list[str] = []
    while True:
        code, out, err = hzp2p("admin", "--config", cfg, "--json", "state-scan", "6570692f72",
                               "--limit", "1", *after)  # "epi/r"
        assert code == 0, err
        page = json.loads(out)
        seen += [k for k, _ in page["items"]]
        if page["next"] is None:
            break
        after = ["--after", page["next"]]
    assert len(seen) == len(set(seen)) >= 3 and seen == sorted(seen)
    code, _, err = hzp2p("admin", "--config", cfg, "reports", "--region", "bad/region")
    assert code == 2 and "--region must be" in err


def test_watch_streams_events_and_resumes_from_a_height(cluster: LocalCluster) -> None:
    """Runs after the tests above in this module: their quarantine and recall show up."""
    cfg = str(cluster.config(2))
    head = json.loads(hzp2p("admin", "--config", cfg, "--json", "status")[1])["height"]
    code, out, err = hzp2p("admin", "--config", cfg, "watch", "--until-height", str(head))
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    blocks = [e["height"] for e in events if e["type"] == "block"]
    assert blocks == list(range(1, head + 1))
    kinds = {e["type"] for e in events}
    assert {"block", "quarantine", "recall"} <= kinds
    (q,) = [e for e in events if e["type"] == "quarantine" and e["lot_id"] == "LOT-F"]
    assert q["temp_centi_c"] == 950 and q["allowed_centi_c"] == [200, 800]
    # resume from a height, only some types
    mid = q["height"]
    code, out, err = hzp2p("admin", "--config", cfg, "watch", "--from-height", str(mid),
                           "--until-height", str(head), "--types", "recall,quarantine")
    assert code == 0, err
    resumed = [json.loads(line) for line in out.splitlines()]
    assert resumed[0] == q and {e["type"] for e in resumed} <= {"recall", "quarantine"}
    assert all(e["height"] >= mid for e in resumed)
    code, _, err = hzp2p("admin", "--config", cfg, "watch", "--types", "gossip")
    assert code == 2 and "unknown gossip" in err


def test_health_code_with_its_history(cluster: LocalCluster) -> None:
    lab_cfg = str(cluster.config(3))  # node 3 is the lab
    subject = "ab" * 16
    now = int(time.time() * 1000)
    code, _, err = hzp2p("admin", "--config", lab_cfg, "submit", "lab.result", "--payload",
                         json.dumps({"subject": subject, "test_id": "T-1", "result": "positive",
                                     "sample_ms": now - 60_000}), "--wait", "15")
    assert code == 0, err
    code, out, err = hzp2p("admin", "--config", lab_cfg, "--json", "health-code", subject,
                           "--history", "--linearizable")
    assert code == 0, err
    got = json.loads(out)
    assert got["code"]["colour"] == "red" and got["history"][-1]["changed"] is True
    code, out, err = hzp2p("admin", "--config", lab_cfg, "health-code", subject)
    assert code == 0 and out.startswith(f"{subject}: RED since"), out
    code, out, err = hzp2p("admin", "--config", lab_cfg, "health-code", "cd" * 16)
    assert code == 0 and "GREEN" in out  # nobody has a record: green by default
    code, _, err = hzp2p("admin", "--config", lab_cfg, "health-code", "Alice")
    assert code == 2 and "32 hex digits" in err
    code, out, err = hzp2p("admin", "--config", lab_cfg, "--json", "appeals")
    assert code == 0 and json.loads(out)["appeals"] == []


def test_records_from_plain_fields_are_sealed_on_the_node(cluster: LocalCluster) -> None:
    """vaccinate / record write / lab-result: the fields go in clear over the owner-only
    socket, are encrypted by the daemon, and only the subject (and the writer) can read them."""
    from nacl.signing import SigningKey

    from hzp2p.client import Client
    from hzp2p.contracts.state import DictState
    from hzp2p.ledger.genesis import load_genesis

    c = cluster
    maker, site = str(c.config(MAKER)), str(c.config(SITE))
    hospital, lab = str(c.config(4)), str(c.config(3))
    now = int(time.time() * 1000)
    for argv in (
        ["submit", "lot.register", "--payload", json.dumps({
            "lot_id": "LOT-X", "product": "flu", "quantity": 5, "expiry_ms": now + 9 * 86_400_000,
            "temp_min_centi_c": 200, "temp_max_centi_c": 800})],
        ["submit", "lot.transfer", "--payload", json.dumps({"lot_id": "LOT-X", "to": SITE})],
    ):
        code, _, err = hzp2p("admin", "--config", maker, *argv, "--wait", "15")
        assert code == 0, err
    alice = SigningKey.generate()
    pub = bytes(alice.verify_key).hex()
    secret = "Alice Wang 110101199003077777"
    code, out, err = hzp2p("admin", "--config", site, "--json", "vaccinate", "--subject-key", pub,
                           "--lot", "LOT-X", "--dose", "1", "--fields",
                           json.dumps({"name": secret, "arm": "left"}), "--wait", "15")
    assert code == 0, err
    vax = json.loads(out)
    assert vax["status"] == "committed" and vax["record_id"].startswith("vax-")
    code, out, err = hzp2p("admin", "--config", hospital, "--json", "record", "write", "--type",
                           "diagnosis", "--subject-key", pub, "--record-id", "DX-1", "--fields",
                           json.dumps({"diagnosis": "influenza"}), "--wait", "15")
    assert code == 0 and json.loads(out)["record_id"] == "DX-1", err
    code, out, err = hzp2p("admin", "--config", lab, "--json", "lab-result", "--subject-key", pub,
                           "--test-id", "T-77", "--result", "negative", "--sample-time",
                           "2026-12-01T08:00:00Z", "--fields", json.dumps({"ct": 35}),
                           "--wait", "15")
    assert code == 0 and json.loads(out)["status"] == "committed", err
    # Alice's app reads her records from committed state (ciphertext + her sealed keys)
    rows = json.loads(hzp2p("admin", "--config", site, "--json", "state-scan", "-",
                            "--limit", "10000")[1])["items"]
    state = DictState({bytes.fromhex(k): bytes.fromhex(v) for k, v in rows})
    app = Client(alice, load_genesis(c.root / "genesis.toml").chain_id)
    assert app.read_record(state, vax["record_id"]) == {"name": secret, "arm": "left"}
    assert app.read_record(state, "DX-1") == {"diagnosis": "influenza"}
    # the clear fields are nowhere in what the nodes wrote
    for path in c.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    # bad input: refused before anything is sent
    for argv, status, says in (
        (["vaccinate", "--subject-key", "zz", "--lot", "LOT-X", "--dose", "1", "--fields", "{}"],
         2, "64 hex digits"),
        (["vaccinate", "--subject-key", pub, "--lot", "LOT-X", "--dose", "1"], 2,
         "--fields is required"),
        (["vaccinate", "--subject-key", pub, "--lot", "LOT-X", "--dose", "1", "--fields",
          "@/no/such/file"], 2, "cannot read"),
        (["vaccinate", "--subject-key", pub, "--lot", "NO-LOT", "--dose", "1", "--fields",
          "{}", "--wait", "15"], 1, "unknown lot"),
    ):
        code, _, err = hzp2p("admin", "--config", site, *argv)
        assert code == status and says in err, (argv, err)


def test_the_writers_daemon_hands_keys_over_under_a_grant_and_on_emergency(
    cluster: LocalCluster,
) -> None:
    from nacl.signing import SigningKey

    from hzp2p.client import Client
    from hzp2p.contracts.state import DictState
    from hzp2p.ledger.genesis import load_genesis
    from hzp2p.node.keys import load_signing_key

    c = cluster
    hospital, authority = str(c.config(4)), str(c.config(1))
    chain_id = load_genesis(c.root / "genesis.toml").chain_id
    alice = SigningKey.generate()
    app = Client(alice, chain_id)
    code, out, err = hzp2p("admin", "--config", hospital, "--json", "record", "write", "--type",
                           "diagnosis", "--subject-key", bytes(alice.verify_key).hex(),
                           "--record-id", "DX-HO", "--fields", json.dumps({"dx": "measles"}),
                           "--wait", "15")
    assert code == 0, err
    # Alice grants the lab (node 3) a second opinion; the hospital's daemon shares by itself
    now = int(time.time() * 1000)
    grant = app.tx("consent.grant", {"grant_id": "G-2", "grantee": 3, "record_types": ["diagnosis"],
                                     "purpose": "second opinion",
                                     "expiry_ms": now + 86_400_000}, now)
    code, out, err = hzp2p("admin", "--config", hospital, "--json", "submit-raw",
                           grant.encode().hex(), "--wait", "15")
    assert code == 0 and json.loads(out)["status"] == "committed", err
    deadline = time.monotonic() + 30
    while True:
        code, out, _ = hzp2p("admin", "--config", hospital, "--json", "access-log",
                             app.pseudonym, "--linearizable")
        entries = json.loads(out)["entries"]
        if any(e["kind"] == "share" and e["grantee"] == 3 for e in entries):
            break
        assert time.monotonic() < deadline, entries
        time.sleep(0.5)
    (share,) = [e for e in entries if e["kind"] == "share"]
    assert (share["by"], share["purpose"], share["grant_id"]) == (4, "second opinion", "G-2")
    # the lab can open it now
    rows = json.loads(hzp2p("admin", "--config", hospital, "--json", "state-scan", "-",
                            "--limit", "10000")[1])["items"]
    state = DictState({bytes.fromhex(k): bytes.fromhex(v) for k, v in rows})
    lab = Client(load_signing_key(c.files[3].directory / "signing.key"), chain_id, 3)
    assert lab.read_record(state, "DX-HO") == {"dx": "measles"}
    # emergency: an authority asks with a reason, the holder's operator fulfils
    code, _, err = hzp2p("admin", "--config", authority, "submit", "access.emergency",
                         "--payload", json.dumps({"record_id": "DX-HO",
                                                  "reason": "patient unconscious in A&E"}),
                         "--wait", "15")
    assert code == 0, err
    code, out, err = hzp2p("admin", "--config", hospital, "--json", "emergency", "fulfil",
                           "DX-HO", "--to", "1", "--wait", "15")
    assert code == 0 and json.loads(out)["status"] == "committed", err
    code, out, err = hzp2p("admin", "--config", hospital, "--json", "access-log", app.pseudonym,
                           "--linearizable")
    kinds = [e["kind"] for e in json.loads(out)["entries"]]
    assert kinds.count("emergency") == 1 and kinds.count("share") == 2
    code, _, err = hzp2p("admin", "--config", hospital, "emergency", "fulfil", "NO-SUCH",
                         "--to", "1")
    assert code == 1 and "unknown record" in err


def test_every_list_pages_with_limit_and_after(cluster: LocalCluster) -> None:
    """Runs after the tests above (their lots, doses, readings and reports are the lists):
    the pages of each list, followed by their `next` cursors, are the whole list in order."""
    from nacl.signing import SigningKey

    from hzp2p.admin.paging import PAGED

    c = cluster
    cfg = str(c.config(4))
    alice = SigningKey.generate()
    for rid in ("PG-1", "PG-2", "PG-3"):
        code, _, err = hzp2p("admin", "--config", cfg, "record", "write", "--type", "diagnosis",
                             "--subject-key", bytes(alice.verify_key).hex(), "--record-id", rid,
                             "--fields", "{}", "--wait", "15")
        assert code == 0, err
    from hzp2p.crypto.records import pseudonym

    subject = pseudonym(bytes(alice.verify_key))
    lists: list[tuple[list[str], str]] = [
        (["members"], "members"), (["peers"], "peers"), (["proposals"], "proposals"),
        (["subject-records", subject], "records"), (["lot-history", "LOT-V"], "events"),
        (["access-log", subject], "entries"), (["doses", "--lot", "LOT-V"], "doses"),
        (["temperatures", "LOT-F"], "readings"), (["grants", subject], "grants"),
        (["stock"], "stock"), (["expiring", "--days", "500"], "lots"),
        (["doses-per-day", "--site", str(SITE)], "days"), (["reports"], "reports"),
        (["reports", "--sum"], "sums"), (["datasets"], "datasets"),
        (["exposures"], "exposures"), (["appeals"], "appeals"),
        (["health-code", subject, "--history"], "history"),
    ]
    assert {PAGED[k].fields[0] for k in PAGED} >= {f for _, f in lists} - {"reports"}
    for argv, field in lists:
        code, out, err = hzp2p("admin", "--config", cfg, "--json", *argv)
        assert code == 0, (argv, err)
        whole = json.loads(out)
        assert whole["next"] is None, argv
        pages: list[object] = []
        after: list[str] = []
        while True:
            code, out, err = hzp2p("admin", "--config", cfg, "--json", *argv, "--limit", "2",
                                   *after)
            assert code == 0, (argv, err)
            got = json.loads(out)
            assert len(got[field]) <= 2
            pages += got[field]
            if got["next"] is None:
                break
            after = ["--after", got["next"]]
        assert pages == whole[field], argv
    assert len(json.loads(hzp2p("admin", "--config", cfg, "--json", "subject-records",
                                subject)[1])["records"]) == 3
    code, out, err = hzp2p("admin", "--config", cfg, "subject-records", subject, "--limit", "1")
    assert code == 0 and "(more: --after " in out, out
    for argv, status, says in (
        (["members", "--after", "zz"], 2, "not a cursor"),
        (["members", "--after", "00"], 2, "not a cursor"),
        (["members", "--limit", "0"], 2, "expected an integer in 1..100000"),
        (["members", "--after", "5b2261222c315d"], 1, "a cursor of another list"),  # ["a", 1]
    ):
        code, out, err = hzp2p("admin", "--config", cfg, *argv)
        assert code == status and says in err, (argv, err)
