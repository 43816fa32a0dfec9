"""Data-set content delivery over real encrypted TCP (hzp2p.node.content): chunks checked
against the content hash, fetches that survive cut connections and resume from disk, a
peer serving corrupted chunks dropped for another, refusals passed on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from hzp2p.crypto.datasets import (
    ContentError,
    Manifest,
    new_dataset_key,
    open_blob,
    seal_file,
)
from hzp2p.node.content.service import FetchError
from hzp2p.tools.contentnet import ContentNode, content_net, cut_all


def _content(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        done = 0
        while done < size:
            n = min(1 << 20, size - done)
            f.write(os.urandom(n))
            done += n
    return path


def _publish(tmp: Path, node: ContentNode, src: Path, key: bytes | None) -> Manifest:
    blob = tmp / f"blob-{node.node_id}"
    m, _ = seal_file(src, blob, key)
    node.store.add_blob(blob, m)
    return m


def _copy_into(node: ContentNode, source: ContentNode, m: Manifest) -> None:
    h = m.content_hash
    d = node.store.dir(h)
    d.mkdir(parents=True)
    (d / "manifest").write_bytes(m.encode())
    (d / "blob").write_bytes(source.store.blob_path(h).read_bytes())


async def _delivery_with_two_cuts(tmp_path: Path, nursery: trio.Nursery, size: int) -> None:
    src = _content(tmp_path / "plain.csv", size)
    key = new_dataset_key()
    async with content_net(nursery, tmp_path, 3, relayed=frozenset({3}),
                           service_args={"chunk_timeout_s": 1.0}) as nodes:
        n1, n2, n3 = nodes
        m = _publish(tmp_path, n1, src, key)
        _copy_into(n2, n1, m)
        h = m.content_hash
        fetched = trio.Event()
        result: list[Path] = []

        async def fetch() -> None:
            result.append(await n3.service.fetch(h, "ds", 1, n3.transport.connected_peers))
            fetched.set()

        nursery.start_soon(fetch)
        for fraction in (0.25, 0.6):  # cut every connection of node 3, twice, mid-transfer
            with trio.fail_after(60):
                while n3.service.stats.fetched_chunks < fraction * m.count and not fetched.is_set():
                    await trio.sleep(0.005)
            assert not fetched.is_set(), "the fetch ended before the cut: use more content"
            await cut_all(nodes)  # the relayed links: those of node 3
        with trio.fail_after(120):
            await fetched.wait()
        blob = result[0]
        assert blob == n3.store.blob_path(h)
        assert hashlib.sha256(blob.read_bytes()).digest() == hashlib.sha256(
            n1.store.blob_path(h).read_bytes()).digest()
        out = tmp_path / "out.csv"
        assert open_blob(blob, out, key, m) == size
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
        assert {r.cuts for x in nodes for r in x.relays} == {2}
        assert sum(x.transport.statistics().reconnects for x in nodes) >= 2
        assert n3.service.stats.retried_chunks >= 1  # what was in flight at a cut came again
        # both holders served part of it
        assert n1.service.stats.served_chunks > 0 and n2.service.stats.served_chunks > 0


async def test_delivery_survives_two_cut_connections(tmp_path: Path, nursery: trio.Nursery) -> None:
    await _delivery_with_two_cuts(tmp_path, nursery, 20 << 20)


async def test_200mb_delivery_survives_two_cut_connections(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    await _delivery_with_two_cuts(tmp_path, nursery, 200 << 20)


async def test_peer_serving_corrupted_chunks_is_dropped_for_another(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    src = _content(tmp_path / "plain.csv", 3 << 20)
    async with content_net(nursery, tmp_path, 3) as nodes:
        n1, n2, n3 = nodes
        m = _publish(tmp_path, n1, src, new_dataset_key())
        _copy_into(n2, n1, m)
        h = m.content_hash
        bad = n1.store.blob_path(h)  # node 1's copy rots: one byte in each chunk flipped
        data = bytearray(bad.read_bytes())
        for i in range(m.count):
            data[i * m.chunk_size + 7] ^= 0xFF
        bad.write_bytes(bytes(data))
        with trio.fail_after(30):
            blob = await n3.service.fetch(h, "ds", 1, n3.transport.connected_peers)
        assert blob.read_bytes() == n2.store.blob_path(h).read_bytes()
        assert n3.service.stats.corrupt_chunks >= 1 and n3.service.stats.bad_peers >= 1
        assert n2.service.stats.served_chunks >= m.count - 16


async def test_fetch_resumes_from_chunks_already_on_disk(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    src = _content(tmp_path / "plain.csv", 2 << 20)
    async with content_net(nursery, tmp_path, 2) as (n1, n2):
        m = _publish(tmp_path, n1, src, None)
        h = m.content_hash
        # a fetch broken off after half the chunks (the daemon stopped): they stay on disk
        part = n2.store.begin(h, m.encode())
        blob = n1.store.blob_path(h).read_bytes()
        for i in range(m.count // 2):
            part.write(i, blob[i * m.chunk_size:(i + 1) * m.chunk_size])
        part.close()
        with trio.fail_after(30):
            await n2.service.fetch(h, "ds", 1, n2.transport.connected_peers)
        assert n2.store.blob_path(h).read_bytes() == blob
        assert n2.service.stats.fetched_chunks == m.count - m.count // 2


async def test_a_refusing_peer_ends_the_fetch_with_its_reason(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async def refuse(did: str, v: int, h: bytes, node: int) -> str | None:
        return f"institution {node} holds no current key"

    src = _content(tmp_path / "plain.csv", 1 << 20)
    async with content_net(nursery, tmp_path, 2, authorise=refuse) as (n1, n2):
        m = _publish(tmp_path, n1, src, new_dataset_key())
        with trio.fail_after(30), pytest.raises(FetchError, match="holds no current key"):
            await n2.service.fetch(m.content_hash, "ds", 1, n2.transport.connected_peers)
        assert not n2.store.has(m.content_hash)


def test_tampered_blob_does_not_open(tmp_path: Path) -> None:
    src = _content(tmp_path / "plain.csv", 600_000)
    key = new_dataset_key()
    m, plain = seal_file(src, tmp_path / "blob", key)
    assert plain == 600_000 and m.count == 3
    assert Manifest.decode(m.encode(), m.content_hash) == m
    with pytest.raises(ContentError):
        Manifest.decode(m.encode(), bytes(32))
    with pytest.raises(ContentError):
        open_blob(tmp_path / "blob", tmp_path / "out", new_dataset_key(), m)  # wrong key
    data = bytearray((tmp_path / "blob").read_bytes())
    data[5] ^= 1
    (tmp_path / "blob").write_bytes(bytes(data))
    with pytest.raises(ContentError, match="chunk 0"):
        open_blob(tmp_path / "blob", tmp_path / "out", key, m)


async def test_a_busy_peer_is_asked_again_later(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Back-pressure: a server with a full request queue answers `busy`; the fetcher leaves it
    alone for a moment and asks again, and the fetch completes."""

    async def slow(did: str, v: int, h: bytes, node: int) -> str | None:
        await trio.sleep(0.01)
        return None

    src = _content(tmp_path / "plain.csv", 4 << 20)
    async with content_net(nursery, tmp_path, 2, authorise=slow,
                           service_args={"max_pending": 1, "batch": 2}) as (n1, n2):
        m = _publish(tmp_path, n1, src, None)
        with trio.fail_after(60):
            blob = await n2.service.fetch(m.content_hash, "ds", 1, n2.transport.connected_peers)
        assert blob.read_bytes() == src.read_bytes()
        assert n1.service.stats.busy > 0 and n2.service.stats.busy_answers > 0


async def test_concurrent_fetches_of_one_content_share_the_work(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    src = _content(tmp_path / "plain.csv", 2 << 20)
    async with content_net(nursery, tmp_path, 2) as (n1, n2):
        m = _publish(tmp_path, n1, src, None)
        paths: list[Path] = []

        async def one() -> None:
            paths.append(await n2.service.fetch(m.content_hash, "ds", 1,
                                                n2.transport.connected_peers))

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                for _ in range(3):
                    n.start_soon(one)
        assert len(set(paths)) == 1 and paths[0].read_bytes() == src.read_bytes()
        assert n2.service.stats.fetched_chunks == m.count  # fetched once
