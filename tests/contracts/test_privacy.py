"""Privacy and consent: encrypted records, grants, shares, emergency access, erasure."""

from __future__ import annotations

import pytest
from domain_helpers import DAY, World

from hzp2p.client import erase_request
from hzp2p.contracts import domain_queries as dq
from hzp2p.crypto.records import RecordCryptoError, decrypt_record, open_sealed_key
from hzp2p.ledger.tx import Transaction


class Privacy:
    def __init__(self) -> None:
        w = self.w = World()
        self.hospital = w.member("hospital", 1, "hospital")
        self.clinic = w.member("clinic", 2, "hospital")
        self.insurer = w.member("research", 3, "observer")
        self.cdc = w.member("cdc", 4, "authority")
        self.lab = w.member("lab", 5, "lab")
        self.alice = w.citizen("alice")
        self.bob = w.citizen("bob")
        self.subject = self.alice.pseudonym
        w.apply(
            self.hospital.record_write(
                w.now,
                record_id="R1",
                subject_verify_key=self.alice.verify_key,
                record_type="diagnosis",
                fields={"diagnosis": "influenza A", "notes": "mild"},
            )
        )

    def grant(
        self,
        grant_id: str = "G1",
        grantee: int = 2,
        types: tuple[str, ...] = ("diagnosis",),
        purpose: str = "treatment",
        days: int = 30,
    ) -> None:
        self.w.apply(
            self.alice.grant(
                self.w.now,
                grant_id=grant_id,
                grantee=grantee,
                record_types=types,
                purpose=purpose,
                expiry_ms=self.w.now + days * DAY,
            )
        )

    def share(self, grantee: int = 2, grant_id: str = "G1", purpose: str = "treatment") -> None:
        self.w.apply(
            self.hospital.share(
                self.w.state,
                self.w.now,
                record_id="R1",
                grantee=grantee,
                grant_id=grant_id,
                purpose=purpose,
            )
        )

    def share_refused(
        self, match: str, grantee: int = 2, grant_id: str = "G1", purpose: str = "treatment"
    ) -> str:
        tx = self.hospital.share(
            self.w.state,
            self.w.now,
            record_id="R1",
            grantee=grantee,
            grant_id=grant_id,
            purpose=purpose,
        )
        return self.w.refused(tx, match)


@pytest.fixture
def p() -> Privacy:
    return Privacy()


def test_only_subject_and_writer_can_decrypt(p: Privacy) -> None:
    assert p.alice.read_record(p.w.state, "R1")["diagnosis"] == "influenza A"
    assert p.hospital.read_record(p.w.state, "R1")["notes"] == "mild"
    for outsider in (p.clinic, p.cdc, p.bob):
        with pytest.raises(RecordCryptoError, match="holds no key"):
            outsider.read_record(p.w.state, "R1")
    # Even with the sealed keys in hand, an outsider's private key opens none of them.
    rec = dq.record(p.w.state, "R1")
    assert rec is not None
    for entry in rec["holders"].values():
        with pytest.raises(RecordCryptoError):
            open_sealed_key(entry["sealed_key"], p.clinic.key)


def test_ciphertext_is_bound_to_its_record(p: Privacy) -> None:
    key = p.hospital.record_key(p.w.state, "R1")
    rec = dq.record(p.w.state, "R1")
    assert rec is not None
    with pytest.raises(RecordCryptoError, match="different record"):
        decrypt_record(key, rec["ciphertext"], "R2", rec["subject"], rec["type"])
    with pytest.raises(RecordCryptoError, match="key commitment"):
        open_sealed_key(rec["holders"]["inst:1"]["sealed_key"], p.hospital.key, bytes(32))


def test_grant_then_share_lets_grantee_decrypt_and_is_logged(p: Privacy) -> None:
    p.grant()
    p.share()
    assert p.clinic.read_record(p.w.state, "R1")["diagnosis"] == "influenza A"
    log = p.alice.my_access_log(p.w.state)
    assert len(log) == 1
    e = log[0]
    assert (e["kind"], e["record_id"], e["by"], e["grantee"], e["purpose"], e["grant_id"]) == (
        "share",
        "R1",
        1,
        2,
        "treatment",
        "G1",
    )
    assert e["timestamp_ms"] == p.w.now and e["record_type"] == "diagnosis"
    p.share_refused("already holds")


def test_share_without_covering_grant_refused(p: Privacy) -> None:
    assert "no grant 'G1'" in p.share_refused("no grant")
    p.grant("G1", grantee=3)
    p.share_refused("does not name institution 2")
    p.grant("G2", types=("vaccination",))
    p.share_refused("does not cover record type 'diagnosis'", grant_id="G2")
    p.grant("G3")
    p.share_refused("does not cover purpose 'marketing'", grant_id="G3", purpose="marketing")
    p.grant("G4", days=1)
    p.w.now += DAY
    p.share_refused("expired", grant_id="G4")
    assert p.alice.my_access_log(p.w.state) == []
    with pytest.raises(RecordCryptoError):
        p.clinic.read_record(p.w.state, "R1")


def test_only_holders_may_share(p: Privacy) -> None:
    p.grant("G1", grantee=2)
    p.grant("G5", grantee=5)
    p.w.refused(
        p.clinic.tx(
            "access.share",
            {
                "record_id": "R1",
                "grantee": 5,
                "basis": "grant",
                "grant_id": "G5",
                "purpose": "treatment",
                "sealed_key": bytes(80),
            },
            p.w.now,
        ),
        "does not hold the key",
    )


def test_revocation_stops_new_shares_and_withdraws_keys(p: Privacy) -> None:
    p.grant()
    p.share()
    p.w.apply(p.alice.revoke(p.w.now, grant_id="G1"))
    with pytest.raises(RecordCryptoError, match="holds no key"):
        p.clinic.read_record(p.w.state, "R1")
    p.share_refused("was revoked")
    p.w.refused(p.alice.revoke(p.w.now, grant_id="G1"), "already revoked")
    p.w.refused(p.bob.revoke(p.w.now, grant_id="G1"), "unknown grant")
    grants = dq.grants(p.w.state, p.subject)
    assert grants[0]["revoked_ms"] == p.w.now


def test_consent_grant_rules(p: Privacy) -> None:
    now = p.w.now
    kw = {
        "grant_id": "G1",
        "grantee": 2,
        "record_types": ("diagnosis",),
        "purpose": "care",
        "expiry_ms": now + DAY,
    }
    p.w.refused(p.hospital.grant(now, **kw), "signed by the subject's own key")  # type: ignore[arg-type]
    p.w.refused(p.alice.grant(now, **dict(kw, grantee=77)), "grantee 77 is not an active member")  # type: ignore[arg-type]
    p.w.refused(p.alice.grant(now, **dict(kw, record_types=("dna",))), "record_types")  # type: ignore[arg-type]
    p.w.refused(p.alice.grant(now, **dict(kw, expiry_ms=now)), "expiry_ms")  # type: ignore[arg-type]
    p.w.refused(p.alice.grant(now, **dict(kw, purpose="")), "purpose")  # type: ignore[arg-type]
    p.w.apply(p.alice.grant(now, **kw))  # type: ignore[arg-type]
    p.w.refused(p.alice.grant(now, **kw), "already exists")  # type: ignore[arg-type]
    # Bob's grant is his own: it never covers Alice's record.
    p.w.apply(p.bob.grant(now, **kw))  # type: ignore[arg-type]


def test_emergency_access_is_checked_and_logged(p: Privacy) -> None:
    w = p.w
    w.refused(p.cdc.emergency(w.now, record_id="R1", reason="  "), "reason")
    w.refused(p.clinic.emergency(w.now, record_id="R1", reason="x"), "lacks role authority")
    # No authorisation yet: the writer cannot hand the key to the authority.
    w.refused(
        p.hospital.fulfil_emergency(w.state, w.now, record_id="R1", authority=4),
        "no open emergency authorisation",
    )
    w.apply(p.cdc.emergency(w.now, record_id="R1", reason="outbreak tracing, patient unconscious"))
    w.refused(p.cdc.emergency(w.now, record_id="R1", reason="again"), "already open")
    # An authorisation names its authority: it does not let the writer share with others.
    w.refused(
        p.hospital.fulfil_emergency(w.state, w.now, record_id="R1", authority=2),
        "no open emergency authorisation for institution 2",
    )
    w.apply(p.hospital.fulfil_emergency(w.state, w.now, record_id="R1", authority=4))
    assert p.cdc.read_record(w.state, "R1")["diagnosis"] == "influenza A"
    log = p.alice.my_access_log(w.state)
    assert [(e["kind"], e["by"], e["grantee"], e["reason"]) for e in log] == [
        ("emergency", 4, 4, "outbreak tracing, patient unconscious"),
        ("share", 1, 4, "outbreak tracing, patient unconscious"),
    ]
    assert log[1]["purpose"] == "emergency"


def test_emergency_authorisation_expires(p: Privacy) -> None:
    w = p.w
    w.apply(p.cdc.emergency(w.now, record_id="R1", reason="tracing"))
    w.now += DAY
    w.refused(p.hospital.fulfil_emergency(w.state, w.now, record_id="R1", authority=4), "expired")
    w.apply(p.cdc.emergency(w.now, record_id="R1", reason="tracing, second request"))
    w.apply(p.hospital.fulfil_emergency(w.state, w.now, record_id="R1", authority=4))


def test_erasure_by_subject_makes_record_unreadable_for_good(p: Privacy) -> None:
    w = p.w
    p.grant()
    p.share()
    w.refused(p.bob.erase(w.now, record_id="R1"), "only the record's subject")
    w.apply(p.alice.erase(w.now, record_id="R1"))
    rec = dq.record(w.state, "R1")
    assert rec is not None and rec["holders"] == {} and rec["erased"]["by"] == "subject"
    assert rec["ciphertext"]  # the ciphertext stays, unreadable
    for who in (p.alice, p.hospital, p.clinic):
        with pytest.raises(RecordCryptoError, match="erased"):
            who.read_record(w.state, "R1")
    tx = p.hospital.tx(
        "access.share",
        {
            "record_id": "R1",
            "grantee": 2,
            "basis": "grant",
            "grant_id": "G1",
            "purpose": "treatment",
            "sealed_key": bytes(80),
        },
        w.now,
    )
    w.refused(tx, "was erased")
    w.refused(p.cdc.emergency(w.now, record_id="R1", reason="x"), "was erased")
    w.refused(p.alice.erase(w.now, record_id="R1"), "was erased")
    assert [e["kind"] for e in p.alice.my_access_log(w.state)] == ["share", "erase"]


def test_erasure_by_writer_needs_subjects_signed_request(p: Privacy) -> None:
    w = p.w
    w.refused(p.hospital.erase(w.now, record_id="R1"), "subject_request: needed when the writer erases")
    forged = erase_request(p.bob.key, "R1")
    w.refused(
        p.hospital.erase(w.now, record_id="R1", subject_request=forged), "not the record's subject"
    )
    wrong = dict(erase_request(p.alice.key, "R2"))
    w.refused(
        p.hospital.erase(w.now, record_id="R1", subject_request=wrong), "signature is invalid"
    )
    good = erase_request(p.alice.key, "R1")
    w.refused(p.clinic.erase(w.now, record_id="R1", subject_request=good), "or its writer")
    w.apply(p.hospital.erase(w.now, record_id="R1", subject_request=good))
    with pytest.raises(RecordCryptoError, match="erased"):
        p.alice.read_record(w.state, "R1")
    assert p.alice.my_access_log(w.state)[-1]["by"] == 1


def test_subject_lists_own_records(p: Privacy) -> None:
    w = p.w
    w.apply(
        p.lab.lab_result(
            w.now,
            subject=p.subject,
            test_id="T1",
            result="negative",
            sample_ms=w.now,
            record_id="R2",
            subject_verify_key=p.alice.verify_key,
            fields={"ct": 40},
        )
    )
    mine = p.alice.my_records(w.state)
    assert [(r["record_id"], r["type"], r["writer"]) for r in mine] == [
        ("R1", "diagnosis", 1),
        ("R2", "lab_result", 5),
    ]
    assert p.alice.read_record(w.state, "R2") == {"ct": 40}
    assert p.bob.my_records(w.state) == []
    w.refused(
        p.lab.record_write(
            w.now,
            record_id="R3",
            subject_verify_key=p.alice.verify_key,
            record_type="diagnosis",
            fields={},
        ),
        "lacks role hospital",
    )


def test_unknown_fields_are_refused(p: Privacy) -> None:
    """Nothing rides along unchecked: a stray field could carry personal data in the clear."""
    w = p.w
    tx = p.hospital.record_write(
        w.now,
        record_id="R9",
        subject_verify_key=p.alice.verify_key,
        record_type="diagnosis",
        fields={"diagnosis": "x"},
    )
    w.refused(
        p.hospital.tx("record.write", dict(tx.payload, name="Alice Example"), w.now),
        "unknown payload field.*name",
    )
    rec = dict(tx.payload["record"], plaintext="Alice")
    w.refused(
        p.hospital.tx("record.write", dict(tx.payload, record=rec), w.now),
        "unknown record field.*plaintext",
    )
    w.refused(
        p.cdc.tx("access.emergency", {"record_id": "R1", "reason": "x", "note": "y"}, w.now),
        "unknown payload field",
    )
    # An emergency hand-over has no grant and no purpose of its own: those fields would
    # ride along unchecked (and unlogged), so they are refused too.
    w.apply(p.cdc.emergency(w.now, record_id="R1", reason="tracing"))
    share = p.hospital.fulfil_emergency(w.state, w.now, record_id="R1", authority=4).payload
    for extra in ({"purpose": "Alice Example, HIV+"}, {"grant_id": "G1"}):
        w.refused(
            p.hospital.tx("access.share", dict(share, **extra), w.now),
            "not used with basis 'emergency'",
        )


# ---------------------------------------------------------------- encryption keys, rotation


def _historic_sealed_key(tx: Transaction, holder: str) -> bytes:
    """What anyone keeping the block history still has after erasure."""
    key: bytes = tx.payload["record"]["sealed_keys"][holder]
    return key


def test_registered_encryption_key_is_used_for_writes_and_shares(p: Privacy) -> None:
    w = p.w
    w.apply(p.clinic.rotate_enc_key(w.state, w.now))
    reg = dq.enc_key(w.state, 2)
    assert reg is not None and reg["key_id"] == 1 and reg["public_key"] == p.clinic.enc_public_key
    p.grant()
    p.share()  # sealed to the clinic's registered key, not its signing key
    rec = dq.record(w.state, "R1")
    assert rec is not None and rec["holders"]["inst:2"]["key_id"] == 1
    with pytest.raises(RecordCryptoError):
        open_sealed_key(rec["holders"]["inst:2"]["sealed_key"], p.clinic.key)
    assert p.clinic.read_record(w.state, "R1")["diagnosis"] == "influenza A"
    assert dq.held_records(w.state, 2) == ["R1"]


def test_enckey_set_rules(p: Privacy) -> None:
    w = p.w
    pk = bytes(range(32))
    w.refused(
        p.hospital.tx("enckey.set", {"key_id": 2, "public_key": pk}, w.now), "key_id must be 1"
    )
    w.refused(p.hospital.tx("enckey.set", {"key_id": 1, "public_key": bytes(32)}, w.now), "zeros")
    w.refused(p.alice.tx("enckey.set", {"key_id": 1, "public_key": pk}, w.now), "not a member")
    w.apply(p.hospital.tx("enckey.set", {"key_id": 1, "public_key": pk}, w.now))
    w.refused(
        p.hospital.tx("enckey.set", {"key_id": 1, "public_key": pk}, w.now), "key_id must be 2"
    )


def test_rotation_makes_erasure_hold_against_block_history(p: Privacy) -> None:
    """An institution on registered keys that rewraps its live records and destroys the
    retired key can no longer open the sealed keys of erased records kept in old blocks."""
    w = p.w
    w.apply(p.hospital.rotate_enc_key(w.state, w.now))  # key 1
    txs = {
        rid: p.hospital.record_write(
            w.now,
            record_id=rid,
            subject_verify_key=p.alice.verify_key,
            record_type="diagnosis",
            fields={"diagnosis": rid},
        )
        for rid in ("K1", "K2")
    }
    for tx in txs.values():
        w.apply(tx)
    old = _historic_sealed_key(txs["K1"], "inst:1")
    w.apply(p.alice.erase(w.now, record_id="K1"))
    assert open_sealed_key(old, p.hospital.enc_keys[1])  # history + old key still open it
    w.apply(p.hospital.rotate_enc_key(w.state, w.now))  # key 2
    assert p.hospital.stale_records(w.state) == ["K2", "R1"]
    w.refused(
        p.hospital.tx("access.rewrap", {"record_id": "K1", "sealed_key": bytes(80)}, w.now),
        "was erased",
    )
    for rid in p.hospital.stale_records(w.state):  # R1 was sealed to key 0 (derived)
        w.apply(p.hospital.rewrap(w.state, w.now, record_id=rid))
    assert p.hospital.stale_records(w.state) == []
    w.refused(
        p.hospital.rewrap(w.state, w.now, record_id="K2"), "already sealed to the current key"
    )
    p.hospital.forget_enc_key(1)
    assert p.hospital.read_record(w.state, "K2") == {"diagnosis": "K2"}
    assert sorted(p.hospital.enc_keys) == [0, 2]
    for priv in p.hospital.enc_keys.values():
        with pytest.raises(RecordCryptoError):
            open_sealed_key(old, priv)
    assert p.hospital.read_record(w.state, "R1")["diagnosis"] == "influenza A"
    with pytest.raises(ValueError, match="derived from the signing key"):
        p.hospital.forget_enc_key(0)


def test_rewrap_only_by_holders(p: Privacy) -> None:
    w = p.w
    w.apply(p.clinic.rotate_enc_key(w.state, w.now))
    w.refused(
        p.clinic.tx("access.rewrap", {"record_id": "R1", "sealed_key": bytes(80)}, w.now),
        "does not hold the key",
    )
    assert [e["kind"] for e in p.alice.my_access_log(w.state)] == []
