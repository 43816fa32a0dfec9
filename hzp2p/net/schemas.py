"""Wire schemas: the Raft messages and the transport's own application messages.

Kind ids are part of the protocol (PROTOCOL_VERSION 1) and never reused:
1-9 are the Raft messages in hzp2p.raft.messages.MESSAGE_TYPES order, 16-31
are hzp2p.net's application messages (peer records, opaque blobs, forwarded
submits and their receipts, forwarded read-index requests and their answers, voters'
block attestations, data-set content requests and chunks), and the daemon registers its own from
FIRST_APP_KIND (64) with `default_registry().register(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from hzp2p.net.codec import (
    BOOL,
    NODE_ID,
    FieldType,
    Invalid,
    MessageRegistry,
    binary,
    int_enum,
    integer,
    node_set,
    sequence,
    struct,
    text,
    uint,
)
from hzp2p.raft import messages as m
from hzp2p.raft.types import ConfState, Entry, EntryKind, SnapshotMeta
from hzp2p.raft.validate import entries_follow

MAX_ENTRIES_PER_MSG: Final = 1 << 16
MAX_ENTRY_BYTES: Final = 16 << 20
MAX_CONTEXT_BYTES: Final = 4096
MAX_SNAPSHOT_CHUNK_BYTES: Final = 64 << 20
MAX_MEMBERS: Final = 4096
MAX_PEER_RECORDS: Final = 1024
MAX_HOST_CHARS: Final = 253
ED25519_KEY_BYTES: Final = 32
ED25519_SIG_BYTES: Final = 64
MAX_READ_CTX_BYTES: Final = 64


# --- messages owned by hzp2p.net -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """Where member `node_id` listens, signed by that member's node key (see discovery.py)."""

    node_id: int
    node_key: bytes
    host: str
    port: int
    seq: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class PeerRecords:
    """Gossip of signed peer records; consumed by the transport, never delivered to the app."""

    records: tuple[PeerRecord, ...]


@dataclass(frozen=True, slots=True)
class Blob:
    """An opaque application payload on a named topic (the daemon decodes `data`)."""

    topic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ForwardSubmit:
    """A follower forwards a client's signed transaction to the leader; answered by SubmitReceipt."""

    request_id: int
    tx: bytes
    wait_ms: int = 0


@dataclass(frozen=True, slots=True)
class SubmitReceipt:
    """The leader's answer to ForwardSubmit (status: committed | rejected | pending)."""

    request_id: int
    tx_hash: bytes
    status: str
    height: int = 0
    index: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower asks the leader for a read index (like etcd's forwarded MsgReadIndex).

    `ctx` is the follower's own request id (1..MAX_READ_CTX_BYTES bytes), echoed in the
    ReadIndexResponse.
    """

    ctx: bytes


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    """The leader's answer to ReadIndexRequest: `ok` with the read `index` (the commit index
    it confirmed leadership at), or not ok (index 0) when it could not confirm in time."""

    ctx: bytes
    index: int = 0
    ok: bool = False


@dataclass(frozen=True, slots=True)
class Attestation:
    """A voter's signature over its statement about block `height` (hzp2p.ledger.certificate):
    `statement` is the statement's digest, `signature` the institution key's."""

    height: int
    statement: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Attestations:
    """A voter's attestations of blocks it applied, sent to the leader (hzp2p.node.attest)."""

    items: tuple[Attestation, ...]


MAX_ATTESTATIONS_PER_MSG: Final = 1024


@dataclass(frozen=True, slots=True)
class ContentRequest:
    """Ask a peer for `count` chunks of content `content_hash` from chunk `first` (-1: its
    manifest), for data set `dataset_id` version `version` (hzp2p.node.content: the
    server checks the asker may have it). Answered by one ContentChunk per chunk."""

    request_id: int
    content_hash: bytes
    dataset_id: str
    version: int
    first: int
    count: int


@dataclass(frozen=True, slots=True)
class ContentChunk:
    """One chunk (or the manifest, index -1) of content `content_hash`; `status` ok, or
    missing / refused / busy with a reason and no data."""

    request_id: int
    content_hash: bytes
    index: int
    status: str
    data: bytes = b""
    reason: str = ""


MAX_CONTENT_CHUNKS_PER_REQUEST: Final = 64
MAX_CONTENT_CHUNK_BYTES: Final = 32 << 20


# --- nested Raft types -----------------------------------------------------------------------

U: Final = uint()
ENTRY: Final = struct(Entry, [U, U, int_enum(EntryKind), binary(MAX_ENTRY_BYTES)])


def _check_conf(args: list[Any]) -> None:
    if args[0] & args[1]:
        raise Invalid("a node is both voter and learner")


CONF_STATE: Final = struct(ConfState, [node_set(MAX_MEMBERS), node_set(MAX_MEMBERS)], _check_conf)
SNAPSHOT_META: Final = struct(SnapshotMeta, [U, U, CONF_STATE])
CONTEXT: Final = binary(MAX_CONTEXT_BYTES)


def _check_append(msg: m.AppendEntries) -> None:
    # The entries were just built by the ENTRY decoder (ints checked); the order checks
    # run in C (hzp2p.raft.validate.entries_follow), not in a Python loop per entry.
    if not entries_follow(msg.entries, msg.prev_log_index, msg.prev_log_term, msg.term):
        raise Invalid("entries must be contiguous after prev_log_index, terms non-decreasing "
                      "from prev_log_term and <= term")


def _check_snapshot(msg: m.InstallSnapshot) -> None:
    if msg.meta.term > msg.term:
        raise Invalid("snapshot term above message term")


def _check_peer_record(args: list[Any]) -> None:
    if not args[2]:
        raise Invalid("empty host")


PEER_RECORD: Final = struct(
    PeerRecord,
    [
        NODE_ID,
        binary(ED25519_KEY_BYTES, ED25519_KEY_BYTES),
        text(MAX_HOST_CHARS),
        integer(1, 65535),
        U,
        binary(ED25519_SIG_BYTES, ED25519_SIG_BYTES),
    ],
    _check_peer_record,
)


def _check_read_index_response(msg: ReadIndexResponse) -> None:
    if not msg.ok and msg.index:
        raise Invalid("a refused read index carries index 0")


ATTESTATION: Final = struct(
    Attestation, [U, binary(32, 32), binary(ED25519_SIG_BYTES, ED25519_SIG_BYTES)]
)


def raft_schemas() -> list[tuple[int, type[Any], list[FieldType], Any]]:
    """(kind, class, field types, check) for every Raft message."""
    T, S, D = U, NODE_ID, NODE_ID  # term, src, dst
    return [
        (1, m.RequestVote, [T, S, D, U, U, BOOL, BOOL], None),
        (2, m.RequestVoteResponse, [T, S, D, BOOL, BOOL], None),
        (
            3,
            m.AppendEntries,
            [T, S, D, U, U, sequence(ENTRY, MAX_ENTRIES_PER_MSG, shared=True), U],
            _check_append,
        ),
        (4, m.AppendEntriesResponse, [T, S, D, BOOL, U, U, U, U], None),
        (5, m.Heartbeat, [T, S, D, U, CONTEXT], None),
        (6, m.HeartbeatResponse, [T, S, D, CONTEXT], None),
        (7, m.TimeoutNow, [T, S, D], None),
        (
            8,
            m.InstallSnapshot,
            [T, S, D, SNAPSHOT_META, U, binary(MAX_SNAPSHOT_CHUNK_BYTES), BOOL],
            _check_snapshot,
        ),
        (9, m.InstallSnapshotResponse, [T, S, D, U, U, U, BOOL], None),
    ]


def net_schemas() -> list[tuple[int, type[Any], list[FieldType], Any]]:
    return [
        (16, PeerRecords, [sequence(PEER_RECORD, MAX_PEER_RECORDS)], None),
        (17, Blob, [text(64), binary(MAX_SNAPSHOT_CHUNK_BYTES)], None),
        (18, ForwardSubmit, [U, binary(MAX_ENTRY_BYTES), integer(0, 3_600_000)], None),
        (
            19,
            SubmitReceipt,
            [U, binary(64), text(16, ("committed", "rejected", "pending")), U, U, text(1024)],
            None,
        ),
        (20, ReadIndexRequest, [binary(MAX_READ_CTX_BYTES, 1)], None),
        (
            21,
            ReadIndexResponse,
            [binary(MAX_READ_CTX_BYTES, 1), U, BOOL],
            _check_read_index_response,
        ),
        (22, Attestations, [sequence(ATTESTATION, MAX_ATTESTATIONS_PER_MSG)], None),
        (
            23,
            ContentRequest,
            [U, binary(32, 32), text(128), integer(1, 2**31), integer(-1, 2**31),
             integer(1, MAX_CONTENT_CHUNKS_PER_REQUEST)],
            None,
        ),
        (
            24,
            ContentChunk,
            [U, binary(32, 32), integer(-1, 2**31),
             text(16, ("ok", "missing", "refused", "busy")),
             binary(MAX_CONTENT_CHUNK_BYTES), text(256)],
            None,
        ),
    ]


def default_registry() -> MessageRegistry:
    """A fresh registry with the Raft messages and hzp2p.net's own kinds; add the daemon's."""
    reg = MessageRegistry()
    for kind, cls, fields, check in (*raft_schemas(), *net_schemas()):
        reg.register(kind, cls, fields, check=check)
    return reg
