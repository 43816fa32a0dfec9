"""The web pages' cryptography (hzp2p/gateway/web/src) gives the same bytes as the Python
side, checked on fixed vectors under Node.js: a transaction's canonical body, hash and
signature (Ed25519 is deterministic, so equal keys and bytes give equal signatures), a
signed request's signature, the pseudonym, a record encrypted in Python and opened in
JavaScript, and credentials issued in Python verified (or refused) in JavaScript.
Skips when Node.js or the web packages (npm ci in hzp2p/gateway/web) are missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from hzp2p.contracts.credentials import key_id
from hzp2p.credentials import cose
from hzp2p.crypto.records import encrypt_record, encryption_public_key, pseudonym
from hzp2p.gateway.page import WEB_DIR
from hzp2p.gateway.signing import sign_request
from hzp2p.ledger.tx import Transaction

SRC = WEB_DIR / "src"
NODE = shutil.which("node")

SCRIPT = """
import { txBody, signTx } from '%(src)s/tx.js';
import { signHeaders } from '%(src)s/api.js';
import { cryptoReady, fromSeed } from '%(src)s/keys.js';
import { openRecord } from '%(src)s/records.js';
import { loadTrustList, verifyCredential } from '%(src)s/credential.js';
import { hex, unhex } from '%(src)s/util.js';

await cryptoReady();
const v = JSON.parse(await new Promise((ok) => { let s = ''; process.stdin.on('data', (d) => s += d); process.stdin.on('end', () => ok(s)); }));
const key = fromSeed(unhex(v.seed));
const t = v.tx;
const body = txBody(t.chain_id, t.type, key.pk, t.nonce, t.valid_from_ms, t.valid_until_ms, t.payload);
const signed = signTx(key, body);
const r = v.request;
const headers = signHeaders(key, r.method, r.path, { query: r.query, subject: key.pseudonym, body: new TextEncoder().encode(r.body), ts: r.ts, nonce: r.nonce });
const fields = openRecord(v.record, key);
const trust = loadTrustList(v.trust);
const creds = [];
for (const [text, now] of v.credentials) creds.push(await verifyCredential(text, trust, now));
console.log(JSON.stringify({ body: hex(body), hash: signed.hash, wire: signed.wire, pseudonym: key.pseudonym,
  headers, fields, creds }));
"""


def run_node(vectors: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    if NODE is None:
        pytest.skip("no Node.js (the pages' scripts are built with it; .ci/run installs it)")
    if not (WEB_DIR / "node_modules" / "libsodium-wrappers").exists():
        pytest.skip("the web packages are not installed (npm ci in hzp2p/gateway/web; .ci/run does)")
    script = tmp_path / "vectors.mjs"
    script.write_text(SCRIPT % {"src": SRC.as_posix()})
    out = subprocess.run([NODE, str(script)], input=json.dumps(vectors), capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_javascript_matches_python(tmp_path: Path) -> None:
    alice = nacl.signing.SigningKey(bytes(range(32)))
    subject = pseudonym(bytes(alice.verify_key))
    payload = {"grant_id": "G-1", "grantee": 4, "record_types": ["lab_result", "vaccination"],
               "purpose": "治疗 and follow-up care for thirty-two bytes+", "expiry_ms": 1_800_000_000_123}
    tx = dict(chain_id="hzp2p-test", type="consent.grant", nonce=1_765_000_000_000_123,
              valid_from_ms=1_765_000_000_000, valid_until_ms=1_765_000_600_000, payload=payload)
    py_tx = Transaction.create(alice, tx["chain_id"], "consent.grant", payload, nonce=tx["nonce"],
                               valid_from_ms=tx["valid_from_ms"], valid_until_ms=tx["valid_until_ms"])
    request = dict(method="POST", path="/v1/me/records", query="a=1&b=%20", body='{"x": 1}',
                   ts=1_765_000_000_000, nonce="0123456789abcdef0123")
    py_headers = sign_request(alice, "POST", request["path"], query=request["query"],
                              body=request["body"].encode(), subject=subject,
                              timestamp_ms=request["ts"], nonce=request["nonce"])
    lab = nacl.signing.SigningKey(bytes(range(1, 33)))
    env = encrypt_record("LR1", subject, "lab_result", {"test": "PCR", "ct": 21, "note": "阳性"},
                         {"subject": encryption_public_key(bytes(alice.verify_key)),
                          "inst:3": encryption_public_key(bytes(lab.verify_key))})
    record = {"record_id": "LR1", "subject": subject, "type": "lab_result", "ciphertext": env.ciphertext.hex(),
              "key_commitment": env.key_commitment.hex(), "sealed_key": env.sealed_keys["subject"].hex()}
    issuer = nacl.signing.SigningKey(bytes(range(2, 34)))
    pk = bytes(issuer.verify_key)
    trust = {"chain_id": "hzp2p-test", "height": 9, "generated_ms": 1_765_000_000_000,
             "members": [{"inst_id": 1, "name": "authority-1", "active": True}],
             "credential_keys": [{"kid": key_id(pk).hex(), "inst_id": 1, "public_key": pk.hex(),
                                  "registered_ms": 1, "revoked_ms": None}]}
    cred = cose.issue(issuer, cose.Claims(1, 1_765_000_000, 1_765_000_300, subject, "yellow",
                                          1_764_000_000_000, "hzp2p-test", 9))
    i = len(cred) // 2
    tampered = cred[:i] + ("A" if cred[i] != "A" else "B") + cred[i + 1:]
    other = cose.issue(nacl.signing.SigningKey(bytes(range(3, 35))), cose.Claims(
        1, 1_765_000_000, 1_765_000_300, subject, "green", 1, "hzp2p-test", 9))
    vectors = {"seed": bytes(alice).hex(), "tx": tx, "request": request, "record": record, "trust": trust,
               "credentials": [[cred, 1_765_000_100], [cred, 1_765_000_400], [tampered, 1_765_000_100],
                               [other, 1_765_000_100], ["HZ1:not-base45~", 1_765_000_100]]}
    js = run_node(vectors, tmp_path)

    assert js["body"] == py_tx.body.hex()
    assert js["hash"] == py_tx.hash.hex()
    assert js["wire"] == py_tx.encode().hex()  # same signature: Ed25519 is deterministic
    assert js["pseudonym"] == subject
    assert js["headers"] == py_headers
    assert js["fields"] == {"test": "PCR", "ct": 21, "note": "阳性"}
    ok, late, bad, unknown, junk = js["creds"]
    assert ok["ok"] and ok["colour"] == "yellow" and ok["subject"] == subject and ok["issuerName"] == "authority-1"
    assert not late["ok"] and [p["code"] for p in late["problems"]] == ["expired"]
    assert not bad["ok"] and bad["problems"]
    assert not unknown["ok"] and [p["code"] for p in unknown["problems"]] == ["unknown-key"]
    assert not junk["ok"] and [p["code"] for p in junk["problems"]] == ["not-base45"]
