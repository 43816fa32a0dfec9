"""Receipt benchmark: offline receipts verified per second on one core (`hzp2p verify-receipt`'s check).

A chain is built with the real engine (blocks of `--block-txs` epi.report
transactions), each block certified by its voters and the certificate carried
in the next block, as the daemon does; then one receipt per transaction of the
first `--receipts` transactions is built (hzp2p.ledger.receipt.build_receipt)
and every receipt is verified against the genesis alone
(`verify_receipt`: canonical decoding, the chain of voter-set changes, the
transaction's signature, its Merkle path, its verdict's path, the certificate's
signatures and majority). Two set-ups: 3 voters who all sign, the whole
transaction in the receipt (what `admin receipt` writes on a 3-node cluster);
and 5 voters with one voter-set change below the block (a promotion signed by
3 of the 4 voters before it), 3 of 5 signing the block, hash only. Each
set-up's verification runs `--repeat` times and the fastest counts, as timeit
does (the machine is shared). The rate is per second of CPU time of the one
verifying thread (process time: a shared machine disturbs it far less than
wall time); `receipts_per_s_wall` and `cpu_share` (CPU time / wall time) say
how much of a core the run actually got.

    python benchmarks/receipt_bench.py [--receipts 2000] [--block-txs 100] [--repeat 3] [--json]

JSON keys: receipts_verified_per_s (the 3-voter set-up), and per set-up
`receipts_per_s`, `receipts_per_s_wall`, `cpu_share`, `cpu_us_per_receipt`, `receipt_bytes`,
`signatures_checked`.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from hzp2p.contracts.certify import CertAudit
from hzp2p.contracts.engine import BlockResult, load_contracts
from hzp2p.contracts.registry import PAYLOAD_GENERATORS
from hzp2p.ledger.block import Block
from hzp2p.ledger.certificate import QuorumCertificate, decode_certificate
from hzp2p.ledger.receipt import build_receipt, decode_receipt, verify_receipt
from hzp2p.ledger.tx import clear_verified_cache
from hzp2p.tools.testkit import LocalChain


class _Chain:
    def __init__(self, voters: int, learners: int) -> None:
        self.c = LocalChain(voters, learners, seed=1919)
        self.audit = CertAudit(self.c.genesis)
        self.blocks: dict[int, Block] = {}
        self.results: dict[int, BlockResult] = {}
        self.certs: dict[int, bytes] = {}
        self.n = 0

    def certify(self, h: int, signers: list[int]) -> bytes:
        st = self.audit.statements[h]
        raw = QuorumCertificate.of(st, {i: st.sign(self.c.key(i)) for i in signers}).encode()
        self.certs[h] = raw
        return raw

    def block(self, txs: list[Any], certs: list[bytes]) -> int:
        b = self.c.make_block(txs, certs=certs)
        r = self.c.apply(b)
        assert self.audit.observe(b, r, self.c.state) is None
        self.blocks[b.height], self.results[b.height] = b, r
        return b.height

    def epi(self, k: int) -> list[Any]:
        gen = PAYLOAD_GENERATORS["epi.report"]
        out = []
        for _ in range(k):
            self.n += 1
            out.append(self.c.tx(1, "epi.report", gen(self.n)))
        return out

    def receipts(self, heights: list[int], n: int, whole_tx: bool) -> list[bytes]:
        out: list[bytes] = []
        for h in heights:
            b, r = self.blocks[h], self.results[h]
            v = [(x.tx_hash, x.tx_type, x.applied, x.reason) for x in r.verdicts]
            changes = [(self.certs[ch], s) for ch, s in self.audit.history.changes_below(h)]
            for i in range(len(b.txs)):
                out.append(build_receipt(self.c.genesis, b, v, i, self.certs[h], changes,
                                         whole_tx=whole_tx).encode())
                if len(out) == n:
                    return out
        return out


def three_voters(n: int, block_txs: int) -> tuple[LocalChain, list[bytes]]:
    ch = _Chain(3, 2)
    heights, prev = [], None
    for _ in range(-(-n // block_txs)):
        certs = [ch.certify(prev, [1, 2, 3])] if prev else []
        prev = ch.block(ch.epi(block_txs), certs)
        heights.append(prev)
    ch.block([], [ch.certify(prev, [1, 2, 3])])
    return ch.c, ch.receipts(heights, n, whole_tx=True)


def five_voters_one_change(n: int, block_txs: int) -> tuple[LocalChain, list[bytes]]:
    ch = _Chain(4, 2)  # voters 1-4; authorities 1, 2 promote learner 5
    h1 = ch.block([ch.c.tx(1, "member.propose", {"action": "promote", "inst_id": 5})], [])
    h2 = ch.block([ch.c.tx(2, "member.vote", {"proposal_id": 1, "approve": True})],
                  [ch.certify(h1, [1, 2, 3])])
    assert ch.audit.history.changes_below(h2 + 1), "the promotion did not change the voters"
    prev: int | None = h2
    signers = [1, 2, 3]  # the change (h2) is signed by 3 of the 4 voters before it
    heights = []
    for _ in range(-(-n // block_txs)):
        assert prev is not None
        cert = ch.certify(prev, signers)
        signers = [1, 3, 5]  # 3 of the 5 voters after the change
        prev = ch.block(ch.epi(block_txs), [cert])
        heights.append(prev)
    assert prev is not None
    ch.block([], [ch.certify(prev, signers)])
    return ch.c, ch.receipts(heights, n, whole_tx=False)


def bench(chain: LocalChain, receipts: list[bytes], repeat: int) -> dict[str, Any]:
    g = chain.genesis
    p = verify_receipt(receipts[0], g)
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        clear_verified_cache()
        gc.collect()
        gc.disable()
        w0, c0 = time.perf_counter(), time.process_time()
        for r in receipts:
            verify_receipt(r, g)
        w1, c1 = time.perf_counter(), time.process_time()
        gc.enable()
        best_wall, best_cpu = min(best_wall, w1 - w0), min(best_cpu, c1 - c0)
    n = len(receipts)
    return {
        "receipts": n,
        "receipts_per_s": round(n / best_cpu),
        "receipts_per_s_wall": round(n / best_wall),
        "cpu_share": round(best_cpu / best_wall, 2),
        "cpu_us_per_receipt": round(best_cpu / n * 1e6, 1),
        "receipt_bytes": round(sum(map(len, receipts)) / n),
        "signatures_checked": len(p.signers) + (1 if p.transaction is not None else 0) + sum(
            len(decode_certificate(c).signatures) for c, _ in decode_receipt(receipts[0]).changes
        ),
        "sentence": p.sentence(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--receipts", type=int, default=2000, help="receipts per set-up")
    ap.add_argument("--block-txs", type=int, default=100, help="transactions per block")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per set-up, best counts")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    load_contracts()
    setups = {
        "3_voters_whole_tx": three_voters(args.receipts, args.block_txs),
        "5_voters_1_change_hash_only": five_voters_one_change(args.receipts, args.block_txs),
    }
    res = {name: bench(c, rs, max(1, args.repeat)) for name, (c, rs) in setups.items()}
    out = {
        "receipts_verified_per_s": res["3_voters_whole_tx"]["receipts_per_s"],
        "setups": {k: {kk: vv for kk, vv in v.items() if kk != "sentence"} for k, v in res.items()},
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'set-up':30} {'receipts/s':>10} {'(wall)':>8} {'cpu':>5} {'cpu us':>7} "
          f"{'bytes':>6} {'sigs':>5}")
    for name, r in res.items():
        print(f"{name:30} {r['receipts_per_s']:>10,} {r['receipts_per_s_wall']:>8,} "
              f"{r['cpu_share']:>5} {r['cpu_us_per_receipt']:>7} {r['receipt_bytes']:>6} "
              f"{r['signatures_checked']:>5}")
    for name, r in res.items():
        print(f"{name}: {r['sentence']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
