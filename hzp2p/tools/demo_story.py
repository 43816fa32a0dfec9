"""The story of `hzp2p demo`, as the list of what each party types or does.

Every operator's step is one `hzp2p` command line (`Cmd`): keys from `hzp2p keygen`,
admissions by `admin add-learner` and `admin vote`, an institution without its own daemon
signing with its key file (`admin submit --key`, `readings submit --key`, `vaccinate
--key`, `share --key`), a sensor's batch from `hzp2p sensor sign`, a venue's code from
`hzp2p venue qr`, views read with `--json` (`admin lot`, `health-code`, `exposures`,
`access-log`, `status`, `verify`), Alice's receipt by `admin receipt` and, once every
daemon is stopped, `hzp2p verify-receipt`. What Alice's phone does is `hzp2p citizen`
over the gateway (her check-in sealed to her alone, matching the published exposures on
her side, her declaration, appeal and grant, her code, records and access log), the
hospital's records client is `hzp2p institution record`, a venue's scanner `hzp2p venue
trust-list` and `hzp2p verify-code`. Only what happens to processes (start, SIGKILL,
restart, the gateway process, waiting for convergence) is the harness's (`Op`).
hzp2p.tools.demo runs the list in-process for `hzp2p demo`;
tests/integration/test_demo_cli_story.py runs the same list with every `Cmd` as a
`hzp2p` subprocess, so the demo provably uses only what the commands offer.

`V` carries what later steps need (ids, public keys, transaction hashes), filled from
the commands' --json output by each step's `keep`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
AUTHORITIES = (1, 2)
LAB = 3
INSTITUTIONS = (  # (slug, name, role): admitted by vote, no daemon of their own
    ("vaxco", "VaxCo", "manufacturer"),
    ("coldline", "ColdLine", "carrier"),
    ("riverside", "Riverside Clinic", "vaccination_site"),
    ("hospital", "City Hospital", "hospital"),
)


class V:
    """The story's variables and where things are: configs, the genesis, the files."""

    def __init__(self, root: Path, genesis: Path, configs: dict[int, Path],
                 live: Callable[[], list[int]]) -> None:
        self.root, self.genesis, self.configs, self.live = root, genesis, configs, live
        self.values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[name] = value

    def key(self, slug: str) -> str:
        return str(self.root / slug / "signing.key")

    def file(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def node(self) -> int:
        """A running node (operators of institutions without a daemon use any)."""
        return self.live()[0]

    def authority(self) -> int:
        live = self.live()
        return next(k for k in AUTHORITIES if k in live)

    @staticmethod
    def now_ms() -> int:
        return time.time_ns() // 1_000_000


def admin(v: V, node: int, *args: str) -> list[str]:
    return ["admin", "--config", str(v.configs[node]), "--json", *args]


def citizen(v: V, sub: str, *args: str) -> list[str]:
    """Alice's phone: `hzp2p citizen SUB` over the gateway with her key file."""
    return ["citizen", sub, "--gateway", v["gw_url"], "--key", str(v.file("alice.key")),
            "--json", *args]


def submit(v: V, node: int, tx_type: str, payload: dict[str, Any], *,
           key: str | None = None) -> list[str]:
    argv = admin(v, node, "submit", tx_type, "--payload", json.dumps(payload))
    return argv + (["--key", v.key(key)] if key else [])


@dataclass(frozen=True)
class Cmd:
    """One `hzp2p` command line (argv after `hzp2p`), as an operator types it."""

    say: str
    argv: Callable[[V], list[str]]
    refused: bool = False
    """The rules must refuse it: a rejected receipt (exit 1)."""
    keep: Callable[[V, Any], None] | None = None
    """Values for later steps, from the --json output."""
    check: Callable[[V, Any], str | None] | None = None
    """A narration line from the output; raises Wrong if the outcome is not the story's."""
    to_file: Callable[[V], Path] | None = None
    """Write the command's stdout to this file (a sensor's signed batch)."""
    files: Callable[[V], dict[Path, str]] | None = None
    """Input files the operator already has (a sensor gateway's CSV export)."""
    retry_s: float = 0.0
    """Repeat while it fails, this long (a receipt exists once its block is certified)."""
    lines: bool = False
    """The output is JSON lines (a stream): `keep`/`check` get the list."""
    exit: int = 0
    """The exit status the story expects (1: a documented failure, e.g. an expired code)."""


@dataclass(frozen=True)
class Op:
    """What happens to processes (start, SIGKILL, restart): the harness, not a command."""

    say: str
    run: Callable[[V, Any], str | None]


Step = Cmd | Op


@dataclass
class Chapter:
    title: str
    steps: list[Step] = field(default_factory=list)


class Wrong(Exception):
    """A step's outcome is not the story's."""


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Wrong(what)


# ---------------------------------------------------------------- the chapters


def _admission(slug: str, name: str, role: str) -> list[Step]:
    def keep_keys(v: V, out: Any) -> None:
        v[f"{slug}_pk"], v[f"{slug}_nk"] = out["signing"]["public_key"], out["node"]["public_key"]

    def keep_proposal(v: V, out: Any) -> None:
        v[f"{slug}_proposal"] = out["proposal_id"]

    def keep_id(v: V, out: Any) -> str:
        found = [m["inst_id"] for m in out["members"] if m["signing_key"] == v[f"{slug}_pk"]]
        expect(len(found) == 1, f"{name} is not a member after the vote")
        v[f"{slug}_id"] = found[0]
        return f"{name} is member {found[0]}"

    return [
        Cmd(f"{name} makes its keys", lambda v: ["keygen", str(v.file(slug)), "--json"],
            keep=keep_keys),
        Cmd(f"authority 1 proposes to admit {name} ({role})", lambda v: admin(
            v, 1, "add-learner", "--name", name, "--roles", role, "--signing-key",
            v[f"{slug}_pk"], "--node-key", v[f"{slug}_nk"], "--address", "127.0.0.1:9"),
            keep=keep_proposal),
        Cmd("authority 2 votes yes", lambda v: admin(
            v, 2, "vote", str(v[f"{slug}_proposal"]), "yes")),
        Cmd("the member list", lambda v: admin(v, 2, "members", "--linearizable"),
            check=keep_id),
    ]


def _readings(lot: str, temps: tuple[str, str], say: str) -> list[Step]:
    def csv(v: V) -> Path:
        return v.file("coldline", f"{lot}.csv")

    def signed(v: V) -> Path:
        return v.file("coldline", f"{lot}.json")

    def export(v: V) -> dict[Path, str]:
        # taken while ColdLine holds the lot (cold-chain rules refuse readings dated
        # outside the uploader's custody)
        t = v.now_ms()
        return {csv(v): f"time,temp_c\n{t},{temps[0]}\n{t + 500},{temps[1]}\n"}

    return [
        Cmd(f"SENSOR-1 signs its readings for {lot}", lambda v: [
            "sensor", "sign", "--key", str(v.file("coldline", "SENSOR-1.key")), "--sensor",
            "SENSOR-1", "--lot", lot, "--readings", str(csv(v))], files=export, to_file=signed),
        Cmd(say, lambda v: admin(v, v.node(), "readings", "submit", "--file", str(signed(v)),
                                 "--key", v.key("coldline"))),
    ]


def _lot_status(lot: str, status: str) -> Cmd:
    def check(v: V, out: Any) -> str:
        got = out["lot"]["status"]
        expect(got == status, f"{lot} is {got!r}, expected {status!r}")
        return f"{lot} is {got}"

    return Cmd(f"anyone reads {lot}'s status", lambda v: admin(v, v.node(), "lot", lot),
               check=check)


def _code(colour: str, via: str = "") -> Cmd:
    def check(v: V, out: Any) -> str:
        code = out["code"]
        expect(code["colour"] == colour, f"Alice's code is {code['colour']!r}, expected {colour!r}")
        return f"Alice's code: {code['colour']} — {code['reason']!r} (source {code['source']})"

    return Cmd(f"an authority reads Alice's health code{via}",
               lambda v: admin(v, v.authority(), "health-code", v["alice"], "--linearizable"),
               check=check)


def _app_code(colour: str, *, qr: bool = False) -> Cmd:
    def check(v: V, code: Any) -> str:
        expect(code["colour"] == colour, f"over HTTP the code is {code['colour']!r}")
        v["credential_until"] = code["credential_valid_until_s"]
        return (f"{code['colour']}, why {code['why']!r}, credential "
                f"{str(code['credential'])[:24]}...")

    def argv(v: V) -> list[str]:  # --qr: the code's QR image, as her screen shows it
        return citizen(v, "health-code", *(["--qr", str(v.file("alice-code.png"))] if qr else []))

    return Cmd("Alice's app shows her code" + (" as a QR code" if qr else ""), argv, check=check)


def _lot(lot: str) -> list[Step]:
    def payload(v: V) -> dict[str, Any]:
        return {"lot_id": lot, "product": "covax", "quantity": 100,
                "expiry_ms": v.now_ms() + 30 * DAY_MS, "temp_min_centi_c": 200,
                "temp_max_centi_c": 800}

    return [
        Cmd(f"VaxCo registers {lot} (2.00..8.00 C)", lambda v: submit(
            v, v.node(), "lot.register", payload(v), key="vaxco")),
        Cmd(f"VaxCo hands {lot} to ColdLine", lambda v: submit(
            v, v.node(), "lot.transfer", {"lot_id": lot, "to": v["coldline_id"]}, key="vaxco")),
    ]


def _node_checks(k: int) -> list[Step]:
    def keep_head(v: V, o: Any) -> str:
        v[f"head{k}"] = o["hash"]
        earlier = {v[f"head{j}"] for j in range(1, k)}
        expect(earlier <= {o["hash"]}, f"node {k}'s block {o['height']} differs")
        return f"node {k}: block {o['height']} is {o['hash'][:16]}" + (", the same" if earlier else "")

    def verified(v: V, o: Any) -> str:
        expect(o["ok"] is True, f"node {k}: verify failed: {o}")
        return f"node {k}: {o['blocks_checked']} blocks verify"

    return [
        Cmd(f"node {k}'s block at that height", lambda v: admin(v, k, "block", str(v["height"])),
            check=keep_head),
        Cmd(f"node {k} re-verifies its chain", lambda v: admin(
            v, k, "--timeout", "60", "verify"), check=verified),
    ]


def chapters(before_checks: Sequence[Chapter] = ()) -> list[Chapter]:
    """The story; `before_checks` (chapters of other modules: hzp2p.tools.demo_research)
    come before the final checks that every node holds the same chain."""
    out = [Chapter("The founding authorities admit a vaccine maker, a carrier, a clinic and a "
                   "hospital (none runs a daemon: each signs with its key file)")]
    for inst in INSTITUTIONS:
        out[-1].steps += _admission(*inst)

    c = Chapter("Two vaccine lots are registered and handed to the carrier; a sensor reports")
    c.steps += [*_lot("LOT-A"), *_lot("LOT-B")]

    def keep_sensor(v: V, o: Any) -> None:
        v["sensor_pk"] = o["sensor"]["public_key"]

    c.steps += [
        Cmd("ColdLine makes SENSOR-1's key", lambda v: [
            "keygen", str(v.file("coldline")), "--kind", "sensor", "--name", "SENSOR-1",
            "--json"], keep=keep_sensor),
        Cmd("ColdLine registers SENSOR-1", lambda v: submit(
            v, v.node(), "sensor.register",
            {"sensor_id": "SENSOR-1", "verify_key": {"$hex": v["sensor_pk"]}}, key="coldline")),
        *_readings("LOT-A", ("4.5", "4.6"), "ColdLine uploads 4.5 C, 4.6 C for LOT-A"),
        *_readings("LOT-B", ("4.5", "12.5"), "ColdLine uploads 12.5 C for LOT-B (an excursion)"),
        _lot_status("LOT-B", "quarantined"),
        Cmd("ColdLine delivers LOT-A to Riverside Clinic", lambda v: submit(
            v, v.node(), "lot.transfer", {"lot_id": "LOT-A", "to": v["riverside_id"]},
            key="coldline")),
        Cmd("ColdLine tries to deliver LOT-B to Riverside", lambda v: submit(
            v, v.node(), "lot.transfer", {"lot_id": "LOT-B", "to": v["riverside_id"]},
            key="coldline"), refused=True),
    ]
    out.append(c)

    out.append(Chapter("!! the leader is killed (SIGKILL); another takes over",
                       [Op("kill the leader", lambda v, h: h.kill_leader())]))

    def keep_alice(v: V, o: Any) -> None:
        v["alice_pk"], v["alice"] = o["public_key"], o["pseudonym"]

    def keep_vax(v: V, o: Any) -> None:
        v["vax_tx"] = o["tx_hash"]

    out.append(Chapter("Vaccinations: the good lot is accepted, the quarantined one refused", [
        Cmd("Alice's phone makes her key", lambda v: [
            "citizen-key", str(v.file("alice.key")), "--json"], keep=keep_alice),
        Cmd("Riverside vaccinates Alice with LOT-A (her name and birth date encrypted)",
            lambda v: admin(v, v.node(), "vaccinate", "--key", v.key("riverside"),
                            "--subject-key", v["alice_pk"], "--record-id", "VAX-1",
                            "--fields", json.dumps({"name": "Alice", "born": "1990-01-01"}),
                            "--lot", "LOT-A", "--dose", "1"), keep=keep_vax),
        Cmd("Riverside tries to vaccinate with LOT-B", lambda v: admin(
            v, v.node(), "vaccinate", "--key", v.key("riverside"), "--subject-key",
            v["alice_pk"], "--record-id", "VAX-2", "--fields", json.dumps({"name": "Alice"}),
            "--lot", "LOT-B", "--dose", "2"), refused=True),
    ]))

    def keep_gateway(v: V, h: Any) -> str:
        v["gw_node"], v["gw_url"], v["gw_key"] = h.start_gateway()
        return f"gateway for node {v['gw_node']} at {v['gw_url']} (OpenAPI at /openapi.json)"

    def whoami(v: V, o: Any) -> str:
        expect(o["pseudonym"] == v["alice"], f"whoami: {o}")
        return f"her pseudonym {o['pseudonym']} on chain {o['chain_id']}"

    out.append(Chapter("The killed node restarts and catches up; a gateway opens for the apps", [
        Op("restart the killed node", lambda v, h: h.restart()),
        Op("the node's operator starts `hzp2p gateway --config`", keep_gateway),
        Cmd("an authority registers the gateway's health-code credential key", lambda v: submit(
            v, v.authority(), "credkey.register",
            {"inst_id": v["gw_node"], "public_key": {"$hex": v["gw_key"]}})),
        Cmd("Alice's app opens with her key", lambda v: citizen(v, "whoami"), check=whoami),
        _app_code("green"),
    ]))

    def keep_venue(v: V, o: Any) -> None:
        v["venue_pk"] = o["venue"]["public_key"]

    def keep_qr(v: V, o: Any) -> str:
        v["qr"] = o["qr"]
        return f"QR {o['qr'][:28]}... (day {o['day']})"

    def checkin(v: V, o: Any) -> str:
        v["visit_ms"] = o["t_ms"]
        return "a ciphertext only she can open"

    def publish(v: V) -> list[str]:
        return submit(v, v.authority(), "exposure.publish", {
            "exposure_id": "EXP-1", "venue_id": "market-hall",
            "from_ms": v["visit_ms"] - HOUR_MS, "to_ms": v.now_ms(), "level": "high",
            "case_ref": "case-7"})

    def listed(v: V, o: Any) -> str:
        ids = [e["exposure_id"] for e in o["exposures"]]
        expect(ids == ["EXP-1"], f"published: {ids}")
        return f"{len(ids)} published exposure(s), public for every app"

    def match(v: V, o: Any) -> str:
        expect(o["matched"] == ["EXP-1"], f"Alice's app matched {o['matched']}, expected EXP-1")
        return (f"the public list; her phone decrypts her {o['checkins']} check-in(s) and finds "
                "one in EXP-1's window")

    out.append(Chapter("A check-in, a published exposure, Alice's app matches it: yellow; a "
                       "negative test: green", [
        Cmd("the Market Hall makes its venue key", lambda v: [
            "keygen", str(v.file("market-hall")), "--kind", "venue", "--json"], keep=keep_venue),
        Cmd("the city's authority registers the Market Hall as a venue", lambda v: submit(
            v, v.authority(), "venue.register",
            {"venue_id": "market-hall", "verify_key": {"$hex": v["venue_pk"]}})),
        Cmd("the Market Hall prints today's QR code", lambda v: [
            "venue", "qr", "--key", str(v.file("market-hall", "venue.key")), "--venue",
            "market-hall", "--genesis", str(v.genesis), "--json"], check=keep_qr),
        Cmd("Alice scans it; her app records the visit sealed to her alone",
            lambda v: citizen(v, "checkin", "--venue-qr", v["qr"]), check=checkin),
        Cmd("a visitor tests positive; the authority publishes the hall and the hour before",
            publish),
        Cmd("the authority lists what it published", lambda v: admin(
            v, v.node(), "exposures", "--linearizable"), check=listed),
        Cmd("Alice's app downloads the exposures and matches them on her phone",
            lambda v: citizen(v, "exposures", "--match"), check=match),
        Cmd("her app declares the match (signed by her)",
            lambda v: citizen(v, "declare", "EXP-1")),
        _code("yellow"),
        _app_code("yellow"),
        Cmd("the lab (node 3) reports a negative test sampled after the exposure",
            lambda v: admin(v, LAB, "lab-result", "--subject-key", v["alice_pk"], "--test-id",
                            "T-1", "--result", "negative", "--sample-time", str(v.now_ms()))),
        _code("green"),
    ]))

    def history(v: V, o: Any) -> str:
        return " -> ".join(f"{e['event']} ({e['colour']})" for e in o["history"])

    def find_event(v: V, o: Any) -> str:
        hist = o["history"]
        ev = [e for e in hist if e["event"] == "lab.result" and e["colour"] == "red"]
        expect(bool(ev), f"no red lab event in Alice's history: {hist}")
        v["red_event"] = ev[-1]["seq"]
        return f"{len(hist)} events; the positive result is event {v['red_event']}"

    def venue_ok(v: V, o: Any) -> str:
        expect(o["ok"] is True and o["colour"] == "green", f"the venue's check: {o}")
        return f"valid, {o['colour']}, issued by {o['issuer_name']}"

    def venue_late(v: V, o: Any) -> str:
        expect(o["ok"] is False and any("expired" in p for p in o["problems"]), f"late: {o}")
        return "a second after its validity: refused, expired"

    out.append(Chapter("A positive result turns Alice's code red; she appeals, an authority "
                       "corrects it", [
        Cmd("the lab (node 3) reports a positive test", lambda v: admin(
            v, LAB, "lab-result", "--subject-key", v["alice_pk"], "--test-id", "T-2",
            "--result", "positive", "--sample-time", str(v.now_ms()))),
        _code("red"),
        _app_code("red"),
        Cmd("an authority reads Alice's code history", lambda v: admin(
            v, v.authority(), "health-code", v["alice"], "--history", "--linearizable"),
            check=history),
        Cmd("Alice's app lists her code's history, with event numbers",
            lambda v: citizen(v, "health-code", "--history"), check=find_event),
        Cmd("Alice appeals: not her sample (signed by her)", lambda v: citizen(
            v, "appeal", "--id", "AP-1", "--event", str(v["red_event"]), "--reason",
            "not_my_sample")),
        Cmd("the authority finds the sample mix-up and corrects the code to green",
            lambda v: submit(v, v.authority(), "healthcode.resolve", {
                "subject": v["alice"], "appeal_id": "AP-1", "outcome": "corrected",
                "reason": "sample T-2 was another patient's", "colour": "green"})),
        _code("green", " (corrected by the appeal)"),
        _app_code("green", qr=True),
        Cmd("a venue's scanner downloads the trust list", lambda v: [
            "venue", "trust-list", "--gateway", v["gw_url"], "--out",
            str(v.file("trust-list.json")), "--json"]),
        Cmd("the venue checks Alice's QR code offline", lambda v: [
            "verify-code", str(v.file("alice-code.png")), "--trust-list",
            str(v.file("trust-list.json")), "--json"], check=venue_ok),
        Cmd("the same QR code once expired", lambda v: [
            "verify-code", str(v.file("alice-code.png")), "--trust-list",
            str(v.file("trust-list.json")), "--at", str(v["credential_until"] + 1), "--json"],
            exit=1, check=venue_late),
    ]))

    def hospital_reads(v: V, o: Any) -> str:
        expect(o["fields"].get("name") == "Alice", f"the hospital read {o}")
        return f"City Hospital decrypts VAX-1 on its side: {o['fields']}"

    def keep_log(v: V, o: Any) -> str:
        v["access_log"] = [(e["kind"], e["grantee"], e["record_id"]) for e in o["entries"]]
        return "; ".join(
            f"member {e['grantee']} via {e['kind']} for {e.get('purpose')!r} (record "
            f"{e['record_id']})" if e.get("record_id") else f"{e['kind']} of her code by {e['by']}"
            for e in o["entries"])

    def app_log(v: V, o: Any) -> str:
        log = [(e["kind"], e["grantee"], e["record_id"]) for e in o["entries"]]
        expect(log == v["access_log"], f"over HTTP the access log is {log}")
        return f"{len(log)} entries, the same"

    def own(v: V, o: Any) -> str:
        expect(o["fields"].get("name") == "Alice", f"her record: {o}")
        return str(o["fields"])

    def keep_grant(v: V, o: Any) -> None:
        v["grant_tx"] = o["tx_hash"]

    out.append(Chapter("Alice grants City Hospital access; the hospital decrypts her record", [
        Cmd("Alice's app grants City Hospital (treatment)", lambda v: citizen(
            v, "grant", "--id", "G-1", "--to", str(v["hospital_id"]), "--types", "vaccination",
            "--purpose", "treatment", "--days", "1"), keep=keep_grant),
        Cmd("Riverside shares the record key under grant G-1", lambda v: admin(
            v, v.node(), "share", "VAX-1", "--to", str(v["hospital_id"]), "--grant", "G-1",
            "--purpose", "treatment", "--key", v.key("riverside"))),
        Cmd("City Hospital's records client fetches VAX-1 (signed with its key)", lambda v: [
            "institution", "record", "VAX-1", "--gateway", v["gw_url"], "--key",
            v.key("hospital"), "--json"], check=hospital_reads),
        Cmd("Alice's access log: who was handed her records, and why", lambda v: admin(
            v, v.authority(), "access-log", v["alice"], "--linearizable"), check=keep_log),
        Cmd("Alice's app lists the same", lambda v: citizen(v, "access-log"), check=app_log),
        Cmd("Alice opens VAX-1 on her phone", lambda v: citizen(v, "record", "VAX-1"),
            check=own),
        Cmd("her app fetches the offline receipt of her grant", lambda v: citizen(
            v, "receipt", v["grant_tx"], "--out", str(v.file("alice-grant-receipt.bin"))),
            retry_s=15.0, check=lambda v, o: f"{o['receipt_bytes']} bytes, {o['verdict']}"),
    ]))

    def stock(v: V, o: Any) -> str:
        rows = {(r["custodian"], r["product"]): r for r in o["stock"]}
        site, carrier = rows[(v["riverside_id"], "covax")], rows[(v["coldline_id"], "covax")]
        expect(site["available"] == 99 and carrier["unusable"] == 100, f"stock: {o['stock']}")
        return (f"Riverside Clinic: {site['available']} covax doses available; ColdLine: "
                f"{carrier['unusable']} unusable (quarantined)")

    def recipients(v: V, o: Any) -> str:
        expect([d["subject"] for d in o["doses"]] == [v["alice"]], f"LOT-A doses: {o}")
        return f"{o['count']} recipient(s), Alice among them, at {o['doses'][0]['site_name']}"

    def expiring(v: V, o: Any) -> str:
        ids = [lot["lot_id"] for lot in o["lots"]]
        expect(ids == ["LOT-A"], f"expiring: {ids}")
        return "LOT-A (in 30 days; LOT-B is quarantined, not counted)"

    def keep_height(v: V, o: Any) -> None:
        v["now_height"] = o["height"]

    def events(v: V, o: Any) -> str:
        kinds = [e["type"] for e in o]
        colours = [e["colour"] for e in o if e["type"] == "code"]
        expect(kinds.count("quarantine") == 1, f"watch: {kinds}")
        expect(colours == ["yellow", "green", "red", "green"], f"watch: code changes {colours}")
        return f"{len(o)} events: a quarantine, then Alice's code {' -> '.join(colours)}"

    out.append(Chapter("The city's views: stock, a recall's recipients, expiring lots, the "
                       "event stream", [
        Cmd("the health authority's stock view", lambda v: admin(v, v.authority(), "stock"),
            check=stock),
        Cmd("if LOT-A were recalled: who received doses of it", lambda v: admin(
            v, v.authority(), "doses", "--lot", "LOT-A"), check=recipients),
        Cmd("lots with doses left expiring within 60 days", lambda v: admin(
            v, v.authority(), "expiring", "--days", "60"), check=expiring),
        Cmd("node 1's position", lambda v: admin(v, 1, "status"), keep=keep_height),
        Cmd("quarantines and code changes since block 1 (resumable with --from-height)",
            lambda v: admin(v, 1, "watch", "--from-height", "1", "--until-height",
                            str(v["now_height"]), "--types", "quarantine,code"),
            check=events, lines=True),
    ]))

    out += before_checks

    def same_chain(v: V, h: Any) -> str:
        v["height"] = h.converge()
        return f"every node at height {v['height']}"

    c = Chapter("Every node must hold the identical chain",
                [Op("wait until every node applied the same height", same_chain)])
    for k in (1, 2, 3):
        c.steps += _node_checks(k)
    out.append(c)

    out.append(Chapter("Alice's vaccination receipt, written by one node, to check offline", [
        Cmd("node 3 writes the receipt of her vaccination", lambda v: admin(
            v, 3, "receipt", v["vax_tx"], "--out", str(v.file("alice-vaccination-receipt.bin"))),
            retry_s=15.0, check=lambda v, o: f"{o['bytes']} bytes, certified by "
                                             f"{', '.join(o['certified_by'])}"),
    ]))
    return out


def after_stop() -> Chapter:
    """Run once every daemon is stopped: nothing but the file and the genesis."""

    def check(v: V, o: Any) -> str:
        expect(o["ok"] is True and o["verdict"] == "accepted", f"the receipt says {o}")
        v["receipt"] = (f"transaction {o['tx_hash'][:16]}, {o['type']}, verdict {o['verdict']}, "
                        f"in block {o['height']} of chain {o['chain_id']}, certified by "
                        f"{', '.join(o['certified_by'])} ({len(o['certified_by'])} of "
                        f"{o['voters']} voters)")
        return str(v["receipt"])

    def grant_ok(v: V, o: Any) -> str:
        expect(o["ok"] is True and o["type"] == "consent.grant", f"the grant's receipt says {o}")
        return f"{o['type']}, verdict {o['verdict']}, in block {o['height']}"

    return Chapter("With every daemon stopped, the receipts against genesis.toml only", [
        Cmd("Alice (or anyone) verifies the receipt", lambda v: [
            "verify-receipt", str(v.file("alice-vaccination-receipt.bin")), "--genesis",
            str(v.genesis), "--json"], check=check),
        Cmd("and the receipt of her grant her app fetched from the gateway", lambda v: [
            "verify-receipt", str(v.file("alice-grant-receipt.bin")), "--genesis",
            str(v.genesis), "--json"], check=grant_ok),
    ])
