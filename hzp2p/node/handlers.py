"""The daemon's admin-socket handlers: one async function per admin method.

It owns what each method answers (shapes in hzp2p.admin.cli's docstring and
BRIEF section 3). Reads answer from local committed state; with
`linearizable: true` they first pass a ReadIndex barrier through the Raft core
(NotLeader becomes a `not_leader` error naming the leader, with a hint).
Writes go through hzp2p.node.submit. Handlers raise AdminError only; the
admin server turns anything else into an `internal` error and keeps running.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import trio

from hzp2p.admin.operations import OPERATIONS
from hzp2p.admin.protocol import MAX_SCAN, AdminError
from hzp2p.admin.server import AdminServer
from hzp2p.client import Client
from hzp2p.client import access_log as q_access_log
from hzp2p.client import subject_records as q_subject_records
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts import queries
from hzp2p.contracts.engine import recompute_digest
from hzp2p.crypto.records import RecordCryptoError, pseudonym
from hzp2p.ledger.tx import Transaction, TxError, decode_tx
from hzp2p.node import audit_views, paging, rotation
from hzp2p.node import receipts as node_receipts
from hzp2p.node.chain_audit import verify_local_chain
from hzp2p.node.content.handlers import DatasetHandlers
from hzp2p.node.driver import role_name
from hzp2p.node.enckeys import EncKeyError
from hzp2p.node.handover import HandoverError
from hzp2p.node.keys import KeyFileError
from hzp2p.node.submit import SubmitError
from hzp2p.node.view_handlers import ViewHandlers
from hzp2p.raft.errors import NotLeader
from hzp2p.storage import SyncStorage

SIGN_CHUNK = 32
"""submit_many signs this many items between checkpoints (~1 ms of work)."""


class Handlers(ViewHandlers, DatasetHandlers):
    """Binds the admin methods to one running Node (the read-only views are in
    hzp2p.node.view_handlers, the shared helpers in its HandlerBase; data sets in
    hzp2p.node.content.handlers)."""

    def register_all(self, server: AdminServer) -> None:
        """Serve every declared operation (hzp2p.admin.operations) with the method of the
        same name; an operation without one is a bug found at start-up, not at a request.
        An operation that answers a list is paged (hzp2p.node.paging)."""
        for op in OPERATIONS:
            handler = getattr(self, op.method, None)
            assert handler is not None, f"operation {op.method!r} has no handler"
            server.register(op.method, self._counted(op.method, paging.serve(op.method, handler)))

    def _counted(self, method: str, fn: Any) -> Any:
        async def run(params: Mapping[str, Any]) -> Any:
            self.node.metrics.admin_requests.labels(method=method).inc()
            return await fn(params)

        return run

    async def refused(self, params: Mapping[str, Any]) -> Any:
        """Refused transactions, newest first (hzp2p.node.audit_views.refused_page)."""
        try:
            after = (audit_views.parse_cursor(params["after"]) if params.get("after")
                     else None)
        except ValueError:
            raise AdminError("bad_request", "after must be a cursor as next_after gives it") \
                from None
        lo = int(params.get("from_ms", 0))
        hi = int(params.get("to_ms", audit_views.MAX_TIME_MS))
        limit = int(params.get("limit", 50))
        return await self.node.storage.call(
            lambda s: audit_views.refused_page(s, lo, hi, after, limit))

    async def receipt(self, params: Mapping[str, Any]) -> Any:
        """An offline receipt for a committed transaction (hzp2p.node.receipts)."""
        return await node_receipts.receipt(self.node.stack.storage, self.node.genesis, params)

    # ---------------------------------------------------------------- status
    async def status(self, params: Mapping[str, Any]) -> Any:
        n = self.node
        st = n.driver.core.status()
        return {
            "node_id": n.node_id,
            "role": role_name(st.role),
            "term": st.term,
            "leader_id": st.leader_id or None,
            "commit_index": st.commit,
            "applied_index": n.applier.applied_index,
            "height": n.applier.head.height,
            "head_hash": n.applier.head.block_hash.hex(),
            "peers": sorted(n.transport.connected_peers()),
            "mempool": len(n.mempool),
            "log_first_index": st.first_index,
            "snapshots": self._snapshot_counts(),
        }

    def _snapshot_counts(self) -> dict[str, Any]:
        sm = self.node.stack.snapshots
        return {"taken": sm.taken, "compactions": sm.compactions, "installed": sm.installed,
                "refused": sm.refused, "last_refusal": sm.last_refusal or None}

    async def peers(self, params: Mapping[str, Any]) -> Any:
        n = self.node
        st = n.driver.core.status()
        match = {p.node_id: p.match for p in st.progress}
        connected = n.transport.connected_peers()
        addresses = n.membership.addresses()
        out = []
        for nid in sorted(st.conf.members):
            if nid == n.node_id:
                continue
            out.append(
                {
                    "node_id": nid,
                    "address": addresses.get(nid, ""),
                    "role": "voter" if nid in st.conf.voters else "learner",
                    "connected": nid in connected,
                    "match_index": match.get(nid),
                }
            )
        return {"peers": out}

    async def members(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        rows = await self.node.storage.call(lambda s: queries.institution_list(s))
        return {"members": rows}

    async def block(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        height = params["height"]
        n = self.node
        if height == 0:
            g = n.genesis
            return {"height": 0, "hash": g.hash.hex(), "prev_hash": bytes(32).hex(),
                    "merkle_root": None, "proposer": None, "timestamp": g.timestamp_ms, "txs": []}
        rec = await n.storage.block_by_height(height)
        if rec is None:
            raise AdminError("not_found", f"no such block: height {height}",
                             hint=f"this node's height is {n.applier.head.height}")
        txs = await n.storage.block_txs(height)
        verdicts = [("committed" if t.status == "applied" else "rejected", t.reason) for t in txs]
        summary = queries.block_summary(rec.raw, verdicts if len(verdicts) == len(txs) else None)
        # the auditors' view (issue 19): signers, payload sizes, certificates
        return {**summary, **await n.storage.call(
            lambda s: audit_views.block_details(s, n.genesis, height))}

    async def tx(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        try:
            tx_hash = bytes.fromhex(params["tx_hash"])
        except ValueError:
            raise AdminError("bad_request", "tx_hash must be hex") from None
        if len(tx_hash) != 32:
            raise AdminError("bad_request", "tx_hash must be 32 bytes (64 hex digits)")
        rec = await self.node.submit.lookup(tx_hash)
        if rec is not None:
            # the auditors' view (issue 19): signer, payload sizes, certificate
            genesis = self.node.genesis
            return {**rec, **await self.node.storage.call(
                lambda s: audit_views.tx_details(s, genesis, tx_hash))}
        n = self.node
        if tx_hash in n.mempool or tx_hash in n.producer.inflight or n.submit.is_waiting(tx_hash):
            return {"tx_hash": tx_hash.hex(), "status": "pending", "height": None, "index": None,
                    "type": None, "reason": None}
        refused = await n.submit.refusal(tx_hash)  # refused before it reached a block
        if refused is not None:
            return refused
        raise AdminError("not_found", f"unknown transaction {tx_hash.hex()}")

    async def verify(self, params: Mapping[str, Any]) -> Any:
        """From the genesis, or from this node's snapshot if it installed one and lacks the
        blocks below it (hzp2p.node.chain_audit)."""
        n = self.node
        result = await verify_local_chain(n.storage, n.genesis, n.applier.head,
                                          refresh_head=lambda: n.applier.head)
        if result["ok"] and params.get("integrity"):
            problems = await n.storage.integrity_check()
            digest = await n.storage.call(lambda s: recompute_digest(s))
            if digest != n.applier.head.state_digest:
                problems.append("stored state does not match the chain's state digest")
            if problems:
                result["ok"], result["reason"] = False, "; ".join(problems)
        return result

    async def metrics(self, params: Mapping[str, Any]) -> Any:
        return {"text": self.node.metrics.render()}

    async def state_scan(self, params: Mapping[str, Any]) -> Any:
        """Raw committed state under a prefix (hex in, hex out): what a client library needs
        to open records it holds keys for (the values are on every member's disk anyway)."""
        try:
            prefix = bytes.fromhex(params["prefix"]) if params["prefix"] != "-" else b""
        except ValueError:
            raise AdminError("bad_request", "prefix must be hex (or '-' for everything)") from None
        limit = min(int(params.get("limit", MAX_SCAN)), MAX_SCAN)
        after = bytes.fromhex(params["after"]) if "after" in params else None

        def scan(s: SyncStorage) -> list[tuple[bytes, bytes]]:
            out: list[tuple[bytes, bytes]] = []
            for k, v in s.scan(prefix):  # keys in order: skip to the cursor, then take a page
                if after is not None and k <= after:
                    continue
                out.append((k, v))
                if len(out) >= limit:
                    break
            return out

        rows = await self.node.storage.call(scan)
        more = len(rows) == limit
        return {"items": [[k.hex(), v.hex()] for k, v in rows],
                "next": rows[-1][0].hex() if more else None}

    # ---------------------------------------------------------------- writes
    async def submit(self, params: Mapping[str, Any]) -> Any:
        svc = self.node.submit
        try:
            tx = svc.sign(params["type"], params["payload"], params.get("idempotency_key"))
        except SubmitError as exc:
            raise AdminError("bad_request", f"submit: {exc}") from None
        return await svc.submit(tx, self._wait(params))

    async def submit_many(self, params: Mapping[str, Any]) -> Any:
        """Many submits in one request (items already checked against the operation's parameters): each
        signed as `submit` signs it; an item that cannot be signed is rejected on its own."""
        svc = self.node.submit
        txs: list[Transaction | str] = []
        for n, item in enumerate(params["items"]):
            if n and n % SIGN_CHUNK == 0:
                # Let the event loop run (Raft messages, ticks, other requests) between
                # chunks: 16 requests of 1,000 signatures would otherwise hold it for
                # hundreds of ms on a busy machine, long enough to cost a leader its lease.
                await trio.lowlevel.checkpoint()
            try:
                txs.append(svc.sign(item["type"], item["payload"], item.get("idempotency_key")))
            except SubmitError as exc:
                txs.append(f"submit: {exc}")
        receipts = await svc.submit_many(txs, self._wait(params))
        counts = {"committed": 0, "rejected": 0, "pending": 0}
        for r in receipts:
            counts[str(r["status"])] += 1
        return {"receipts": receipts, **counts}

    # ---------------------------------------------------------------- records, from fields
    async def _sealing_client(self) -> Client:
        """A client holding this institution's keys (its key store, hzp2p.node.enckeys), to
        seal records to its current encryption key and the subject."""
        n = self.node
        me = n.node_id
        client = Client(n.signing_key, n.genesis.chain_id, me)
        try:
            await n.storage.call(lambda s: n.stack.enc_keys.configure(client, s, me))
        except RecordCryptoError as exc:
            raise AdminError("rejected", str(exc),
                             hint="restore the key file into <data_dir>/enckeys") from None
        return client

    async def _submit_record(self, tx_type: str, payload: dict[str, Any], record_id: str,
                             params: Mapping[str, Any]) -> Any:
        svc = self.node.submit
        try:
            tx = svc.sign(tx_type, payload, None)
        except SubmitError as exc:
            raise AdminError("bad_request", f"{tx_type}: {exc}") from None
        return {**await svc.submit(tx, self._wait(params)), "record_id": record_id}

    @staticmethod
    def _record_id(params: Mapping[str, Any], prefix: str) -> str:
        return str(params.get("record_id") or f"{prefix}-{secrets.token_hex(8)}")

    async def record(self, params: Mapping[str, Any]) -> Any:
        """record.write (diagnosis by a hospital, lab_result by a lab) from plain fields: the
        fields are encrypted here, sealed to the subject and this institution, and only the
        ciphertext leaves the node."""
        client = await self._sealing_client()
        rid, key = self._record_id(params, params["record_type"]), bytes.fromhex(params["subject_key"])
        env = client.seal_record(rid, key, params["record_type"], params["fields"])
        payload = {"subject": pseudonym(key), "record_type": params["record_type"], "record": env}
        return await self._submit_record("record.write", payload, rid, params)

    async def vaccinate(self, params: Mapping[str, Any]) -> Any:
        client = await self._sealing_client()
        rid, key = self._record_id(params, "vax"), bytes.fromhex(params["subject_key"])
        payload = {
            "subject": pseudonym(key), "lot_id": params["lot"], "dose": params["dose"],
            "administered_ms": params.get("administered_ms", self._now_ms()),
            "record": client.seal_record(rid, key, "vaccination", params["fields"]),
        }
        return await self._submit_record("vaccination.record", payload, rid, params)

    async def lab_result(self, params: Mapping[str, Any]) -> Any:
        client = await self._sealing_client()
        key = bytes.fromhex(params["subject_key"])
        payload: dict[str, Any] = {
            "subject": pseudonym(key), "test_id": params["test_id"], "result": params["result"],
            "sample_ms": params["sample_ms"],
        }
        rid = ""
        if params.get("fields"):
            rid = self._record_id(params, "lab")
            payload["record"] = client.seal_record(rid, key, "lab_result", params["fields"])
        return await self._submit_record("lab.result", payload, rid, params)

    async def share(self, params: Mapping[str, Any]) -> Any:
        """Hand a record key this institution holds to a grantee under the subject's grant."""
        try:
            return await self.node.stack.handover.share_now(
                params["record_id"], params["to"], params["grant_id"], params["purpose"],
                self._wait(params))
        except HandoverError as exc:
            raise AdminError("rejected", f"share: {exc}") from None

    async def emergency(self, params: Mapping[str, Any]) -> Any:
        """Honour an authority's open emergency request on a record this institution holds."""
        try:
            return await self.node.stack.handover.fulfil_emergency(
                params["record_id"], params["to"], self._wait(params))
        except HandoverError as exc:
            raise AdminError("rejected", f"emergency fulfil: {exc}") from None

    async def readings(self, params: Mapping[str, Any]) -> Any:
        """A sensor's signed batch (its signature is checked by the contract), uploaded as
        this node's institution: the same as submit with type coldchain.readings."""
        return await self.submit({"type": "coldchain.readings", **params})

    async def submit_raw(self, params: Mapping[str, Any]) -> Any:
        """A transaction signed elsewhere (a citizen's app, another institution's tool)."""
        try:
            tx = decode_tx(bytes.fromhex(params["tx"]))
            tx.verify()
        except (TxError, ValueError) as exc:
            raise AdminError("bad_request", f"submit_raw: {exc}") from None
        return await self.node.submit.submit(tx, self._wait(params))

    async def transfer_leader(self, params: Mapping[str, Any]) -> Any:
        target = params["node_id"]
        try:
            self.node.driver.transfer_leadership(target)
        except NotLeader as exc:
            raise AdminError("not_leader", str(exc), hint="run transfer-leader on the leader",
                             leader_id=exc.leader_id or None) from None
        except ValueError as exc:
            raise AdminError("rejected", str(exc)) from None
        return {"target": target}

    async def _governance(self, payload: dict[str, Any], params: Mapping[str, Any]) -> Any:
        svc = self.node.submit
        try:
            tx = svc.sign("member.propose", payload, None)
        except SubmitError as exc:
            raise AdminError("bad_request", str(exc)) from None
        receipt = dict(await svc.submit(tx, self._wait(params)))
        if receipt.get("status") == "committed":
            # The id the other authorities vote on (`submit member.vote`).
            height, me = receipt.get("height"), self.node.node_id
            props = await self.node.storage.call(lambda s: queries.proposals(s))
            ids = [p["id"] for p in props
                   if p["proposed_height"] == height and p["proposer"] == me]
            receipt["proposal_id"] = max(ids) if ids else None
        return receipt

    async def proposals(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        return {"proposals": await self.node.storage.call(queries.proposals)}

    async def vote(self, params: Mapping[str, Any]) -> Any:
        svc = self.node.submit
        payload = {"proposal_id": params["proposal_id"], "approve": params["approve"]}
        try:
            tx = svc.sign("member.vote", payload, None)
        except SubmitError as exc:
            raise AdminError("bad_request", str(exc)) from None
        receipt = dict(await svc.submit(tx, self._wait(params)))
        pid = params["proposal_id"]
        receipt["proposal"] = await self.node.storage.call(
            lambda s: queries.proposal_status(s, pid))
        return receipt

    async def add_learner(self, params: Mapping[str, Any]) -> Any:
        payload = {
            "action": "admit",
            "name": params["name"],
            "roles": list(params["roles"]),
            "signing_key": params["signing_key"],
            "node_key": params["node_key"],
            "address": params["address"],
        }
        receipt = dict(await self._governance(payload, params))
        key = bytes.fromhex(params["signing_key"])

        def lookup(s: SyncStorage) -> int | None:
            from hzp2p.contracts.members import institution_by_key

            inst = institution_by_key(s, key)
            return None if inst is None else inst.inst_id

        receipt["node_id"] = await self.node.storage.call(lookup)
        return receipt

    async def rotate_keys(self, params: Mapping[str, Any]) -> Any:
        """Key rotation (hzp2p.node.rotation): `prepare` writes this node's next keys and
        answers their public halves; with `inst_id` (or `prepare` and `propose`: this
        node's own) and the keys, propose the rotation as this node's institution."""
        n, out = self.node, {}
        if params.get("prepare"):
            try:
                sk, nk = rotation.prepare(n.keys)
            except (OSError, KeyFileError) as exc:
                raise AdminError("unavailable", f"cannot write the next keys: {exc}") from None
            out = {"signing_key": sk.hex(), "node_key": nk.hex(), "inst_id": n.node_id,
                   "files": [str(rotation.next_path(p))
                             for p in (n.keys.signing_path, n.keys.node_path)]}
        target = params.get("inst_id") or (n.node_id if params.get("propose") else None)
        if target is None:
            return out
        sk_hex = params.get("signing_key") or out.get("signing_key")
        nk_hex = params.get("node_key") or out.get("node_key")
        if not sk_hex or not nk_hex:
            raise AdminError("bad_request", "give signing_key and node_key (or prepare)")
        payload = {"action": "rotate_keys", "inst_id": target, "signing_key": sk_hex,
                   "node_key": nk_hex}
        return {**out, **dict(await self._governance(payload, params)), "inst_id": target}

    async def promote(self, params: Mapping[str, Any]) -> Any:
        return await self._governance({"action": "promote", "inst_id": params["node_id"]}, params)

    async def remove(self, params: Mapping[str, Any]) -> Any:
        return await self._governance({"action": "remove", "inst_id": params["node_id"]}, params)

    # ---------------------------------------------------------------- domain queries
    async def subject_records(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        subject = params["subject"]
        rows = await self._query(lambda s: q_subject_records(s, subject))
        return {"subject": subject, "records": dq.jsonable(rows)}

    async def lot_history(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        lot = params["lot"]
        rows = await self._query(lambda s: {"lot": dq.lot(s, lot), "events": dq.lot_events(s, lot)})
        if rows["lot"] is None and not rows["events"]:
            raise AdminError("not_found", f"no lot {lot!r}")
        return {"lot": lot, "record": dq.jsonable(rows["lot"]), "events": dq.jsonable(rows["events"])}

    async def access_log(self, params: Mapping[str, Any]) -> Any:
        await self._barrier(params)
        subject = params["subject"]
        rows = await self._query(lambda s: q_access_log(s, subject))
        return {"subject": subject, "entries": dq.jsonable(rows)}

    # ---------------------------------------------------------------- encryption keys
    async def enc_key(self, params: Mapping[str, Any]) -> Any:
        """The institution's encryption keys (ids only, never key material): `status`, or
        `rotate` (register a new key, re-wrap the records held, forget the old keys)."""
        rot = self.node.stack.rotator
        if params["action"] == "status":
            return await rot.status()
        try:
            return await rot.rotate(self._wait(params, 15.0))
        except EncKeyError as exc:
            raise AdminError("rejected", f"enc-key rotate: {exc}") from None
