"""Travel history stays private: a day of check-ins by 1,000 citizens and one exposure.

Blocks are built and executed by the real engine (LocalChain). Afterwards neither the
blocks' bytes nor the state (every key and value a node's database would hold) contain
any venue/time pair of a check-in in the clear: a venue id appears only where it was
registered and in the one published exposure, and no check-in time appears at all.
The citizens who were there find it on their own devices and declare it; nobody else
leaves a trace.
"""

from __future__ import annotations

import hashlib
import random
import struct

import nacl.signing

from hzp2p.client import (
    Client,
    exposure_publish_payload,
    health_code,
    make_venue_qr,
    parse_venue_qr,
    venue_register_payload,
)
from hzp2p.contracts.engine import load_contracts
from hzp2p.tools.testkit import DAY_MS, LocalChain

N_CITIZENS = 1000
N_VENUES = 40
HOUR = 3_600_000
DAY0 = 20_000 * DAY_MS  # a day in 2024, UTC
AUTHORITY, OPERATOR = 1, 8


def _key(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.blake2b(label.encode(), digest_size=32).digest())


def test_a_day_of_checkins_leaves_no_venue_time_pair_in_the_clear() -> None:
    load_contracts()
    rng = random.Random(17)
    c = LocalChain(n_voters=3, n_learners=6, seed=5)
    chain_id = c.genesis.chain_id
    c.now_ms = DAY0 + 6 * HOUR
    venue_key = _key("venues")
    venues = [f"venue-{rng.getrandbits(48):012x}" for _ in range(N_VENUES)]
    reg = [
        c.tx(OPERATOR, "venue.register", venue_register_payload(v, bytes(venue_key.verify_key)),
             valid_from_ms=DAY0)
        for v in venues
    ]
    assert all(v.applied for v in c.run(reg).verdicts)
    day = DAY0 // DAY_MS
    qrs = {v: parse_venue_qr(make_venue_qr(venue_key, chain_id, v, day), chain_id) for v in venues}

    # a day of visits, each citizen's recorded at the end of the day in one transaction
    citizens = [Client(_key(f"citizen-{i}"), chain_id, None, nonce_start=0) for i in range(N_CITIZENS)]
    visits: dict[int, list[tuple[str, int]]] = {}
    for i in range(N_CITIZENS):
        visits[i] = [
            (rng.choice(venues), DAY0 + 7 * HOUR + rng.randrange(14 * HOUR))
            for _ in range(rng.randint(1, 4))
        ]
    c.now_ms = DAY0 + 23 * HOUR
    txs = [
        citizens[i].checkin(c.now_ms, [(qrs[v], t) for v, t in visits[i]]) for i in range(N_CITIZENS)
    ]
    for k in range(0, N_CITIZENS, 250):
        assert all(v.applied for v in c.run(txs[k : k + 250]).verdicts)

    # one confirmed case: the authority publishes one venue and window
    hot = venues[3]
    start, end = DAY0 + 12 * HOUR, DAY0 + 14 * HOUR
    c.now_ms = DAY0 + DAY_MS + 8 * HOUR
    pub = exposure_publish_payload("E-1", hot, start, end, "high", case_ref="case-0001")
    assert c.run([c.tx(AUTHORITY, "exposure.publish", pub, valid_from_ms=c.now_ms - HOUR)]).verdicts[0].applied

    # every app matches locally; only matches declare
    there = {i for i in range(N_CITIZENS) if any(v == hot and start <= t <= end for v, t in visits[i])}
    assert there, "the seeded day has someone at the exposure"
    sample = sorted(there)[:20] + [i for i in range(60) if i not in there][:20]
    for i in sample:
        matched = [e["exposure_id"] for e in citizens[i].match_exposures(c.state, c.now_ms)]
        assert matched == (["E-1"] if i in there else [])
    decl = [citizens[i].declare_exposure(c.now_ms, "E-1") for i in sorted(there)]
    assert all(v.applied for v in c.run(decl).verdicts)
    for i in sample:
        assert health_code(c.state, citizens[i].pseudonym) == ("yellow" if i in there else "green")

    # the chain and the state, byte for byte
    blocks = b"\x00".join(c.blocks)
    state = b"\x00".join(k + b"\x01" + v for k, v in sorted(c.state.data.items()))
    for v in venues:
        # registered once (tx + venue record: key and value); the exposure's venue also
        # in its publish tx and its record
        extra = 1 if v == hot else 0
        assert blocks.count(v.encode()) == 1 + extra, v
        assert state.count(v.encode()) == 2 + extra, v
    times = {t for vs in visits.values() for _, t in vs}
    for t in times - {start, end}:
        packed = struct.pack(">Q", t)
        assert packed not in blocks and packed not in state, t
