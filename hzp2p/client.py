"""Client library: build and sign every domain transaction, encrypt and read records.

A `Client` holds one signing key: an institution's (with its `inst_id`) or a
citizen's (`inst_id=None`). Its methods return signed `Transaction`s ready to
submit; the `*_payload` functions build the bare payload dicts (handy for
`hzp2p admin submit TYPE --payload`). Reading goes through a StateReader (a
node's committed state; the daemon exposes it over its admin socket): a
holder opens its sealed record key, checks it against the record's key
commitment, and decrypts. The query helpers at the bottom answer the
questions users ask: a subject's own records, a lot's custody and temperature
history, a subject's access log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import nacl.public
import nacl.signing

from hzp2p.contracts import codelife, exposure, members, rulebook
from hzp2p.contracts import domain_queries as dq
from hzp2p.contracts.coldchain import readings_message
from hzp2p.contracts.exposure import (
    VenueQR,
    VenueQRError,
    make_venue_qr,
    parse_venue_qr,
    verify_venue_qr,
)
from hzp2p.contracts.healthcode_payloads import (
    CHECKIN_PLAINTEXT_BYTES,
    appeal_payload,
    checkin_fields,
    exposure_publish_payload,
    new_checkin_id,
    recovery_payload,
    resolve_payload,
    rules_propose_payload,
    venue_register_payload,
)
from hzp2p.contracts.privacy import erase_request_message
from hzp2p.crypto.records import (
    SUBJECT_HOLDER,
    RecordCryptoError,
    decrypt_record,
    encrypt_record,
    encryption_private_key,
    encryption_public_key,
    institution_holder,
    open_sealed_key,
    pseudonym,
    seal_key_to,
)
from hzp2p.ledger.tx import MAX_WINDOW_MS, Transaction

__all__ = [  # re-exported: the client library is the one import an app needs
    "CHECKIN_PLAINTEXT_BYTES", "VenueQR", "VenueQRError", "appeal_payload",
    "exposure_publish_payload", "make_venue_qr", "parse_venue_qr", "recovery_payload",
    "resolve_payload", "rules_propose_payload", "venue_register_payload", "verify_venue_qr",
]

DEFAULT_VALIDITY_MS = 3_600_000
CLOCK_SKEW_MS = 60_000

# ---------------------------------------------------------------- payload builders


def lab_result_payload(
    subject: str, test_id: str, result: str, sample_ms: int, record: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "subject": subject,
        "test_id": test_id,
        "result": result,
        "sample_ms": sample_ms,
    }
    if record is not None:
        p["record"] = dict(record)
    return p


def healthcode_set_payload(
    subject: str, colour: str, reason: str, override: bool = False
) -> dict[str, Any]:
    return {"subject": subject, "colour": colour, "reason": reason, "override": override}


def lot_register_payload(
    lot_id: str,
    product: str,
    quantity: int,
    expiry_ms: int,
    temp_min_centi_c: int,
    temp_max_centi_c: int,
) -> dict[str, Any]:
    return {
        "lot_id": lot_id,
        "product": product,
        "quantity": quantity,
        "expiry_ms": expiry_ms,
        "temp_min_centi_c": temp_min_centi_c,
        "temp_max_centi_c": temp_max_centi_c,
    }


def lot_transfer_payload(lot_id: str, to: int) -> dict[str, Any]:
    return {"lot_id": lot_id, "to": to}


def lot_recall_payload(lot_id: str, reason: str) -> dict[str, Any]:
    return {"lot_id": lot_id, "reason": reason}


def sensor_register_payload(sensor_id: str, verify_key: bytes) -> dict[str, Any]:
    return {"sensor_id": sensor_id, "verify_key": verify_key}


def sensor_revoke_payload(sensor_id: str) -> dict[str, Any]:
    return {"sensor_id": sensor_id}


def lot_release_payload(lot_id: str, reason: str) -> dict[str, Any]:
    return {"lot_id": lot_id, "reason": reason}


def coldchain_readings_payload(
    sensor_key: nacl.signing.SigningKey,
    sensor_id: str,
    lot_id: str,
    readings: Sequence[tuple[int, int]],
) -> dict[str, Any]:
    """A batch of (t_ms, temp_centi_c) readings signed by the sensor's own key."""
    rows = [(sensor_id, t, temp) for t, temp in readings]
    sig = bytes(sensor_key.sign(readings_message(lot_id, rows)).signature)
    return {
        "lot_id": lot_id,
        "sensor_id": sensor_id,
        "signature": sig,
        "readings": [{"sensor_id": s, "t_ms": t, "temp_centi_c": c} for s, t, c in rows],
    }


def consent_grant_payload(
    grant_id: str, grantee: int, record_types: Sequence[str], purpose: str, expiry_ms: int
) -> dict[str, Any]:
    return {
        "grant_id": grant_id,
        "grantee": grantee,
        "record_types": sorted(record_types),
        "purpose": purpose,
        "expiry_ms": expiry_ms,
    }


def erase_request(subject_key: nacl.signing.SigningKey, record_id: str) -> dict[str, Any]:
    """A subject's signed request that a record's writer erase it (for record.erase)."""
    sig = bytes(subject_key.sign(erase_request_message(record_id)).signature)
    return {"subject_key": bytes(subject_key.verify_key), "signature": sig}


# ---------------------------------------------------------------- the client


class Client:
    """Signs transactions with one key; opens the records that key holds."""

    def __init__(
        self,
        key: nacl.signing.SigningKey,
        chain_id: str,
        inst_id: int | None = None,
        *,
        nonce_start: int | None = None,
        validity_ms: int = DEFAULT_VALIDITY_MS,
        enc_keys: Mapping[int, nacl.public.PrivateKey] | None = None,
        enc_key_id: int = 0,
    ) -> None:
        """`enc_keys`: an institution's registered X25519 private keys by key id (from its
        key store; never on chain); `enc_key_id`: the current one (0 = derived key)."""
        assert 0 < validity_ms + CLOCK_SKEW_MS <= MAX_WINDOW_MS
        self.key = key
        self.chain_id = chain_id
        self.inst_id = inst_id
        self.validity_ms = validity_ms
        self._nonce = time.time_ns() if nonce_start is None else nonce_start
        self.enc_keys: dict[int, nacl.public.PrivateKey] = {0: encryption_private_key(key)}
        self.enc_keys.update(enc_keys or {})
        assert enc_key_id in self.enc_keys, "the current encryption key must be held"
        self.enc_key_id = enc_key_id

    @property
    def verify_key(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def pseudonym(self) -> str:
        """This key's subject pseudonym (meaningful for a citizen's key)."""
        return pseudonym(self.verify_key)

    @property
    def holder(self) -> str:
        """This key's name in a record's sealed-key map."""
        return SUBJECT_HOLDER if self.inst_id is None else institution_holder(self.inst_id)

    def tx(self, tx_type: str, payload: Mapping[str, Any], now_ms: int) -> Transaction:
        """Sign `payload` as a `tx_type` transaction valid from about `now_ms`."""
        self._nonce = (self._nonce + 1) % 2**64
        return Transaction.create(
            self.key,
            self.chain_id,
            tx_type,
            dict(payload),
            nonce=self._nonce,
            valid_from_ms=max(0, now_ms - CLOCK_SKEW_MS),
            valid_until_ms=now_ms + self.validity_ms,
        )

    # ------------------------------------------------ records (institutions)

    def _require_inst(self) -> int:
        if self.inst_id is None:
            raise ValueError("only an institution's client writes records")
        return self.inst_id

    def seal_record(
        self,
        record_id: str,
        subject_verify_key: bytes,
        record_type: str,
        fields: Mapping[str, Any],
    ) -> dict[str, Any]:
        """An encrypted record envelope sealed to the subject and to this institution."""
        inst_id = self._require_inst()
        env = encrypt_record(
            record_id,
            pseudonym(subject_verify_key),
            record_type,
            dict(fields),
            {
                SUBJECT_HOLDER: encryption_public_key(subject_verify_key),
                institution_holder(inst_id): self.enc_public_key,
            },
        )
        return {"record_id": record_id, **env.to_payload()}

    def vaccination_record(
        self,
        now_ms: int,
        *,
        record_id: str,
        subject_verify_key: bytes,
        lot_id: str,
        dose: int,
        administered_ms: int,
        fields: Mapping[str, Any],
    ) -> Transaction:
        return self.tx(
            "vaccination.record",
            {
                "subject": pseudonym(subject_verify_key),
                "lot_id": lot_id,
                "dose": dose,
                "administered_ms": administered_ms,
                "record": self.seal_record(record_id, subject_verify_key, "vaccination", fields),
            },
            now_ms,
        )

    def lab_result(
        self,
        now_ms: int,
        *,
        subject: str,
        test_id: str,
        result: str,
        sample_ms: int,
        record_id: str | None = None,
        subject_verify_key: bytes | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> Transaction:
        """A lab result; with record_id/subject_verify_key/fields it also carries an
        encrypted record of type lab_result."""
        record = None
        if record_id is not None:
            if subject_verify_key is None or fields is None:
                raise ValueError("an encrypted lab record needs subject_verify_key and fields")
            if pseudonym(subject_verify_key) != subject:
                raise ValueError("subject_verify_key is not the key of `subject`")
            record = self.seal_record(record_id, subject_verify_key, "lab_result", fields)
        return self.tx(
            "lab.result", lab_result_payload(subject, test_id, result, sample_ms, record), now_ms
        )

    def record_write(
        self,
        now_ms: int,
        *,
        record_id: str,
        subject_verify_key: bytes,
        record_type: str,
        fields: Mapping[str, Any],
    ) -> Transaction:
        return self.tx(
            "record.write",
            {
                "subject": pseudonym(subject_verify_key),
                "record_type": record_type,
                "record": self.seal_record(record_id, subject_verify_key, record_type, fields),
            },
            now_ms,
        )

    def record_key(self, state: dq.StateReader, record_id: str) -> bytes:
        """This key's copy of a record key, checked against the key commitment."""
        rec = dq.record(state, record_id)
        if rec is None:
            raise RecordCryptoError(f"unknown record {record_id!r}")
        if rec["erased"] is not None:
            raise RecordCryptoError(f"record {record_id!r} was erased")
        if self.inst_id is None and rec["subject"] != self.pseudonym:
            raise RecordCryptoError(f"this key holds no key of record {record_id!r}")
        entry = rec["holders"].get(self.holder)
        if entry is None:
            raise RecordCryptoError(f"{self.holder} holds no key of record {record_id!r}")
        key_id = int(entry.get("key_id", 0))
        # The stamped key first; then any other key still held (a record written just
        # before this client's enckey.set committed is stamped with the previous id).
        order = [key_id, *sorted(k for k in self.enc_keys if k != key_id)]
        for kid in order:
            if kid not in self.enc_keys:
                continue
            try:
                return open_sealed_key(
                    entry["sealed_key"], self.enc_keys[kid], rec["key_commitment"]
                )
            except RecordCryptoError:
                continue
        raise RecordCryptoError(
            f"no encryption key held by this client opens record {record_id!r} "
            f"(sealed to key {key_id}; destroyed?)"
        )

    def read_record(self, state: dq.StateReader, record_id: str) -> dict[str, Any]:
        """Decrypt a record this key holds (raises RecordCryptoError otherwise)."""
        key = self.record_key(state, record_id)
        rec = dq.record(state, record_id)
        assert rec is not None
        return decrypt_record(key, rec["ciphertext"], rec["record_id"], rec["subject"], rec["type"])

    def _sealed_for(self, state: dq.StateReader, record_id: str, grantee: int) -> bytes:
        return seal_key_to(self.record_key(state, record_id), recipient_key(state, grantee))

    # ------------------------------------------------ encryption keys (institutions)

    @property
    def enc_public_key(self) -> bytes:
        """The X25519 public key records are sealed to for this client."""
        return bytes(self.enc_keys[self.enc_key_id].public_key)

    def rotate_enc_key(self, state: dq.StateReader, now_ms: int) -> Transaction:
        """A fresh X25519 key and its enckey.set; the new key is current from now on
        (submit it and wait for the commit before writing new records)."""
        inst_id = self._require_inst()
        reg = dq.enc_key(state, inst_id)
        key_id = 1 if reg is None else int(reg["key_id"]) + 1
        priv = nacl.public.PrivateKey.generate()
        self.enc_keys[key_id] = priv
        self.enc_key_id = key_id
        return self.tx(
            "enckey.set", {"key_id": key_id, "public_key": bytes(priv.public_key)}, now_ms
        )

    def stale_records(self, state: dq.StateReader) -> list[str]:
        """Live records this institution holds under a key other than its current one."""
        inst_id = self._require_inst()
        out = []
        for rid in dq.held_records(state, inst_id):
            rec = dq.record(state, rid)
            assert rec is not None
            if rec["holders"][self.holder].get("key_id", 0) != self.enc_key_id:
                out.append(rid)
        return out

    def rewrap(self, state: dq.StateReader, now_ms: int, *, record_id: str) -> Transaction:
        """access.rewrap: reseal this holder's copy of a record key to its current key."""
        sealed = seal_key_to(self.record_key(state, record_id), self.enc_public_key)
        return self.tx("access.rewrap", {"record_id": record_id, "sealed_key": sealed}, now_ms)

    def forget_enc_key(self, key_id: int) -> None:
        """Destroy a retired private key (after rewrapping every live record held under it):
        the sealed keys of records erased meanwhile, still in block history, die with it."""
        if key_id == 0:
            raise ValueError("key 0 is derived from the signing key; rotate that via governance")
        if key_id == self.enc_key_id:
            raise ValueError("cannot forget the current encryption key")
        del self.enc_keys[key_id]

    def share(
        self,
        state: dq.StateReader,
        now_ms: int,
        *,
        record_id: str,
        grantee: int,
        grant_id: str,
        purpose: str,
    ) -> Transaction:
        """access.share under a subject's grant: reseal this holder's key to the grantee."""
        return self.tx(
            "access.share",
            {
                "record_id": record_id,
                "grantee": grantee,
                "basis": "grant",
                "grant_id": grant_id,
                "purpose": purpose,
                "sealed_key": self._sealed_for(state, record_id, grantee),
            },
            now_ms,
        )

    def fulfil_emergency(
        self, state: dq.StateReader, now_ms: int, *, record_id: str, authority: int
    ) -> Transaction:
        """access.share honouring an authority's open emergency authorisation."""
        return self.tx(
            "access.share",
            {
                "record_id": record_id,
                "grantee": authority,
                "basis": "emergency",
                "sealed_key": self._sealed_for(state, record_id, authority),
            },
            now_ms,
        )

    def emergency(self, now_ms: int, *, record_id: str, reason: str) -> Transaction:
        return self.tx("access.emergency", {"record_id": record_id, "reason": reason}, now_ms)

    def erase(
        self, now_ms: int, *, record_id: str, subject_request: Mapping[str, Any] | None = None
    ) -> Transaction:
        """record.erase: by the subject itself, or by the writer with `erase_request(...)`."""
        p: dict[str, Any] = {"record_id": record_id}
        if subject_request is not None:
            p["subject_request"] = dict(subject_request)
        return self.tx("record.erase", p, now_ms)

    # ------------------------------------------------ consent (citizens)

    def grant(
        self,
        now_ms: int,
        *,
        grant_id: str,
        grantee: int,
        record_types: Sequence[str],
        purpose: str,
        expiry_ms: int,
    ) -> Transaction:
        return self.tx(
            "consent.grant",
            consent_grant_payload(grant_id, grantee, record_types, purpose, expiry_ms),
            now_ms,
        )

    def revoke(self, now_ms: int, *, grant_id: str) -> Transaction:
        return self.tx("consent.revoke", {"grant_id": grant_id}, now_ms)

    def my_records(self, state: dq.StateReader) -> list[dict[str, Any]]:
        """A citizen's own records (metadata; decrypt each with read_record)."""
        return dq.subject_records(state, self.pseudonym)

    def my_access_log(self, state: dq.StateReader) -> list[dict[str, Any]]:
        """Who received keys to this citizen's records (or asked in an emergency), when, why."""
        return dq.access_log(state, self.pseudonym)

    def my_grants(self, state: dq.StateReader) -> list[dict[str, Any]]:
        """This citizen's consent grants, revoked ones included."""
        return dq.grants(state, self.pseudonym)

    # ------------------------------------------------ check-ins and exposures (citizens)

    def checkin(
        self,
        now_ms: int,
        visits: Sequence[tuple[VenueQR, int]],
        record_ids: Sequence[str] | None = None,
    ) -> Transaction:
        """checkin.record of (scanned venue QR, time) visits, each sealed to this citizen
        alone. An app should send a day's visits at once, later, rather than each at its
        time: the transaction's own time is public."""
        if self.inst_id is not None:
            raise ValueError("check-ins are recorded by the citizen's own key")
        ids = list(record_ids) if record_ids is not None else [new_checkin_id() for _ in visits]
        if len(ids) != len(visits):
            raise ValueError("one record id per visit")
        subject_pk = {SUBJECT_HOLDER: encryption_public_key(self.verify_key)}
        records = []
        for rid, (qr, t_ms) in zip(ids, visits, strict=True):
            env = encrypt_record(rid, self.pseudonym, "checkin", checkin_fields(qr, t_ms), subject_pk)
            records.append({"record_id": rid, **env.to_payload()})
        return self.tx("checkin.record", {"records": records}, now_ms)

    def my_checkins(self, state: dq.StateReader) -> list[dict[str, Any]]:
        """This citizen's check-ins, decrypted on her device: record_id, venue_id, t_ms."""
        out = []
        for rec in self.my_records(state):
            if rec["type"] != "checkin" or rec["erased"] is not None:
                continue
            f = self.read_record(state, rec["record_id"])
            out.append({"record_id": rec["record_id"], "venue_id": f["venue_id"], "t_ms": f["t_ms"]})
        return out

    def match_exposures(self, state: dq.StateReader, now_ms: int) -> list[dict[str, Any]]:
        """Published exposures, current at `now_ms`, that one of her check-ins falls in and
        that she has not declared yet (matched locally: nothing is sent)."""
        r = codelife.healthcode_rules(state)
        if r.base < codelife.LIFECYCLE:
            return []
        visits = self.my_checkins(state)
        out = []
        for e in exposure.current_exposures(state, now_ms, r.params["quarantine_days"]):
            if exposure.declared(state, self.pseudonym, e["exposure_id"]):
                continue
            if any(
                v["venue_id"] == e["venue_id"] and e["from_ms"] <= v["t_ms"] <= e["to_ms"]
                for v in visits
            ):
                out.append(e)
        return out

    def declare_exposure(self, now_ms: int, exposure_id: str) -> Transaction:
        return self.tx("exposure.declare", {"exposure_id": exposure_id}, now_ms)

    def appeal(
        self,
        now_ms: int,
        *,
        appeal_id: str,
        event: int,
        reason: str,
        evidence_hash: bytes | None = None,
    ) -> Transaction:
        """healthcode.appeal against event number `event` of this citizen's code history."""
        return self.tx(
            "healthcode.appeal",
            appeal_payload(self.pseudonym, appeal_id, event, reason, evidence_hash),
            now_ms,
        )

    def my_code(self, state: dq.StateReader) -> dict[str, Any]:
        """This citizen's health code in force at the head, with reason and cause."""
        return codelife.effective_health_code(state, self.pseudonym)


# ---------------------------------------------------------------- queries


def recipient_key(state: dq.StateReader, inst_id: int) -> bytes:
    """The X25519 public key to seal to for institution `inst_id`: its registered key, or
    the one derived from its signing key."""
    reg = dq.enc_key(state, inst_id)
    if reg is not None:
        return bytes(reg["public_key"])
    inst = members.get_institution(state, inst_id)
    if inst is None:
        raise ValueError(f"unknown institution {inst_id}")
    return encryption_public_key(inst.signing_key)


def subject_records(state: dq.StateReader, subject: str) -> list[dict[str, Any]]:
    return dq.subject_records(state, subject)


def access_log(state: dq.StateReader, subject: str) -> list[dict[str, Any]]:
    return dq.access_log(state, subject)


def lot(state: dq.StateReader, lot_id: str) -> dict[str, Any] | None:
    """A lot's current record: status, custodian, remaining doses, quarantine evidence."""
    return dq.lot(state, lot_id)


def lot_custody(state: dq.StateReader, lot_id: str) -> list[dict[str, Any]]:
    return dq.lot_custody(state, lot_id)


def temperature_history(state: dq.StateReader, lot_id: str) -> list[dict[str, Any]]:
    return dq.temperature_history(state, lot_id)


def health_code(state: dq.StateReader, subject: str) -> str:
    """A subject's colour in force at the head block's time (green when nothing was ever
    recorded; a quarantine that ended shows green before any transaction writes it)."""
    return str(codelife.effective_health_code(state, subject)["colour"])


def health_code_history(state: dq.StateReader, subject: str) -> list[dict[str, Any]]:
    """Every change of a subject's code with its reason and transaction (codelife.code_history)."""
    return codelife.code_history(state, subject)


def rule_history(state: dq.StateReader, name: str) -> list[dict[str, Any]]:
    """Every version of a rule set, with activation heights and status at the head."""
    return rulebook.rule_history(state, name)
