"""Known answers: the faster decode / execute / digest paths change no byte on the chain.

A fixed, seeded chain (every benchmark transaction type, nested payloads, and
rejections: duplicates in a block, a replay, a forged signature, an unknown
field, an unknown type) is built and its fingerprint — every block's wire
bytes, every state digest after a block, every verdict — is compared with the
values the code produced before the per-transaction CPU work (issue 9; commit
6ba13ce: `python tests/ledger/test_known_answers.py` with that code on the
path printed them). Same values: old chains still verify, and every node,
whichever version it runs, computes the same blocks, verdicts and digests.

Re-recorded once, on purpose, by issue 13 (stateless payload checks): verdict
reasons now list every problem of a payload (and never echo a value), and new
genesis files name cold-chain rules version 2. Chains made by earlier code must be re-created (no deployment existed).
Re-recorded by issue 17 (health codes, complete): new genesis files name health-code
rules version 2 (the genesis hash, so every block, changes), the benchmark payloads
now include `venue.register`, and lab.result / healthcode.set under version 2 store
each change's causing transaction.
Re-recorded by issue 18 (data sets delivered encrypted): new genesis files name data rules
version 2 (the genesis hash changes, so every block does); with `data` removed from
DEFAULT_RULES the previous values come back unchanged.
Re-recorded by issue 15 (reading intervals): new genesis files name cold-chain rules
version 3 (`lot.monitor`), which changes the genesis hash and so every block; with
version 2 named the previous values are reproduced exactly. The values below name both
(data 2, cold chain 3).
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from hzp2p.contracts import digest
from hzp2p.contracts.engine import load_contracts, recompute_digest, state_digest
from hzp2p.contracts.registry import PAYLOAD_GENERATORS, PAYLOAD_ROLES
from hzp2p.contracts.verify import verify_chain
from hzp2p.ledger.block import decode_block
from hzp2p.tools.testkit import LocalChain

EXPECTED_FINGERPRINT = "ae3a6ff62070addef88c3bdf2b3487a83e10c8b20919a864f0f602ee8b379e0c"
EXPECTED_FINAL_DIGEST = "00333beabb1ba497f251a1c7fdab6b87b9a78ebdb7c338156a0812dcc7094e2b"


def build_chain() -> tuple[LocalChain, str]:
    load_contracts()
    chain = LocalChain(n_voters=3, n_learners=6, seed=2026)
    fp = hashlib.sha256()
    first = None
    for tx_type in sorted(PAYLOAD_GENERATORS):
        roles = PAYLOAD_ROLES.get(tx_type, ())
        sender = next(
            i.inst_id
            for i in chain.genesis.institutions
            if not roles or any(r in i.roles for r in roles)
        )
        gen = PAYLOAD_GENERATORS[tx_type]
        txs = [chain.tx(sender, tx_type, gen(i), nonce=1000 + i) for i in range(7)]
        first = first or txs[0]
        chain.run(txs)
    assert first is not None
    authority = 1
    nested = chain.tx(
        authority,
        "data.publish",
        {
            "dataset_id": "kat-nested",
            "metadata": {"z": {"deep": [1, -5, 2**40, b"\x00\xff", None, True, "é"]}, "a": []},
            "content_hash": bytes(range(32)),
            "access": ["lab", "authority"],
        },
    )
    report = chain.tx(
        2,
        "epi.report",
        {"report_id": "kat-1", "region": "r", "metric": "m", "value": 2**53, "period": "p"},
    )
    extra = chain.tx(
        2,
        "epi.report",
        {"report_id": "kat-2", "region": "r", "metric": "m", "value": 1, "period": "p", "x": 1},
    )
    unknown = chain.tx(2, "no.such.type", {"a": 1})
    forged = dataclasses.replace(report, signature=bytes(64))
    chain.run([nested, forged, report, report, first, extra, unknown])
    for raw, res in zip(chain.blocks, chain.results, strict=True):
        fp.update(hashlib.sha256(raw).digest())
        fp.update(res.state_digest_after)
        for v in res.verdicts:
            fp.update(v.tx_hash + v.tx_type.encode() + bytes([v.applied]) + v.reason.encode())
    return chain, fp.hexdigest()


@pytest.mark.parametrize("numpy_sums", [True, False], ids=["numpy", "pure-python"])
def test_chain_bytes_digests_and_verdicts_are_unchanged(
    numpy_sums: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if numpy_sums and digest._numpy() is None:
        pytest.skip("numpy is not installed (the optional digest accelerator)")
    if not numpy_sums:
        monkeypatch.setattr(digest, "_NP", None)
    chain, fingerprint = build_chain()
    assert [v.reason for v in chain.results[-1].verdicts] == [
        "",
        "tx.signature: does not verify against signer",
        "",
        "duplicate: already earlier in this block",
        "duplicate: included at height 1",
        "epi.report: unknown payload field(s): x",
        "unknown transaction type 'no.such.type'",
    ]
    assert state_digest(chain.state).hex() == EXPECTED_FINAL_DIGEST
    assert recompute_digest(chain.state).hex() == EXPECTED_FINAL_DIGEST
    assert fingerprint == EXPECTED_FINGERPRINT


def test_the_known_chain_verifies_and_reencodes_identically() -> None:
    chain, _ = build_chain()
    report = verify_chain(chain.genesis, chain.blocks)
    assert report.ok, report.reason
    for raw in chain.blocks:
        block = decode_block(raw)
        assert block.encode() == raw
        assert [tx.encode() for tx in block.txs] == [
            tx.encode() for tx in decode_block(bytes(raw)).txs
        ]


if __name__ == "__main__":  # print the values for the constants above
    c, f = build_chain()
    print(f"EXPECTED_FINGERPRINT = {f!r}")
    print(f"EXPECTED_FINAL_DIGEST = {state_digest(c.state).hex()!r}")
