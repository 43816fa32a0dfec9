"""The demo's whole story through the `hzp2p` command alone (issues 15 and 17).

The same scripted list `hzp2p demo` runs (hzp2p.tools.demo_story), with every operator's
step run as a `hzp2p` subprocess against a real 3-node cluster: admissions, lots and a
sensor's batch, vaccinations signed with a clinic's key file, a venue's QR code, a
published exposure, a negative and a positive test, an appeal's resolution, a share,
the views (stock, a recalled lot's recipients, expiring lots, the watch stream), every
node's verify, and the offline receipts. What Alice's phone does over the real gateway
is `hzp2p citizen` (her check-in, the exposure matched on her side and declared, her
appeal, her grant, her code, records and access log, her grant's receipt), the
hospital's records client `hzp2p institution record`, a venue's scanner `hzp2p venue
trust-list` and `hzp2p verify-code`. Outcomes are asserted from the commands' --json
output. The only other steps are what happens to processes (SIGKILL, restart, starting
the gateway, waiting for convergence): no step of the story calls Python.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from hzp2p.tools.demo import as_subprocess, story, tell
from hzp2p.tools.demo_story import Cmd, Op, after_stop

pytestmark = pytest.mark.slow


def _results(log: list[dict[str, Any]], *words: str) -> list[Any]:
    """The --json results of the commands whose argv holds every word, in order."""
    return [e["result"] for e in log
            if e["kind"] == "cmd" and all(w in e["argv"] for w in words)]


def test_every_step_is_a_command_but_process_events() -> None:
    steps = [s for ch in [*story(), after_stop()] for s in ch.steps]
    assert {type(s) for s in steps} == {Cmd, Op}
    # processes only: kill, restart, the gateway process, waiting for convergence
    ops = [s.say for s in steps if isinstance(s, Op)]
    assert ops == ["kill the leader", "restart the killed node",
                   "the node's operator starts `hzp2p gateway --config`",
                   "wait until every node applied the same height"]
    assert len([s for s in steps if isinstance(s, Cmd)]) >= 65


def test_the_whole_story_with_the_hzp2p_command_only(tmp_path: Path) -> None:
    summary, log = tell(tmp_path, as_subprocess, quiet=True)
    cmds = [e for e in log if e["kind"] == "cmd"]
    assert summary["commands"] == len(cmds) >= 65
    assert [e["say"] for e in log if e["kind"] != "cmd"] == [
        "kill the leader", "restart the killed node",
        "the node's operator starts `hzp2p gateway --config`",
        "wait until every node applied the same height"]
    assert summary["refused"] == 2 and summary["nodes"] == 3
    assert summary["leader_killed"] != summary["new_leader"]

    # admissions by vote; everything institutions without a daemon did was signed with --key
    members = _results(log, "members")[-1]["members"]
    assert {"VaxCo", "ColdLine", "Riverside Clinic", "City Hospital"} <= {m["name"] for m in members}
    keyed = [e for e in cmds if "--key" in e["argv"] and "admin" in e["argv"]]
    assert len(keyed) >= 10 and all(e["result"]["status"] in ("committed", "rejected")
                                    for e in keyed)

    # the cold chain: LOT-B quarantined by the sensor's batch and refused downstream
    assert _results(log, "lot", "LOT-B")[0]["lot"]["status"] == "quarantined"
    refused = [e["result"]["reason"] for e in cmds if e["exit"] == 1 and "admin" in e["argv"]]
    assert len(refused) == 2 and all("quarantined" in r for r in refused)

    # the health code's life: exposure -> yellow, negative -> green, positive -> red,
    # appeal corrected -> green
    codes = [r["code"] for r in _results(log, "admin", "health-code") if "history" not in r]
    assert [c["colour"] for c in codes] == ["yellow", "green", "red", "green"]
    assert [c["source"] for c in codes] == ["exposure", "lab", "lab", "appeal"]
    assert _results(log, "exposures")[0]["exposures"][0]["venue_id"] == "market-hall"
    history = _results(log, "admin", "health-code", "--history")[0]
    assert [e["event"] for e in history["history"]][:2] == ["exposure.declare", "lab.result"]

    # the hospital was handed the key under Alice's grant; her access log says so
    hospital = next(m["inst_id"] for m in members if m["name"] == "City Hospital")
    entries = _results(log, "admin", "access-log")[0]["entries"]
    assert ("share", hospital, "VAX-1") in [(e["kind"], e["grantee"], e["record_id"]) for e in entries]

    # the supply views and the event stream on the demo's cluster
    riverside = next(m["inst_id"] for m in members if m["name"] == "Riverside Clinic")
    stock = _results(log, "stock")[0]["stock"]
    assert {"custodian": riverside, "product": "covax", "available": 99} in [
        {k: r[k] for k in ("custodian", "product", "available")} for r in stock]
    alice = _results(log, "admin", "health-code")[0]["subject"]
    assert [d["subject"] for d in _results(log, "doses", "--lot")[0]["doses"]] == [alice]
    assert [x["lot_id"] for x in _results(log, "expiring")[0]["lots"]] == ["LOT-A"]
    watched = _results(log, "watch")[0]
    assert [e["type"] for e in watched].count("quarantine") == 1
    assert [e["colour"] for e in watched if e["type"] == "code"] == ["yellow", "green", "red",
                                                                   "green"]

    # identical chains, every node verifies, and the receipt verifies offline
    blocks = _results(log, "block")
    assert len(blocks) == 3 and len({b["hash"] for b in blocks}) == 1
    assert all(r["ok"] for r in _results(log, "verify"))
    offline = _results(log, "verify-receipt")
    assert [(r["ok"], r["type"]) for r in offline] == [(True, "vaccination.record"),
                                                      (True, "consent.grant")]

    # Alice's phone, the hospital's records client and a venue's scanner: commands too
    phone = [e for e in cmds if e["argv"][0] == "citizen"]
    assert all(e["argv"][e["argv"].index("--key") + 1].endswith("alice.key") for e in phone)
    assert {e["argv"][1] for e in phone} >= {"whoami", "health-code", "checkin", "exposures",
                                            "declare", "appeal", "grant", "access-log",
                                            "record", "receipt"}
    posted = [e["result"] for e in phone if e["argv"][1] in ("checkin", "declare", "appeal",
                                                             "grant")]
    assert [(r["type"], r["status"]) for r in posted] == [
        ("checkin.record", "committed"), ("exposure.declare", "committed"),
        ("healthcode.appeal", "committed"), ("consent.grant", "committed")]
    assert _results(log, "citizen", "exposures", "--match")[0]["matched"] == ["EXP-1"]
    app_codes = [r["colour"] for r in _results(log, "citizen", "health-code")
                 if "history" not in r]
    assert app_codes == ["green", "yellow", "red", "green"]
    assert [(e["kind"], e["grantee"], e["record_id"]) for e in
            _results(log, "citizen", "access-log")[0]["entries"]] == [
        (e["kind"], e["grantee"], e["record_id"]) for e in entries]
    assert _results(log, "institution", "record", "VAX-1")[0]["fields"]["name"] == "Alice"
    assert _results(log, "citizen", "record", "VAX-1")[0]["fields"]["name"] == "Alice"
    venue = [e for e in cmds if e["argv"][0] == "verify-code"]
    assert [(e["exit"], e["result"]["ok"]) for e in venue] == [(0, True), (1, False)]

    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) not in ps
