"""Content delivery between nodes: serving chunks to peers, and fetching content from them.

Over the encrypted peer transport (ContentRequest / ContentChunk, hzp2p.net.schemas):

* **Serving.** A request is queued (bounded: beyond `max_pending` the asker is told
  `busy`), then checked with `authorise` (the node's committed state: may that
  institution have that data set's version now? hzp2p.contracts.datasets.may_serve),
  and answered chunk by chunk from the content store. A full send queue is waited
  out briefly, then the rest of the request is dropped: the fetcher asks again.
* **Fetching.** The manifest first (from any peer that has it, checked against the
  content hash), then the missing chunks, at most `window` chunks in flight per peer,
  spread over the peers that have the content. Every chunk is checked against the
  manifest as it arrives; a peer that sends a wrong chunk is dropped for the rest of
  the fetch (counted) and its chunk asked of another. A chunk not answered within
  `chunk_timeout_s` is asked again (a broken connection loses what was in flight),
  so a fetch survives connections being cut; chunks already on disk are kept
  (hzp2p.node.content.store), so it also resumes after a restart. The assembled
  blob is checked as a whole before it is used.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import trio

from hzp2p.crypto.datasets import MAX_CHUNK_BYTES, ContentError, Manifest, chunk_hash
from hzp2p.net.schemas import MAX_CONTENT_CHUNKS_PER_REQUEST, ContentChunk, ContentRequest
from hzp2p.net.transport import Transport
from hzp2p.node.content.store import ContentStore, Partial

log = structlog.get_logger("hzp2p.content")

BUSY_PAUSE_S = 0.05
"""How long a fetcher leaves a peer alone after it answered `busy`."""

Authorise = Callable[[str, int, bytes, int], Awaitable[str | None]]
"""(dataset_id, version, content_hash, asking node) -> why not (None: serve it)."""


class FetchError(Exception):
    """Content could not be fetched (no peer has it, every peer refused, no progress).
    `refused`: a peer refused the asker (worth asking again once the peers applied the
    asker's data.fetch)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass
class ContentStats:
    served_chunks: int = 0
    served_bytes: int = 0
    served_manifests: int = 0
    refused: int = 0
    busy: int = 0
    send_drops: int = 0
    fetched_chunks: int = 0
    fetched_bytes: int = 0
    corrupt_chunks: int = 0
    retried_chunks: int = 0
    bad_peers: int = 0
    busy_answers: int = 0


@dataclass
class _Fetch:
    send: trio.MemorySendChannel[tuple[int, ContentChunk]]
    recv: trio.MemoryReceiveChannel[tuple[int, ContentChunk]]


@dataclass
class _Peer:
    node: int
    inflight: dict[int, float] = field(default_factory=dict)  # chunk -> deadline
    paused_until: float = 0.0  # it answered `busy`: ask it nothing before then


class ContentService:
    def __init__(
        self,
        store: ContentStore,
        transport: Transport,
        authorise: Authorise,
        *,
        window: int = 32,
        batch: int = 8,
        chunk_timeout_s: float = 3.0,
        stall_timeout_s: float = 60.0,
        max_pending: int = 64,
    ) -> None:
        assert 1 <= batch <= MAX_CONTENT_CHUNKS_PER_REQUEST and window >= batch
        self.store = store
        self.transport = transport
        self.authorise = authorise
        self.window, self.batch = window, batch
        self.chunk_timeout_s = chunk_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.stats = ContentStats()
        self._pending_send, self._pending_recv = trio.open_memory_channel[
            tuple[int, ContentRequest]](max_pending)
        self._fetches: dict[int, _Fetch] = {}
        self._running: dict[bytes, trio.Event] = {}  # content hash -> its fetch's end
        self._fetch_ids = itertools.count(1)
        self._seq = itertools.count(1)

    # ---------------------------------------------------------------- messages in
    def on_message(self, sender: int, msg: object) -> None:
        """From the transport's inbound loop: never blocks."""
        if isinstance(msg, ContentRequest):
            try:
                self._pending_send.send_nowait((sender, msg))
            except trio.WouldBlock:
                self.stats.busy += 1
                self._reply(sender, ContentChunk(msg.request_id, msg.content_hash, msg.first,
                                                 "busy", b"", "too many pending requests"))
        elif isinstance(msg, ContentChunk):
            f = self._fetches.get(msg.request_id >> 32)
            if msg.index >= 0 and len(msg.data) > MAX_CHUNK_BYTES:
                return  # no chunk is that large: a peer's mistake, not worth memory
            if f is not None:
                # a fetch far behind drops it: its timeouts ask again
                with contextlib.suppress(trio.WouldBlock):
                    f.send.send_nowait((sender, msg))

    def _reply(self, dst: int, msg: ContentChunk) -> bool:
        return self.transport.send_nowait(dst, msg)

    # ---------------------------------------------------------------- serving
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for sender, req in self._pending_recv:
            await self._serve(sender, req)

    async def _serve(self, sender: int, req: ContentRequest) -> None:
        h = req.content_hash
        why = await self.authorise(req.dataset_id, req.version, h, sender)
        if why is not None:
            self.stats.refused += 1
            self._reply(sender, ContentChunk(req.request_id, h, req.first, "refused", b"", why[:256]))
            return
        m = self.store.manifest(h) if self.store.has(h) else None
        if m is None:
            self._reply(sender, ContentChunk(req.request_id, h, req.first, "missing", b"",
                                             "this node does not hold the content"))
            return
        if req.first < 0:
            raw = self.store.manifest_bytes(h)
            assert raw is not None
            self.stats.served_manifests += 1
            await self._send(sender, ContentChunk(req.request_id, h, -1, "ok", raw))
            return
        chunks = await trio.to_thread.run_sync(self.store.read_chunks, h, req.first, req.count)
        for i, data in enumerate(chunks):
            if not await self._send(sender, ContentChunk(req.request_id, h, req.first + i, "ok", data)):
                return
            self.stats.served_chunks += 1
            self.stats.served_bytes += len(data)

    async def _send(self, dst: int, msg: ContentChunk, patience_s: float = 2.0) -> bool:
        """Send, waiting out a full send queue for a while (back-pressure from the peer)."""
        with trio.move_on_after(patience_s):
            delay = 0.001
            while not self._reply(dst, msg):
                await trio.sleep(delay)
                delay = min(delay * 2, 0.05)
            return True
        self.stats.send_drops += 1
        return False

    # ---------------------------------------------------------------- fetching
    async def fetch(
        self, content_hash: bytes, dataset_id: str, version: int,
        peers: Callable[[], Iterable[int]],
    ) -> Path:
        """The local path of the complete blob, fetched from `peers()` (the connected peers,
        asked again as connections come and go) unless already held."""
        while (running := self._running.get(content_hash)) is not None:
            await running.wait()  # one fetch per content at a time; then look again
        if self.store.has(content_hash):
            return self.store.blob_path(content_hash)
        done = self._running[content_hash] = trio.Event()
        try:
            return await self._fetch_new(content_hash, dataset_id, version, peers)
        finally:
            del self._running[content_hash]
            done.set()

    async def _fetch_new(
        self, content_hash: bytes, dataset_id: str, version: int,
        peers: Callable[[], Iterable[int]],
    ) -> Path:
        fid = next(self._fetch_ids)
        # bounded: at most `window` chunks are asked of a peer at once; more is dropped
        send, recv = trio.open_memory_channel[tuple[int, ContentChunk]](4 * self.window)
        self._fetches[fid] = _Fetch(send, recv)
        try:
            return await self._fetch(fid, recv, content_hash, dataset_id, version, peers)
        finally:
            del self._fetches[fid]
            send.close()
            recv.close()

    def _request(self, fid: int, peer: int, h: bytes, did: str, version: int, first: int,
                 count: int) -> int:
        rid = (fid << 32) | (next(self._seq) & 0xFFFFFFFF)
        self.transport.send_nowait(peer, ContentRequest(rid, h, did, version, first, count))
        return rid

    async def _fetch(
        self, fid: int, recv: trio.MemoryReceiveChannel[tuple[int, ContentChunk]],
        h: bytes, did: str, version: int, peers: Callable[[], Iterable[int]],
    ) -> Path:
        excluded: dict[int, tuple[str, str]] = {}  # peer -> why it is not asked again in this fetch
        raw = await self._fetch_manifest(fid, recv, h, did, version, peers, excluded)
        part = self.store.begin(h, raw)
        try:
            await self._fetch_chunks(fid, recv, h, did, version, peers, excluded, part)
            try:
                path = await trio.to_thread.run_sync(part.finish)
            except ContentError as exc:
                raise FetchError(str(exc)) from None
        finally:
            part.close()
        log.info("content.fetched", content_hash=h.hex(), chunks=part.manifest.count,
                 bytes=part.manifest.size, excluded=sorted(excluded))
        return path

    def _usable(self, peers: Callable[[], Iterable[int]], excluded: dict[int, tuple[str, str]]) -> list[int]:
        me = self.transport.node_id
        return sorted(p for p in peers() if p != me and p not in excluded)

    async def _fetch_manifest(
        self, fid: int, recv: trio.MemoryReceiveChannel[tuple[int, ContentChunk]],
        h: bytes, did: str, version: int, peers: Callable[[], Iterable[int]],
        excluded: dict[int, tuple[str, str]],
    ) -> bytes:
        have = self.store.manifest_bytes(h)
        if have is not None:
            return have
        stall = trio.current_time() + self.stall_timeout_s
        while trio.current_time() < stall:
            usable = self._usable(peers, excluded)
            if not usable:
                if excluded and self._usable(peers, {}):
                    raise _fail(excluded)  # every connected peer said no
                await trio.sleep(0.05)  # nobody connected: wait for a connection
                continue
            for p in usable:
                rid = self._request(fid, p, h, did, version, -1, 1)
                with trio.move_on_after(self.chunk_timeout_s):
                    async for sender, msg in recv:
                        if msg.request_id != rid or msg.index != -1:
                            continue
                        if msg.status == "busy":
                            await trio.sleep(BUSY_PAUSE_S)
                            break  # the next peer, or this one again later
                        if msg.status != "ok":
                            excluded[sender] = (msg.status, msg.reason)
                            break
                        try:
                            Manifest.decode(msg.data, h)
                        except ContentError:
                            self.stats.bad_peers += 1
                            excluded[sender] = ("corrupt", "sent a manifest that does not match the hash")
                            break
                        return msg.data
        raise FetchError(f"no peer answered for the manifest within {self.stall_timeout_s:g} s"
                         + (f" ({_why(excluded)})" if excluded else ""))

    async def _fetch_chunks(
        self, fid: int, recv: trio.MemoryReceiveChannel[tuple[int, ContentChunk]],
        h: bytes, did: str, version: int, peers: Callable[[], Iterable[int]],
        excluded: dict[int, tuple[str, str]], part: Partial,
    ) -> None:
        m = part.manifest
        todo = sorted(part.missing, reverse=True)  # pop() takes the lowest index
        state: dict[int, _Peer] = {}
        last_progress = trio.current_time()
        while todo or any(p.inflight for p in state.values()):
            now = trio.current_time()
            # chunks in flight too long (a cut connection lost them): ask again
            for p in state.values():
                late = [i for i, d in p.inflight.items() if d <= now]
                for i in late:
                    del p.inflight[i]
                    if i not in part.have:
                        todo.append(i)
                        self.stats.retried_chunks += 1
            if todo:
                todo = sorted(set(todo) - part.have, reverse=True)
            usable = self._usable(peers, excluded)
            if (not usable and excluded and self._usable(peers, {})
                    and not any(p.inflight for p in state.values())):
                raise _fail(excluded)  # every connected peer said no (or lied)
            total = sum(len(p.inflight) for p in state.values())
            for node in usable:  # at most `window` per peer, 3 x `window` in all (the channel)
                p = state.setdefault(node, _Peer(node))
                if p.paused_until > now:
                    continue
                while (todo and len(p.inflight) + self.batch <= self.window
                       and total + self.batch <= 3 * self.window):
                    total += min(self.batch, len(todo))
                    run = [todo.pop()]
                    while todo and len(run) < self.batch and todo[-1] == run[-1] + 1:
                        run.append(todo.pop())
                    self._request(fid, node, h, did, version, run[0], len(run))
                    for i in run:
                        p.inflight[i] = now + self.chunk_timeout_s
            if now - last_progress > self.stall_timeout_s:
                raise FetchError(f"no chunk arrived for {self.stall_timeout_s:g} s"
                                 + (f" ({_why(excluded)})" if excluded else ""))
            deadline = min((d for p in state.values() for d in p.inflight.values()),
                           default=now + 0.05)
            with trio.move_on_at(max(deadline, now + 0.001)):
                sender, msg = await recv.receive()
                last_progress = self._on_chunk(sender, msg, h, m, part, state, excluded, todo,
                                               last_progress)
                # take what else already arrived without waiting
                while True:
                    try:
                        sender, msg = recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                    last_progress = self._on_chunk(sender, msg, h, m, part, state, excluded,
                                                   todo, last_progress)

    def _on_chunk(self, sender: int, msg: ContentChunk, h: bytes, m: Manifest, part: Partial,
                  state: dict[int, _Peer], excluded: dict[int, tuple[str, str]], todo: list[int],
                  last_progress: float) -> float:
        p = state.get(sender)
        if p is None or msg.content_hash != h:
            return last_progress
        if msg.status == "busy":  # back-pressure: the chunks of that request come later
            self.stats.busy_answers += 1
            p.paused_until = trio.current_time() + BUSY_PAUSE_S
            for j in range(msg.index, msg.index + self.batch):
                if p.inflight.pop(j, None) is not None and j not in part.have:
                    todo.append(j)
            return last_progress
        if msg.status != "ok":
            excluded[sender] = (msg.status, msg.reason)
            todo.extend(i for i in p.inflight if i not in part.have)
            p.inflight.clear()
            return last_progress
        i = msg.index
        if not 0 <= i < m.count:
            return last_progress
        p.inflight.pop(i, None)
        if i in part.have:
            return last_progress  # a late duplicate after a re-request
        if len(msg.data) != m.chunk_len(i) or chunk_hash(msg.data) != m.hashes[i]:
            self.stats.corrupt_chunks += 1
            self.stats.bad_peers += 1
            excluded[sender] = ("corrupt", f"sent chunk {i} that does not match the manifest")
            log.warning("content.corrupt_chunk", peer=sender, chunk=i, content_hash=h.hex())
            todo.append(i)
            todo.extend(j for j in p.inflight if j not in part.have)
            p.inflight.clear()
            return last_progress
        part.write(i, msg.data)
        self.stats.fetched_chunks += 1
        self.stats.fetched_bytes += len(msg.data)
        return trio.current_time()


def _why(excluded: dict[int, tuple[str, str]]) -> str:
    return "; ".join(f"node {n}: {kind}: {why}" for n, (kind, why) in sorted(excluded.items()))


def _fail(excluded: dict[int, tuple[str, str]]) -> FetchError:
    refused = any(k == "refused" for k, _ in excluded.values())
    return FetchError(_why(excluded), refused=refused)

