"""Merkle trees and proofs (every position, odd counts) and block encoding."""

from __future__ import annotations

import hashlib

import pytest

from hzp2p.ledger.block import Block, BlockError, decode_block, verify_inclusion
from hzp2p.ledger.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    leaf_hash,
    merkle_proof,
    merkle_root,
    verify_proof,
)
from hzp2p.tools.testkit import LocalChain


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(b"%d" % i).digest(), b"s" * 64) for i in range(n)]


@pytest.mark.parametrize("n", [*range(1, 18), 31, 33, 100])
def test_every_position_proves(n: int) -> None:
    ls = leaves(n)
    root = merkle_root(ls)
    for i in range(n):
        p = merkle_proof(ls, i)
        assert verify_proof(root, ls[i], p)
        # wrong leaf, wrong index, wrong count, truncated path: all refused
        assert not verify_proof(root, ls[(i + 1) % n], p) or n == 1
        assert not verify_proof(root, ls[i], MerkleProof((i + 1) % n, n, p.siblings)) or n == 1
        if p.siblings:
            assert not verify_proof(root, ls[i], MerkleProof(i, n, p.siblings[:-1]))


def test_odd_handling_does_not_duplicate() -> None:
    # Bitcoin's duplicate-last rule made [a, b, c] and [a, b, c, c] share a root; ours does not.
    ls = leaves(3)
    assert merkle_root(ls) != merkle_root([*ls, ls[-1]])
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root(ls[:1]) == ls[0]


def test_leaf_and_inner_domains_differ() -> None:
    ls = leaves(2)
    inner = merkle_root(ls)
    # an inner node can't be passed off as a leaf of a one-leaf tree with the same bytes
    assert leaf_hash(ls[0][:32], ls[1] + ls[1]) != inner


def test_block_roundtrip_and_proof_from_header() -> None:
    c = LocalChain(seed=3)
    txs = [c.tx(3, "epi.report", {"i": i}) for i in range(7)]
    b = c.make_block(txs)
    raw = b.encode()
    back = decode_block(raw)
    assert back.hash == b.hash and back.encode() == raw
    for i, tx in enumerate(back.txs):
        assert verify_proof(back.header.merkle_root, leaf_hash(tx.hash, tx.signature), back.proof(i))
        assert verify_inclusion(back.header, tx.hash, tx.signature, back.proof(i))
        p = back.proof(i)
        assert not verify_inclusion(back.header, tx.hash, tx.signature, MerkleProof(i, 8, p.siblings))


def test_block_merkle_mismatch_detected() -> None:
    c = LocalChain(seed=3)
    b = c.make_block([c.tx(3, "epi.report", {"i": i}) for i in range(3)])
    forged = Block(b.header, b.signature, (*b.txs[:2], b.txs[0]))
    with pytest.raises(BlockError):
        decode_block(forged.encode())


def test_empty_block() -> None:
    c = LocalChain(seed=3)
    b = c.make_block([])
    assert decode_block(b.encode()).header.merkle_root == EMPTY_ROOT
