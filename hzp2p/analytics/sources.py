"""Reading a node's committed state read-only, whether or not its daemon is running.

Two StateReaders (get + prefix scan, as the contracts' queries expect):

* `SqliteSnapshot` opens the node's database file read-only (`mode=ro`,
  `query_only`) inside one read transaction, so every read sees the same
  committed state, and streams scans row by row. It changes nothing in the
  database, takes no lock file and never creates one; SQLite itself may leave
  its WAL index (`node.db-shm`) beside the file, which a daemon opening it
  later simply rebuilds (a read-only connection in exclusive mode, which
  would not, cannot read the WAL a crashed daemon left).
* `AdminState` asks the running daemon over its admin socket (`state_scan`).
  The daemon opens its database with `locking_mode=EXCLUSIVE` (one process owns
  the file: hzp2p.storage.schema.OpenOptions), so no other process can read the
  file while it runs; its admin socket is the read path then, as for `admin
  verify`. `state_scan` takes a prefix and a row limit (the daemon caps it), so
  a scan pages: after a full page ending at key K it scans, in key order, the
  prefixes that hold exactly the keys after K (K + c, then K[:j] + c for
  c > K[j], for j from the end back to the prefix), c over printable ASCII —
  every key the export reads is built from ids the contracts restrict to it
  (a key with any other byte is an error, never skipped silently). The state
  may move on between pages; hzp2p.analytics.aggregates makes every table
  exactly "as of" one height from the heights stamped on the values.

`open_state(config)` picks: the daemon's data-dir lock file held (a daemon
runs) -> the admin socket, else the file.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from hzp2p.admin.protocol import (
    MAX_SCAN,
    AdminProtocolError,
    FrameDecoder,
    Request,
    pack_message,
    parse_response,
    unpack_message,
)
from hzp2p.storage.sqlite_reader import prefix_end

PAGE_ROWS = MAX_SCAN
"""Rows asked per `state_scan`: the daemon's own cap, so a short page means the end."""
ALPHABET = bytes(range(0x20, 0x7F))
"""Bytes a key may hold after a scanned prefix (ids are restricted ASCII)."""
_MAX_RESPONSE_BYTES = 64 << 20  # the admin server's own bound on a response
SCAN_FETCH_ROWS = 4096


class SourceError(Exception):
    """The state cannot be read (missing, locked, unreadable, daemon not answering)."""


class StateSource(Protocol):
    kind: str

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


class SqliteSnapshot:
    """A read-only, consistent view of a node database file (one read transaction)."""

    kind = "sqlite"

    def __init__(self, db_path: Path) -> None:
        if not db_path.is_file():
            raise SourceError(f"no database at {db_path} (has this node ever run?)")
        try:
            self._conn = sqlite3.connect(
                db_path.resolve().as_uri() + "?mode=ro", uri=True, timeout=0.5,
                isolation_level=None,
            )
            self._conn.execute("PRAGMA query_only = ON")
            self._conn.execute("BEGIN")
            # The first read fixes the snapshot every later read of this transaction sees.
            self._conn.execute("SELECT count(*) FROM node_state").fetchone()
        except sqlite3.Error as exc:
            raise SourceError(f"cannot read {db_path}: {exc}") from None

    def get(self, key: bytes) -> bytes | None:
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Rows under `prefix` in key order, streamed (a million rows never sit in memory)."""
        end = prefix_end(prefix)
        lim = -1 if limit is None else limit
        if end is None:
            cur = self._conn.execute(
                "SELECT key, value FROM state WHERE key >= ? ORDER BY key LIMIT ?", (prefix, lim)
            )
        else:
            cur = self._conn.execute(
                "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
                (prefix, end, lim),
            )
        while rows := cur.fetchmany(SCAN_FETCH_ROWS):
            yield from rows

    def close(self) -> None:
        self._conn.close()


class AdminState:
    """Committed state read through a running daemon's admin socket (`state_scan`)."""

    kind = "admin"

    def __init__(self, socket_path: Path, timeout_s: float = 30.0) -> None:
        self._path = socket_path
        self._next_id = 0
        self.calls = 0
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout_s)
            self._sock.connect(str(socket_path))
        except OSError as exc:
            self._sock.close()
            raise SourceError(f"the daemon's admin socket {socket_path} does not answer: {exc}") from None
        self._decoder = FrameDecoder(_MAX_RESPONSE_BYTES)
        self._ready: list[bytes] = []

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        self._next_id += 1
        self.calls += 1
        try:
            self._sock.sendall(pack_message(Request(self._next_id, method, params).to_wire()))
            while not self._ready:
                data = self._sock.recv(1 << 20)
                if not data:
                    raise SourceError("the daemon closed its admin connection")
                self._ready.extend(self._decoder.feed(data))
            response = parse_response(unpack_message(self._ready.pop(0)))
        except (OSError, AdminProtocolError) as exc:
            raise SourceError(f"admin socket {self._path}: {exc}") from None
        if not response.ok:
            raise SourceError(f"{method}: {response.error}")
        return response.result

    def _page(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        params = {"prefix": prefix.hex() if prefix else "-", "limit": PAGE_ROWS}
        items = self._call("state_scan", params)["items"]
        rows = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in items]
        for key, _ in rows:
            if key[len(prefix) :].translate(None, ALPHABET):
                raise SourceError(f"state key {key!r} holds bytes this reader cannot page over")
        return rows

    def _scan_all(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        page = self._page(prefix)
        yield from page
        if len(page) >= PAGE_ROWS:
            yield from self._after(prefix, page[-1][0])

    def _after(self, prefix: bytes, last: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix` greater than `last`, in key order."""
        for c in ALPHABET:  # first the keys that extend `last` itself
            yield from self._scan_all(last + bytes([c]))
        for j in range(len(last) - 1, len(prefix) - 1, -1):
            for c in ALPHABET[ALPHABET.index(last[j]) + 1 :] if last[j] in ALPHABET else b"":
                yield from self._scan_all(last[:j] + bytes([c]))

    def get(self, key: bytes) -> bytes | None:
        for k, v in islice(self._scan_all(key), 1):
            return v if k == key else None
        return None

    def scan(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        rows = self._scan_all(prefix)
        return rows if limit is None else islice(rows, limit)

    def close(self) -> None:
        self._sock.close()


def daemon_running(db_path: Path) -> bool:
    """True when a daemon holds the data directory's lock file (hzp2p.storage.schema)."""
    lock = Path(str(db_path) + ".lock")
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def open_state(db_path: Path, admin_socket: Path) -> SqliteSnapshot | AdminState:
    """The node's committed state, read-only: through its daemon if one runs, else the file."""
    if daemon_running(db_path):
        return AdminState(admin_socket)
    return SqliteSnapshot(db_path)
