"""The demo's data-sharing chapter (issue 18): a data set for authorities only, asked for by
the lab's research unit, approved, fetched, opened and accounted for — every step an
`hzp2p admin dataset` command (hzp2p.tools.demo_story's `Cmd`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hzp2p.tools.demo_story import LAB, Chapter, Cmd, V, admin, expect

DATASET = "cases-2026-w49"
REQUEST = "rq-research-1"
PURPOSE = "vaccine effectiveness study"
CASES = "district,week,cases\nnorth,2026-W49,12\nsouth,2026-W49,7\nriverside,2026-W49,3\n"


def _source(v: V) -> Path:
    return v.file("cdc", "weekly-cases.csv")


def _copy(v: V) -> Path:
    return v.file("research-weekly-cases.csv")  # where node 3's operator runs the command


def research_chapter() -> Chapter:
    def published(v: V, o: Any) -> str:
        expect(o["status"] == "committed" and LAB not in o["holders"],
               f"the publication: {o}")
        return f"sealed to members {o['holders']} only; node {LAB} holds ciphertext at most"

    def opened(v: V, o: Any) -> str:
        got = _copy(v).read_bytes()
        expect(hashlib.sha256(got).digest() == hashlib.sha256(CASES.encode()).digest(),
               "the research unit's copy differs from what was published")
        return f"{len(got)} bytes, the same as published (fetch logged as {o['fetch_tx'][:12]})"

    def logged(v: V, o: Any) -> str:
        mine = [e for e in o["entries"] if e["who"] == LAB]
        kinds = sorted({e["kind"] for e in mine})
        expect(kinds == ["fetch", "grant", "request"]
               and all(e["purpose"] == PURPOSE for e in mine), f"the access log: {o['entries']}")
        return f"member {LAB}: asked, was granted the key, fetched once — for {PURPOSE!r}"

    return Chapter(
        "Data sharing: the disease-control centre's weekly cases, for authorities only; the "
        "lab's research unit asks for them under contract", [
            Cmd("authority 1 publishes the weekly case counts to the authorities (encrypted)",
                lambda v: admin(v, 1, "dataset", "publish", DATASET, "--file", str(_source(v)),
                                "--title", "confirmed cases by district, week 49",
                                "--scope", "roles:authority", "--wait", "20"),
                files=lambda v: {_source(v): CASES}, check=published),
            Cmd(f"the lab's research unit (node {LAB}) asks for it: purpose and period",
                lambda v: admin(v, LAB, "dataset", "request", DATASET, "--purpose", PURPOSE,
                                "--days", "30", "--request-id", REQUEST)),
            Cmd("the owner approves: the key is sealed to the lab for 30 days",
                lambda v: admin(v, 1, "dataset", "approve", REQUEST), retry_s=10.0),
            Cmd("the research unit fetches it from a peer and opens it",
                lambda v: admin(v, LAB, "dataset", "fetch", DATASET, "--out", str(_copy(v))),
                retry_s=10.0, check=opened),
            Cmd("the owner lists who was given the key and who fetched, and why",
                lambda v: admin(v, 1, "dataset", "access-log", DATASET), check=logged),
        ])
