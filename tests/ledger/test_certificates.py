"""Quorum certificates, version 2 blocks and offline receipts (issue 19), on a real engine chain.

A `CertChain` runs blocks through the engine and the certificate audit, signs
each block's statement with chosen voters' institution keys and carries the
certificates in later blocks. Receipts built from it verify with the genesis
alone; every tampering the issue names fails with its reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from hzp2p.contracts.certify import CertAudit
from hzp2p.contracts.engine import BlockResult, load_contracts
from hzp2p.contracts.registry import PAYLOAD_GENERATORS
from hzp2p.contracts.verify import verify_chain
from hzp2p.ledger.block import BlockError, decode_block
from hzp2p.ledger.certificate import (
    CertError,
    QuorumCertificate,
    Statement,
    decode_certificate,
)
from hzp2p.ledger.codec import pack, unpack
from hzp2p.ledger.receipt import ReceiptError, build_receipt, decode_receipt, verify_receipt
from hzp2p.tools.testkit import LocalChain


class CertChain:
    def __init__(self, n_voters: int = 3, n_learners: int = 2, seed: int = 19) -> None:
        load_contracts()
        self.c = LocalChain(n_voters, n_learners, seed=seed)
        self.audit = CertAudit(self.c.genesis)
        self.statements: dict[int, Statement] = {}
        self.results: dict[int, BlockResult] = {}
        self.carried: dict[int, bytes] = {}  # certified height -> certificate bytes
        self.n = 0

    def cert(self, h: int, signers: list[int]) -> QuorumCertificate:
        st = self.statements[h]
        return QuorumCertificate.of(st, {i: st.sign(self.c.key(i)) for i in signers})

    def block(self, txs: list[Any], certs: tuple[bytes, ...] | list[bytes] = (), *,
              check: bool = True) -> int:
        b = self.c.make_block(txs, certs=certs)
        r = self.c.apply(b)
        why = self.audit.observe(b, r, self.c.state)
        assert why is None or not check, why
        if why is not None:
            return b.height
        self.statements[b.height] = self.audit.statements[b.height]
        self.results[b.height] = r
        for raw in certs:
            self.carried.setdefault(decode_certificate(raw).height, raw)
        return b.height

    def epi(self, k: int = 2, signer: int = 1) -> list[Any]:
        gen = PAYLOAD_GENERATORS["epi.report"]
        out = []
        for _ in range(k):
            self.n += 1
            out.append(self.c.tx(signer, "epi.report", gen(self.n)))
        return out

    def receipt(self, h: int, index: int = 0, *, whole_tx: bool = True,
                cert: bytes | None = None) -> bytes:
        b = decode_block(self.c.blocks[h - 1])
        v = [(x.tx_hash, x.tx_type, x.applied, x.reason) for x in self.results[h].verdicts]
        hist = self.audit.history
        changes = [(self.carried[ch], s) for ch, s in hist.changes_below(h)]
        return build_receipt(self.c.genesis, b, v, index,
                             cert if cert is not None else self.carried[h], changes,
                             whole_tx=whole_tx).encode()


@pytest.fixture(scope="module")
def cc() -> CertChain:
    cc = CertChain()
    h1 = cc.block(cc.epi(3))
    h2 = cc.block(cc.epi(2), [cc.cert(h1, [1, 2, 3]).encode()])
    cc.block(cc.epi(1), [cc.cert(h2, [2, 3]).encode()])
    return cc


def test_receipt_verifies_and_says_what_it_proves(cc: CertChain) -> None:
    p = verify_receipt(cc.receipt(1, 2), cc.c.genesis)
    assert p.applied and p.height == 1 and p.index == 2 and p.tx_type == "epi.report"
    s = p.sentence()
    assert "verdict accepted, in block 1 of chain" in s
    assert s.endswith("(3 of 3 voters)")
    p2 = verify_receipt(cc.receipt(2, 1, whole_tx=False), cc.c.genesis)
    assert p2.transaction is None and p2.signer_ids == (2, 3)
    assert "(2 of 3 voters)" in p2.sentence()


def test_every_byte_of_a_receipt_matters(cc: CertChain) -> None:
    data = cc.receipt(2, 0)
    verify_receipt(data, cc.c.genesis)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(ReceiptError):
            verify_receipt(bytes(bad), cc.c.genesis)
    with pytest.raises(ReceiptError, match="encoding"):
        verify_receipt(data + b"\x00", cc.c.genesis)


def _with(data: bytes, i: int, v: Any) -> bytes:
    f = unpack(data)
    f[i] = v
    return pack(f)


def test_dropped_signer_is_refused(cc: CertChain) -> None:
    data = cc.receipt(2, 0)  # certified by 2 and 3 of 3
    one = cc.cert(2, [3]).encode()
    with pytest.raises(ReceiptError, match="only 1 of 3 voters signed; a majority needs 2"):
        verify_receipt(_with(data, 9, one), cc.c.genesis)


def test_non_voter_signer_is_refused(cc: CertChain) -> None:
    data = cc.receipt(2, 0)
    learner = cc.cert(2, [2, 4]).encode()  # 4 is a genesis learner
    with pytest.raises(ReceiptError, match="signer 4 was not a voter at that height"):
        verify_receipt(_with(data, 9, learner), cc.c.genesis)


def test_certificate_replayed_onto_another_block_is_refused(cc: CertChain) -> None:
    data = cc.receipt(2, 0)
    with pytest.raises(ReceiptError, match="is for height 1, not the block's 2"):
        verify_receipt(_with(data, 9, cc.carried[1]), cc.c.genesis)
    # the same height of another chain with the same keys: a different block
    other = CertChain()
    other.block(other.epi(3, signer=2))
    forged = other.cert(1, [1, 2, 3]).encode()
    with pytest.raises(ReceiptError, match="certifies a different block"):
        verify_receipt(_with(cc.receipt(1, 0), 9, forged), cc.c.genesis)


def test_forged_signature_and_wrong_genesis(cc: CertChain) -> None:
    data = cc.receipt(2, 0)
    cert = decode_certificate(cc.carried[2])
    sigs = tuple((i, s if i != 3 else bytes(64)) for i, s in cert.signatures)
    bad = QuorumCertificate(*[getattr(cert, f) for f in (
        "height", "block_hash", "state_digest", "results_root", "voters_hash",
        "next_voters_hash")], sigs).encode()
    with pytest.raises(ReceiptError, match="does not verify"):
        verify_receipt(_with(data, 9, bad), cc.c.genesis)
    other = LocalChain(3, 2, seed=20).genesis
    with pytest.raises(ReceiptError, match="chain"):
        verify_receipt(data, other)


def test_verdict_is_certified(cc: CertChain) -> None:
    data = cc.receipt(1, 0)
    f = unpack(data)
    f[4] = ["epi.report", False, "made up"]
    with pytest.raises(ReceiptError, match="verdict is not the one the voters certified"):
        verify_receipt(pack(f), cc.c.genesis)


def test_voter_set_changes_are_followed_from_genesis() -> None:
    cc = CertChain(n_voters=3, n_learners=2, seed=21)
    h1 = cc.block(cc.epi(1))
    # authorities 1 and 2 promote learner 4: voters {1,2,3} -> {1,2,3,4} after block h2
    prop = cc.c.tx(1, "member.propose", {"action": "promote", "inst_id": 4})
    h2 = cc.block([prop], [cc.cert(h1, [1, 2]).encode()])
    vote = cc.c.tx(2, "member.vote", {"proposal_id": 1, "approve": True})
    h3 = cc.block([vote], [cc.cert(h2, [1, 2, 3]).encode()])
    assert cc.results[h3].verdicts[0].applied
    assert [h for h, _ in cc.audit.history.changes_below(h3 + 1)] == [h3]
    h4 = cc.block(cc.epi(2), [cc.cert(h3, [1, 2]).encode()])  # the old set signs the change
    h5 = cc.block(cc.epi(1), [cc.cert(h4, [1, 3, 4]).encode()])  # 3 of the new 4
    cc.block(cc.epi(1), [cc.cert(h5, [2, 4, 3]).encode()])
    p = verify_receipt(cc.receipt(h4, 1), cc.c.genesis)
    assert p.sentence().endswith("(3 of 4 voters)") and p.signer_ids == (1, 3, 4)
    data = cc.receipt(h4, 1)
    # leave the change out: the certificate names a voter set the chain did not reach
    with pytest.raises(ReceiptError, match="names a different voter set"):
        verify_receipt(_with(data, 10, []), cc.c.genesis)
    # two of the new set are not a majority of four
    two = cc.cert(h4, [1, 4]).encode()
    with pytest.raises(ReceiptError, match="only 2 of 4"):
        verify_receipt(_with(data, 9, two), cc.c.genesis)
    # a change certified by a minority of the set before it
    f = unpack(data)
    f[10] = [[cc.cert(h3, [1]).encode(), f[10][0][1]]]
    with pytest.raises(ReceiptError, match="only 1 of 3"):
        verify_receipt(pack(f), cc.c.genesis)
    # a receipt for a block before the change needs no change
    verify_receipt(cc.receipt(h1, 0), cc.c.genesis)
    # and the whole chain's certificates pass the replay audit
    audit = CertAudit(cc.c.genesis)
    rep = verify_chain(cc.c.genesis, cc.c.blocks, observe=audit.observe)
    assert rep.ok, rep.reason
    s = audit.summary(k=2)
    assert s.certified == 5 and s.uncertified == [] and s.pending == [6] and s.max_lag == 1


def test_chain_audit_names_the_block_with_a_bad_certificate() -> None:
    cc = CertChain(seed=22)
    h1 = cc.block(cc.epi(1))
    h2 = cc.block(cc.epi(1), [cc.cert(h1, [1, 2]).encode()])
    cc.block(cc.epi(1), [cc.cert(h2, [4, 5]).encode()], check=False)  # learners sign
    rep = verify_chain(cc.c.genesis, cc.c.blocks, observe=CertAudit(cc.c.genesis).observe)
    assert not rep.ok and rep.bad_height == 3 and "signer 4 was not a voter" in rep.reason
    cc2 = CertChain(seed=23)
    cc2.block(cc2.epi(1))
    cc2.block(cc2.epi(1))
    cc2.block(cc2.epi(1), [cc.cert(h1, [1, 2]).encode()], check=False)  # another chain's
    rep = verify_chain(cc2.c.genesis, cc2.c.blocks, observe=CertAudit(cc2.c.genesis).observe)
    assert not rep.ok and rep.bad_height == 3 and "different block" in rep.reason


def test_version_2_blocks_commit_to_their_certificates(cc: CertChain) -> None:
    raw = cc.c.blocks[1]
    b = decode_block(raw)
    assert b.header.version == 2 and len(b.certs) == 1
    assert decode_block(cc.c.blocks[0]).header.version == 1
    f = unpack(raw)
    f[3] = [cc.carried[2]]
    with pytest.raises(BlockError, match="certs_hash"):
        decode_block(pack(f))
    with pytest.raises(BlockError, match="must carry its certificates"):
        decode_block(pack(f[:3]))


def test_certificate_decoding_is_strict(cc: CertChain) -> None:
    raw = cc.carried[1]
    f = unpack(raw)
    f[7] = list(reversed(f[7]))
    with pytest.raises(CertError, match="ascending"):
        decode_certificate(pack(f))
    with pytest.raises(ReceiptError):
        decode_receipt(b"\x91\x02")


def test_verify_receipt_command(cc: CertChain, tmp_path: Any, capsys: Any) -> None:
    from hzp2p.cli import main

    (tmp_path / "genesis.toml").write_text(cc.c.genesis.to_toml())
    (tmp_path / "r.bin").write_bytes(cc.receipt(1, 1))
    g, r = str(tmp_path / "genesis.toml"), str(tmp_path / "r.bin")
    assert main(["verify-receipt", r, "--genesis", g]) == 0
    out = capsys.readouterr().out
    assert out.startswith("transaction ") and "(3 of 3 voters)" in out
    assert main(["verify-receipt", r, "--genesis", g, "--json"]) == 0
    assert '"verdict": "accepted"' in capsys.readouterr().out
    (tmp_path / "r.bin").write_bytes(cc.receipt(1, 1)[:-1])
    assert main(["verify-receipt", r, "--genesis", g]) == 1
    assert "invalid: receipt" in capsys.readouterr().err
    import base64

    (tmp_path / "r.b64").write_bytes(base64.b64encode(cc.receipt(1, 1, whole_tx=False)) + b"\n")
    assert main(["verify-receipt", str(tmp_path / "r.b64"), "--genesis", g]) == 0
    assert len((tmp_path / "r.b64").read_bytes()) < 2000  # fits a QR code
    capsys.readouterr()
    assert main(["verify-receipt", str(tmp_path / "none"), "--genesis", g]) == 2
    assert main(["verify-receipt", r, "--genesis", str(tmp_path / "none.toml")]) == 2
