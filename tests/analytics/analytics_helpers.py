"""A small public-health chain built with real signed transactions, and its state in SQLite.

`build_world()` runs every kind of transaction the export reads through the
real engine (tests/contracts/domain_helpers.World: one transaction per block):
lots and their custody, sensor readings that quarantine a lot and its release,
doses at two sites in groups above and below k = 5, lab results and authority
settings of health codes, epidemic reports. `to_sqlite` writes that state into
a node database (hzp2p.storage.SqliteStorage) as a daemon would hold it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contracts"))

from domain_helpers import DAY, World, key

from hzp2p.client import (
    Client,
    coldchain_readings_payload,
    healthcode_set_payload,
    lot_register_payload,
    lot_release_payload,
    lot_transfer_payload,
    sensor_register_payload,
)
from hzp2p.contracts.api import decode_value
from hzp2p.contracts.engine import read_head
from hzp2p.raft.types import ConfState
from hzp2p.storage import SqliteStorage


@dataclass
class Built:
    w: World
    citizens: list[Client] = field(default_factory=list)
    epi_total: int = 0


def build_world() -> Built:
    w = World()
    b = Built(w)
    maker = w.member("maker", 1, "manufacturer")
    carrier = w.member("carrier", 2, "carrier")
    site_a = w.member("site-a", 3, "vaccination_site")
    site_b = w.member("site-b", 4, "vaccination_site")
    lab = w.member("lab", 5, "lab")
    health = w.member("commission", 6, "authority")
    hospital = w.member("hospital", 7, "hospital")
    expiry = w.now + 60 * DAY
    for lot in ("L1", "L2"):
        w.apply(maker.tx("lot.register", lot_register_payload(lot, "covax", 100, expiry, 200, 800), w.now))
        w.apply(maker.tx("lot.transfer", lot_transfer_payload(lot, 2), w.now))
    w.apply(carrier.tx("lot.transfer", lot_transfer_payload("L1", 3), w.now))
    w.apply(carrier.tx("lot.transfer", lot_transfer_payload("L2", 4), w.now))
    sensor = key("sensor-1")
    w.apply(carrier.tx("sensor.register", sensor_register_payload("S1", bytes(sensor.verify_key)), w.now))
    ok = coldchain_readings_payload(sensor, "S1", "L1", [(w.now - 2000, 400), (w.now - 1000, 500)])
    w.apply(carrier.tx("coldchain.readings", ok, w.now))

    b.citizens = [w.citizen(f"citizen-{i}") for i in range(12)]
    # day 0: site A gives 7 first doses (shown), site B 3 (a group under k: suppressed)
    for i, c in enumerate(b.citizens[:10]):
        site, lot = (site_a, "L1") if i < 7 else (site_b, "L2")
        w.apply(site.vaccination_record(
            w.now, record_id=f"vax-{i}-1", subject_verify_key=c.verify_key, lot_id=lot, dose=1,
            administered_ms=w.now, fields={"name": f"Citizen Marker-{i}", "birth_year": 1980 + i}))
    # a breach on L2 quarantines it; the commission releases it
    bad = coldchain_readings_payload(sensor, "S1", "L2", [(w.now - 500, 1200)])
    w.apply(carrier.tx("coldchain.readings", bad, w.now))
    w.apply(health.tx("lot.release", lot_release_payload("L2", "probe fault"), w.now))
    # six positives turn six codes red (shown); the commission sets two yellow (suppressed)
    for i, c in enumerate(b.citizens[:6]):
        w.apply(lab.lab_result(
            w.now, subject=c.pseudonym, test_id=f"T{i}", result="positive", sample_ms=w.now - 1000,
            record_id=f"lab-{i}", subject_verify_key=c.verify_key,
            fields={"name": f"Citizen Marker-{i}", "ct": 21}))
    w.now += DAY
    # day 1: two second doses at site A (suppressed)
    for i, c in enumerate(b.citizens[:2]):
        w.apply(site_a.vaccination_record(
            w.now, record_id=f"vax-{i}-2", subject_verify_key=c.verify_key, lot_id="L1", dose=2,
            administered_ms=w.now, fields={"name": f"Citizen Marker-{i}"}))
    for c in b.citizens[10:12]:
        w.apply(health.tx("healthcode.set", healthcode_set_payload(c.pseudonym, "yellow", "contact"), w.now))
    for i in range(10):
        p = {"report_id": f"2026-W05/d{i % 3}/{i}", "region": f"district-{i % 3}",
             "metric": "confirmed_cases" if i % 2 else "hospitalised", "value": 10 * i + 1,
             "period": f"2026-W0{5 + i % 2}"}
        w.apply(hospital.tx("epi.report", p, w.now))
        b.epi_total += 10 * i + 1
    return b


def to_sqlite(state_items: dict[bytes, bytes], path: Path) -> None:
    """Store a state as a node database holds it (tip = the state's own head)."""
    head = read_head(_Dict(state_items))
    with SqliteStorage(str(path), b"hzp2p-test", b"\0" * 32) as s:
        s.install_state(sorted(state_items.items()), 0, ConfState(frozenset({1}), frozenset()),
                        (head.height, head.hash))


class _Dict:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes, limit: int | None = None) -> Any:
        raise NotImplementedError


def secrets_in_state(state_items: dict[bytes, bytes]) -> tuple[set[str], set[bytes]]:
    """Every pseudonym (32 hex digits) and every byte string of 16+ bytes (ciphertexts, sealed
    keys, commitments) anywhere in the state's keys and values."""
    import re

    pseudonyms: set[str] = set()
    blobs: set[bytes] = set()
    hex32 = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")

    def walk(v: Any) -> None:
        if isinstance(v, bytes):
            if len(v) >= 16:
                blobs.add(v)
        elif isinstance(v, str):
            pseudonyms.update(hex32.findall(v))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    for k, raw in state_items.items():
        pseudonyms.update(hex32.findall(k.decode("ascii", "replace")))
        try:
            walk(decode_value(raw))
        except ValueError:  # not msgpack (the digest vector): the raw bytes themselves
            walk(raw)
    return pseudonyms, blobs
