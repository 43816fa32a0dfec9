"""Merkle tree over a block's transactions, and inclusion proofs.

Leaves and inner nodes are domain-separated: leaf = blake2b-256(0x00 || tx_hash
|| signature), inner = blake2b-256(0x01 || left || right). At a level with an
odd number of nodes the last node is promoted unchanged to the next level (no
duplication, so two different transaction lists can never share a root the way
Bitcoin's duplicate-last rule allowed). The root of an empty block is
blake2b-256(0x02). A proof is the list of sibling hashes from leaf to root;
with the leaf index and the block header's tx count it is checkable with the
header alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

EMPTY_ROOT = hashlib.blake2b(b"\x02", digest_size=32).digest()


def leaf_hash(tx_hash: bytes, signature: bytes) -> bytes:
    return hashlib.blake2b(b"\x00" + tx_hash + signature, digest_size=32).digest()


def _inner(left: bytes, right: bytes) -> bytes:
    return hashlib.blake2b(b"\x01" + left + right, digest_size=32).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    level = leaves
    while len(level) > 1:
        nxt = [_inner(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


@dataclass(frozen=True, slots=True)
class MerkleProof:
    index: int
    count: int
    siblings: tuple[bytes, ...]


def merkle_proof(leaves: list[bytes], index: int) -> MerkleProof:
    assert 0 <= index < len(leaves), "leaf index out of range"
    siblings: list[bytes] = []
    level, i = leaves, index
    while len(level) > 1:
        if not (i == len(level) - 1 and len(level) % 2):
            siblings.append(level[i ^ 1])
        nxt = [_inner(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, i = nxt, i // 2
    return MerkleProof(index, len(leaves), tuple(siblings))


def verify_proof(root: bytes, leaf: bytes, proof: MerkleProof) -> bool:
    """True iff `leaf` sits at `proof.index` of a `proof.count`-leaf tree with `root`."""
    if not 0 <= proof.index < proof.count:
        return False
    h, i, m, k = leaf, proof.index, proof.count, 0
    while m > 1:
        if not (i == m - 1 and m % 2):
            if k >= len(proof.siblings):
                return False
            sib = proof.siblings[k]
            k += 1
            h = _inner(h, sib) if i % 2 == 0 else _inner(sib, h)
        i, m = i // 2, (m + 1) // 2
    return k == len(proof.siblings) and h == root
