"""`hzp2p demo`: three real daemons in a temporary directory tell issue 6's public-health story.

It owns the story and its narration only; processes are hzp2p.tools.localcluster,
transactions are built with hzp2p.client (each institution signs with its own
key; the daemons' `submit_raw` admin method carries them to the leader), and
state is read back over the admin socket (`state_scan`) so the client library
can open the records it holds keys for. Half-way through, the leader is killed
(SIGKILL) and a new one takes over; at the end every node must hold the
identical chain and pass `verify`. It ends with Alice's vaccination receipt
(issue 19) written to a file by one node and, once every daemon is stopped,
verified offline against the genesis file alone. Everything it started is
stopped, and the directory removed, whatever happens.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from hzp2p.admin.client import AdminClientError
from hzp2p.admin.protocol import AdminError
from hzp2p.client import (
    Client,
    coldchain_readings_payload,
    health_code,
    lot_register_payload,
    lot_transfer_payload,
    sensor_register_payload,
)
from hzp2p.contracts import domain_queries as dq
from hzp2p.ledger.genesis import load_genesis
from hzp2p.ledger.receipt import ReceiptError, verify_receipt
from hzp2p.ledger.tx import Transaction
from hzp2p.tools.localcluster import ClusterError, LocalCluster

DAY_MS = 86_400_000
WAIT_S = 15.0


class DemoFailed(Exception):
    pass


class RemoteState:
    """A read-only StateReader over a node's admin socket (state_scan)."""

    def __init__(self, cluster: LocalCluster, node: int) -> None:
        self.c = cluster
        self.node = node

    def _scan(self, prefix: bytes, limit: int | None) -> list[tuple[bytes, bytes]]:
        params: dict[str, Any] = {"prefix": prefix.hex() if prefix else "-"}
        if limit is not None:
            params["limit"] = limit
        items = self.c.call(self.node, "state_scan", params)["items"]
        return [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in items]

    def get(self, key: bytes) -> bytes | None:
        rows = self._scan(key, 1)
        return rows[0][1] if rows and rows[0][0] == key else None

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._scan(prefix, limit))


class Story:
    def __init__(self, cluster: LocalCluster, *, quiet: bool, http: Any = None) -> None:
        self.c = cluster
        self.quiet = quiet
        self.http = http  # hzp2p.tools.demo_http.CitizenOverHttp, when the gateway extra is installed
        self.t0 = time.monotonic()
        self.txs = 0
        self.refused = 0
        genesis = load_genesis(cluster.root / "genesis.toml")
        self.chain_id = genesis.chain_id
        self.summary: dict[str, Any] = {}
        self.vax: dict[str, Any] = {}
        self.receipt_path: Path | None = None

    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:5.1f}s] {text}" if text else "", flush=True)

    def live(self) -> list[int]:
        return [k for k in self.c.ids if self.c.running(k)]

    def send(self, tx: Transaction, what: str, *, expect: bool = True) -> dict[str, Any]:
        """Submit a signed transaction through a live node, retrying through leader changes."""
        deadline = time.monotonic() + 3 * WAIT_S
        while True:
            for k in self.live():
                try:
                    r: dict[str, Any] = self.c.call(
                        k, "submit_raw", {"tx": tx.encode().hex(), "wait_s": WAIT_S},
                        timeout_s=WAIT_S + 5)
                except (AdminClientError, AdminError, OSError):
                    continue
                if r["status"] != "pending":
                    return self._report(r, what, expect)
            if time.monotonic() > deadline:
                raise DemoFailed(f"{what}: no receipt within {3 * WAIT_S:g}s")
            time.sleep(0.2)

    def submit_as_node(self, k: int, tx_type: str, payload: dict[str, Any], what: str) -> Any:
        r = self.c.submit(k, tx_type, payload, wait_s=WAIT_S)
        return self._report(r, what, True)

    def _report(self, r: dict[str, Any], what: str, expect: bool) -> dict[str, Any]:
        self.txs += 1
        ok = r["status"] == "committed"
        if ok:
            self.say(f"  ok   {what}  (block {r['height']}, tx {r['tx_hash'][:12]})")
        else:
            self.refused += 1
            self.say(f"  NO   {what}: {r['reason']}")
        if ok != expect:
            raise DemoFailed(f"{what}: expected {'commit' if expect else 'refusal'}, got {r}")
        return r

    def state(self) -> RemoteState:
        return RemoteState(self.c, self.live()[0])

    # ---------------------------------------------------------------- the story
    def run(self) -> None:
        c = self.c
        self.say(f"starting 3 daemons in {c.root} (nodes 1, 2: authorities; node 3: a lab)")
        c.start_all()
        leader = c.wait_up(30)
        self.say(f"node {leader} was elected leader")
        now = int(time.time() * 1000)

        self.say()
        self.say("1. The founding authorities admit a vaccine maker, a carrier, a clinic and a hospital")
        insts: dict[str, Client] = {}
        for pid, (name, role) in enumerate(
            [("VaxCo", "manufacturer"), ("ColdLine", "carrier"),
             ("Riverside Clinic", "vaccination_site"), ("City Hospital", "hospital")],
            start=1,
        ):
            key = SigningKey.generate()
            r = c.call(1, "add_learner", {
                "name": name, "roles": [role], "signing_key": bytes(key.verify_key).hex(),
                "node_key": bytes(SigningKey.generate().verify_key).hex(),
                "address": "127.0.0.1:9", "wait_s": WAIT_S}, timeout_s=WAIT_S + 5)
            self._report(r, f"authority 1 proposes to admit {name} ({role})", True)
            self.submit_as_node(2, "member.vote", {"proposal_id": pid, "approve": True},
                                f"authority 2 votes yes on proposal {pid}")
            # node 2 applied the vote; node 1 may not have yet: read through the leader
            members = c.call(1, "members", {"linearizable": True})["members"]
            inst_id = next(m["inst_id"] for m in members
                           if m["signing_key"] == bytes(key.verify_key).hex())
            insts[role] = Client(key, self.chain_id, inst_id)
            self.say(f"       {name} is member {inst_id}")
        maker, carrier = insts["manufacturer"], insts["carrier"]
        site, hospital = insts["vaccination_site"], insts["hospital"]

        self.say()
        self.say("2. Two vaccine lots are registered and handed to the carrier")
        for lot in ("LOT-A", "LOT-B"):
            self.send(maker.tx("lot.register", lot_register_payload(
                lot, "covax", 100, now + 30 * DAY_MS, 200, 800), now),
                f"VaxCo registers {lot} (2.00..8.00 C)")
            self.send(maker.tx("lot.transfer", lot_transfer_payload(lot, carrier.inst_id or 0),
                               now), f"VaxCo hands {lot} to ColdLine")
        sensor = SigningKey.generate()
        self.send(carrier.tx("sensor.register", sensor_register_payload(
            "SENSOR-1", bytes(sensor.verify_key)), now), "ColdLine registers SENSOR-1")
        # Readings taken while ColdLine holds the lots (after the hand-over committed):
        # cold-chain rules v2 refuse readings dated outside the uploader's custody.
        t = int(time.time() * 1000)
        self.send(carrier.tx("coldchain.readings", coldchain_readings_payload(
            sensor, "SENSOR-1", "LOT-A", [(t, 450), (t + 500, 460)]), t),
            "SENSOR-1 reports 4.5 C, 4.6 C for LOT-A")
        self.send(carrier.tx("coldchain.readings", coldchain_readings_payload(
            sensor, "SENSOR-1", "LOT-B", [(t, 450), (t + 500, 1250)]), t),
            "SENSOR-1 reports 12.5 C for LOT-B (an excursion)")
        hist = c.call(self.live()[0], "lot_history", {"lot": "LOT-B"})
        kinds = ", ".join(str(e.get("kind")) for e in hist["events"])
        self.say(f"       LOT-B is now {(hist['record'] or {}).get('status', '?')!r} "
                 f"(history: {kinds})")
        if (hist["record"] or {}).get("status") != "quarantined":
            raise DemoFailed("LOT-B was not quarantined")
        self.send(carrier.tx("lot.transfer", lot_transfer_payload("LOT-A", site.inst_id or 0),
                             now), "ColdLine delivers LOT-A to Riverside Clinic")
        self.send(carrier.tx("lot.transfer", lot_transfer_payload("LOT-B", site.inst_id or 0),
                             now), "ColdLine tries to deliver LOT-B to Riverside", expect=False)

        self.say()
        old = c.wait_leader(20)
        self.say(f"!! killing the leader, node {old}, with SIGKILL")
        c.kill(old)
        t_kill = time.monotonic()
        new = c.wait_leader(30, among=[k for k in c.ids if k != old])
        self.say(f"!! node {new} took over as leader after {time.monotonic() - t_kill:.1f}s")
        self.summary["leader_killed"], self.summary["new_leader"] = old, new

        self.say()
        self.say("3. Vaccinations: the good lot is accepted, the quarantined one refused")
        alice = Client(SigningKey.generate(), self.chain_id)
        t = int(time.time() * 1000)
        self.vax = self.send(site.vaccination_record(
            t, record_id="VAX-1", subject_verify_key=alice.verify_key, lot_id="LOT-A",
            dose=1, administered_ms=t, fields={"name": "Alice", "born": "1990-01-01"}),
            "Riverside vaccinates Alice with LOT-A")
        self.send(site.vaccination_record(
            t, record_id="VAX-2", subject_verify_key=alice.verify_key, lot_id="LOT-B",
            dose=2, administered_ms=t, fields={"name": "Alice"}),
            "Riverside tries to vaccinate with LOT-B", expect=False)

        self.say()
        self.say(f"4. Restarting node {old}; it catches up from its disk and the leader")
        c.start(old)
        h = c.wait_converged(30)
        self.say(f"       node {old} is back and holds the same chain (height {h})")
        if self.http is not None:
            self.say()
            self.say("   From here Alice uses her app over HTTP: a gateway starts beside a node")
            self.http.start(self, alice)

        self.say()
        self.say("5. A positive lab result turns Alice's health code red")
        self.say(f"       health code before: {health_code(self.state(), alice.pseudonym)}")
        self.submit_as_node(3, "lab.result", {
            "subject": alice.pseudonym, "test_id": "T-1", "result": "positive",
            "sample_ms": int(time.time() * 1000)}, "the lab (node 3) reports a positive test")
        code = health_code(self.state(), alice.pseudonym)
        if self.http is not None:
            code = self.http.health_code(self)
        self.say(f"       health code after:  {code}")
        if code != "red":
            raise DemoFailed(f"health code is {code!r}, expected 'red'")

        self.say()
        self.say("6. Alice grants City Hospital access; the hospital decrypts her record")
        t = int(time.time() * 1000)
        grant = alice.grant(t, grant_id="G-1", grantee=hospital.inst_id or 0,
                            record_types=["vaccination"], purpose="treatment", expiry_ms=t + DAY_MS)
        if self.http is not None:
            self._report(self.http.post_tx(grant), "Alice posts her grant to City Hospital over HTTP", True)
        else:
            self.send(grant, "Alice grants City Hospital (treatment)")
        self.send(site.share(self.state(), t, record_id="VAX-1", grantee=hospital.inst_id or 0,
                             grant_id="G-1", purpose="treatment"),
                  "Riverside shares the record key under grant G-1")
        fields = (hospital.read_record(self.state(), "VAX-1") if self.http is None
                  else self.http.institution_reads(self, hospital.key, "VAX-1"))
        self.say(f"       City Hospital decrypts VAX-1: {fields}")
        log = c.call(self.live()[0], "access_log", {"subject": alice.pseudonym,
                                                    "linearizable": True})["entries"]
        if log != dq.jsonable(alice.my_access_log(self.state())):
            raise DemoFailed("the access log over the admin socket differs from the client's")
        recs = c.call(self.live()[-1], "subject_records", {"subject": alice.pseudonym})
        self.say(f"       Alice has {len(recs['records'])} record(s) on chain, all encrypted")
        if self.http is not None:
            if self.http.access_log(self) != [
                    (e["kind"], e["grantee"], e["record_id"]) for e in log]:
                raise DemoFailed("the access log over HTTP differs from the admin socket's")
            self.http.own_record(self, "VAX-1")
            self.http.venue_check(self)
            self.http.stop()
        self.say("       Alice lists who read her records:")
        for e in log:
            self.say(f"         member {e.get('grantee')} via {e.get('kind')} for "
                     f"{e.get('purpose', e.get('reason', ''))!r} (record {e.get('record_id')})")

        self.say()
        self.say("7. Every node must hold the identical chain")
        height = c.wait_converged(30)
        chains = {k: c.chain(k, height) for k in c.ids}
        same = all(ch == chains[c.ids[0]] for ch in chains.values())
        verified = {k: c.call(k, "verify", timeout_s=60)["ok"] for k in c.ids}
        for k in c.ids:
            self.say(f"       node {k}: height {height}, head {chains[k][-1][:16]}, "
                     f"verify {'ok' if verified[k] else 'FAILED'}")
        if not same or not all(verified.values()):
            raise DemoFailed("the nodes' chains differ or do not verify")
        self.summary.update(height=height, head=chains[c.ids[0]][-1], txs=self.txs,
                            refused=self.refused, nodes=len(c.ids),
                            seconds=round(time.monotonic() - self.t0, 1))

        self.say()
        self.say("8. Alice's vaccination receipt, written by one node, to check offline")
        k = self.live()[-1]
        data = self.receipt(k, self.vax["tx_hash"])
        self.receipt_path = c.root.parent / "alice-vaccination-receipt.bin"
        self.receipt_path.write_bytes(data)
        self.say(f"       node {k} wrote {self.receipt_path.name} ({len(data)} bytes)")

    def receipt(self, k: int, tx_hash: str) -> bytes:
        """The node's receipt for `tx_hash`, once its block is certified."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                return bytes(self.c.call(k, "receipt", {"tx_hash": tx_hash})["receipt"])
            except AdminError as exc:
                if exc.code != "unavailable" or time.monotonic() > deadline:
                    raise DemoFailed(f"Alice's receipt: {exc.message}") from None
            time.sleep(0.2)

    def check_receipt_offline(self, genesis_path: Path) -> None:
        """With every daemon stopped: the receipt against the genesis file, nothing else."""
        assert self.receipt_path is not None
        try:
            proven = verify_receipt(self.receipt_path.read_bytes(), load_genesis(genesis_path))
        except ReceiptError as exc:
            raise DemoFailed(f"Alice's receipt does not verify offline: {exc}") from None
        self.say("       with every daemon stopped, against genesis.toml only:")
        self.say(f"       {proven.sentence()}")
        self.summary["receipt"] = proven.sentence()


def _citizen_over_http(cluster: LocalCluster) -> Any:
    """The gateway part of the story, if the `gateway` extra is installed (else None: the
    citizen's steps go through the admin socket as before)."""
    try:
        from hzp2p.tools.demo_http import CitizenOverHttp
    except ImportError:
        return None
    return CitizenOverHttp(cluster)


def run_demo(*, json_output: bool = False, keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="hzp2p-demo-"))
    story: Story | None = None
    code = 0
    try:
        with LocalCluster(root / "c", 3) as cluster:
            http = _citizen_over_http(cluster)
            story = Story(cluster, quiet=json_output, http=http)
            if http is not None:
                http.hold = keep  # the web pages stay up after the story (see below)
            try:
                story.run()
                if keep and http is not None and http.gw is not None and http.alice is not None:
                    url = http.gw.base_url  # Alice's key rides in the fragment, never sent
                    print(f"\nweb pages, served until you press Enter or Ctrl-C:\n  dashboard     "
                          f"{url}/\n  Alice's page  {url}/citizen#key={bytes(http.alice.key).hex()}"
                          f"\n  venue check   {url}/venue", file=sys.stderr if json_output else sys.stdout,
                          flush=True)
                    try:
                        sys.stdin.readline()
                    except KeyboardInterrupt:
                        print()  # past the ^C
            finally:
                if http is not None:
                    http.release()
                story.say("stopping every daemon")
        if story.receipt_path is not None:
            story.check_receipt_offline(root / "c" / "genesis.toml")
    except (DemoFailed, ClusterError, AdminClientError, AdminError) as exc:
        print(f"hzp2p demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if story is not None and code == 0:
        s = story.summary
        if json_output:
            print(json.dumps({"ok": True, **s}))
        else:
            print(f"\ndemo ok: {s['nodes']} nodes, {s['txs']} transactions "
                  f"({s['refused']} refused as the rules require), chain height {s['height']}, "
                  f"leader {s['leader_killed']} killed and replaced by {s['new_leader']}, "
                  f"identical chains, {s['seconds']}s; Alice's receipt verified offline")
    return code
