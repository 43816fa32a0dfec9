"""Key rotation by a governed transaction (issue 19: no certificate time bomb).

An institution's signing and node keys are replaced by `member.propose` action
`rotate_keys`, decided by the authorities' vote. Old signatures stay valid for the
heights before the rotation (replay checks each block against the keys in force when
it was made); the old keys sign nothing after it; certificates and receipts verify
across it, and `verify_receipt` with only the genesis follows the rotation as a
certified change of the voter set. Tampering with the rotation chain fails.
"""

from __future__ import annotations

from typing import Any

import nacl.signing
import pytest

from hzp2p.contracts.certify import CertAudit, VoterHistory
from hzp2p.contracts.engine import BlockRejected
from hzp2p.contracts.members import get_institution, institution_by_key, key_owner
from hzp2p.contracts.verify import verify_chain
from hzp2p.ledger.codec import pack, unpack
from hzp2p.ledger.genesis import NodeSecrets
from hzp2p.ledger.receipt import ReceiptError, verify_receipt
from tests.ledger.test_certificates import CertChain, _with


def new_secrets() -> NodeSecrets:
    return NodeSecrets(bytes(nacl.signing.SigningKey.generate()),
                       bytes(nacl.signing.SigningKey.generate()))


def rotate(cc: CertChain, inst_id: int, new: NodeSecrets, certs: list[bytes],
           vote_certs: list[bytes]) -> tuple[int, int]:
    """Authority 1 proposes, authority 2 approves: (height of the proposal, of the rotation)."""
    payload = {"action": "rotate_keys", "inst_id": inst_id,
               "signing_key": bytes(new.signing_key().verify_key),
               "node_key": bytes(new.node_key().verify_key)}
    h_prop = cc.block([cc.c.tx(1, "member.propose", payload)], certs)
    assert cc.results[h_prop].verdicts[0].applied, cc.results[h_prop].verdicts[0].reason
    pid = max(int(k[6:]) for k, _ in cc.c.state.scan(b"mem/p/"))
    h_rot = cc.block([cc.c.tx(2, "member.vote", {"proposal_id": pid, "approve": True})],
                     vote_certs)
    assert cc.results[h_rot].verdicts[0].applied, cc.results[h_rot].verdicts[0].reason
    return h_prop, h_rot


@pytest.fixture(scope="module")
def rotated() -> tuple[CertChain, dict[str, Any]]:
    cc = CertChain(n_voters=3, n_learners=1, seed=31)
    old3 = cc.c.secrets[3]
    h1 = cc.block(cc.epi(2, signer=3))  # signed by voter 3's old key
    new3 = new_secrets()
    h2, h3 = rotate(cc, 3, new3, [cc.cert(h1, [1, 2, 3]).encode()], [])
    # block h3 rotated voter 3: its certificate is the old set's (3 signs with its old key)
    cc.c.secrets[3] = new3
    h4 = cc.block(cc.epi(2, signer=3),
                  [_cert_with(cc, h2, {1: None, 3: old3}), _cert_with(cc, h3, {1: None, 3: old3})])
    h5 = cc.block(cc.epi(1), [cc.cert(h4, [2, 3]).encode()])  # 3 signs with its new key
    cc.block(cc.epi(1), [cc.cert(h5, [1, 3]).encode()])
    return cc, {"old3": old3, "new3": new3, "h1": h1, "h3": h3, "h4": h4}


def _cert_with(cc: CertChain, h: int, keys: dict[int, NodeSecrets | None]) -> bytes:
    """A certificate of block h signed by these voters (None: its current key)."""
    from hzp2p.ledger.certificate import QuorumCertificate

    st = cc.statements[h]
    sigs = {i: st.sign(s.signing_key() if s is not None else cc.c.key(i)) for i, s in keys.items()}
    raw = QuorumCertificate.of(st, sigs).encode()
    return raw


def test_rotation_replaces_keys_and_old_keys_sign_no_more(
    rotated: tuple[CertChain, dict[str, Any]]
) -> None:
    cc, r = rotated
    old_key = bytes(r["old3"].signing_key().verify_key)
    new_key = bytes(r["new3"].signing_key().verify_key)
    inst = get_institution(cc.c.state, 3)
    assert inst is not None and inst.signing_key == new_key
    assert inst.node_key == bytes(r["new3"].node_key().verify_key)
    assert institution_by_key(cc.c.state, old_key) is None  # signs no more
    owner = key_owner(cc.c.state, old_key)
    assert owner is not None and owner.inst_id == 3  # but still names who signed before
    # a transaction under the old key is refused now; the new key's are accepted
    f = cc.c.fork()
    ok, why = f.run_one(r["old3"].signing_key(), "epi.report",
                        {"report_id": "x1", "region": "n", "metric": "m", "value": 1,
                         "period": "p"})
    assert not ok and "member" in why
    log = [c for c in cc.audit.history.changes_below(10**6)]
    assert [h for h, _ in log] == [r["h3"]]
    assert log[0][1].get(3) is not None and log[0][1].get(3).signing_key == new_key


def test_old_signatures_stay_valid_below_the_rotation(
    rotated: tuple[CertChain, dict[str, Any]]
) -> None:
    cc, _ = rotated
    # the whole chain replays, every certificate checks (old keys below, new keys above)
    audit = CertAudit(cc.c.genesis)
    rep = verify_chain(cc.c.genesis, cc.c.blocks, observe=audit.observe)
    assert rep.ok, rep.reason
    assert audit.summary(k=2).uncertified == []
    # rebuilt from the state's membership log, the voter history is the one followed
    rebuilt = VoterHistory.from_state(cc.c.genesis, cc.c.state)
    for h in range(1, len(cc.c.blocks) + 2):
        assert rebuilt.at(h).hash == cc.audit.history.at(h).hash, h


def test_receipts_verify_across_the_rotation(rotated: tuple[CertChain, dict[str, Any]]) -> None:
    cc, r = rotated
    before = verify_receipt(cc.receipt(r["h1"], 1), cc.c.genesis)  # old key signed the tx
    assert before.transaction is not None
    assert before.transaction.signer == bytes(r["old3"].signing_key().verify_key)
    after = verify_receipt(cc.receipt(r["h4"], 0), cc.c.genesis)  # new key, across it
    assert after.transaction is not None
    assert after.transaction.signer == bytes(r["new3"].signing_key().verify_key)
    assert after.signer_ids == (2, 3) and after.sentence().endswith("(2 of 3 voters)")
    # the rotation block's own receipt: certified by the set before it (3's old key)
    verify_receipt(cc.receipt(r["h3"], 0), cc.c.genesis)


def test_tampered_rotation_chains_fail(rotated: tuple[CertChain, dict[str, Any]]) -> None:
    cc, r = rotated
    data = cc.receipt(r["h4"], 0)
    # the rotation left out: the certificate names a voter set the genesis did not reach
    with pytest.raises(ReceiptError, match="names a different voter set"):
        verify_receipt(_with(data, 10, []), cc.c.genesis)
    # a rotation to a key of the forger's choosing: its certificate names another set
    f = unpack(data)
    forged = nacl.signing.SigningKey.generate()
    entries = f[10][0][1]
    f[10] = [[f[10][0][0], [e if e[0] != 3 else [3, e[1], bytes(forged.verify_key)]
                            for e in entries]]]
    with pytest.raises(ReceiptError, match="not the one its certificate names"):
        verify_receipt(pack(f), cc.c.genesis)
    # the old key signing after the rotation does not count
    stale = _cert_with(cc, r["h4"], {2: None, 3: r["old3"]})
    with pytest.raises(ReceiptError, match="does not verify"):
        verify_receipt(_with(data, 9, stale), cc.c.genesis)


def test_node_key_rotation_block_signatures() -> None:
    """Rotating the proposer's node key: its blocks verify with the old key up to the
    rotation and must use the new one after it; the replay checks both."""
    cc = CertChain(n_voters=3, n_learners=1, seed=32)
    h1 = cc.block(cc.epi(1))
    old1, new1 = cc.c.secrets[1], new_secrets()
    _, h_rot = rotate(cc, 1, new1, [cc.cert(h1, [1, 2]).encode()], [])
    # a snapshot taken at the very block that rotated its proposer's key verifies (the tip
    # is checked against the key that block replaced)
    from hzp2p.contracts.engine import read_head, state_digest
    from hzp2p.node.snapshot_format import StateSnapshot, verify_snapshot
    from hzp2p.raft.types import ConfState, SnapshotMeta

    conf = ConfState(voters=frozenset({1, 2, 3}), learners=frozenset({4}))
    head = read_head(cc.c.state)
    snap = StateSnapshot(9, conf, h_rot, head.hash, state_digest(cc.c.state),
                         cc.c.blocks[h_rot - 1], tuple(sorted(cc.c.state.data.items())))
    verify_snapshot(snap, SnapshotMeta(9, 1, conf), cc.c.genesis.hash)
    stale = cc.c.fork()
    with pytest.raises(BlockRejected, match="signature"):
        stale.apply(stale.make_block(cc.epi(1)))  # still signed with the old node key
    cc.c.secrets[1] = new1
    cc.block(cc.epi(1))
    assert verify_chain(cc.c.genesis, cc.c.blocks).ok
    assert old1 != new1


def test_rotation_refuses_keys_in_use_and_needs_the_vote() -> None:
    cc = CertChain(n_voters=3, n_learners=1, seed=33)
    used = cc.c.secrets[2]
    payload = {"action": "rotate_keys", "inst_id": 3,
               "signing_key": bytes(used.signing_key().verify_key),
               "node_key": bytes(nacl.signing.SigningKey.generate().verify_key)}
    ok, why = cc.c.run_one(1, "member.propose", payload)
    assert not ok and "signing_key already belongs" in why
    payload["signing_key"] = bytes(nacl.signing.SigningKey.generate().verify_key)
    ok, why = cc.c.run_one(3, "member.propose", payload)  # a lab proposes nothing
    assert not ok
    ok, why = cc.c.run_one(1, "member.propose", payload)  # one yes of two authorities
    assert ok, why
    cur = cc.c.secrets[2]
    same = {"action": "rotate_keys", "inst_id": 2,
            "signing_key": bytes(cur.signing_key().verify_key),
            "node_key": bytes(cur.node_key().verify_key)}
    ok, why = cc.c.run_one(1, "member.propose", same)
    assert not ok and "changes neither key" in why
    # only the node key: the signing key stays the target's own current one
    ok, why = cc.c.run_one(1, "member.propose", {
        **same, "node_key": bytes(nacl.signing.SigningKey.generate().verify_key)})
    assert ok, why
    inst = get_institution(cc.c.state, 3)
    assert inst is not None and inst.signing_key == bytes(cc.c.secrets[3].signing_key().verify_key)
