"""A small client for the gateway: signed requests, and opening records on the caller's side.

    gw = GatewayClient("http://127.0.0.1:8480", key)           # a citizen's key
    code = gw.get("/v1/me/health-code", subject=gw.pseudonym).json()
    view = gw.get(f"/v1/me/records/{rid}", subject=gw.pseudonym).json()
    fields = open_record(view, key)                              # decrypted here, not there

Uses httpx (the `gateway` extra). Institutions pass their member signing key.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import nacl.public
import nacl.signing

from hzp2p.crypto.datasets import open_bytes
from hzp2p.crypto.records import decrypt_record, open_sealed_key, pseudonym
from hzp2p.gateway.signing import sign_request


def open_record(
    view: dict[str, Any], key: nacl.signing.SigningKey | nacl.public.PrivateKey
) -> dict[str, Any]:
    """Decrypt a record as GET /v1/me/records/{id} (or /v1/institution/records/{id}) returned
    it, with the caller's own key; checks the key commitment and the record binding."""
    record_key = open_sealed_key(
        bytes.fromhex(view["sealed_key"]), key, bytes.fromhex(view["key_commitment"])
    )
    return decrypt_record(
        record_key, bytes.fromhex(view["ciphertext"]), view["record_id"], view["subject"], view["type"]
    )


def open_dataset(response: httpx.Response, key: nacl.signing.SigningKey | nacl.public.PrivateKey
                 ) -> bytes:
    """The plaintext of GET /v1/datasets/{id}/blob's answer, opened with the institution's
    own key (its sealed key and the key commitment come in the headers); the content is
    checked against the content hash first."""
    h = bytes.fromhex(response.headers["X-HZ-Content-Hash"])
    dataset_key = open_sealed_key(bytes.fromhex(response.headers["X-HZ-Sealed-Key"]), key,
                                  bytes.fromhex(response.headers["X-HZ-Key-Commitment"]))
    return open_bytes(response.content, dataset_key, h)


class GatewayClient:
    def __init__(
        self,
        base_url: str,
        key: nacl.signing.SigningKey | None = None,
        *,
        verify: bool | str = True,
        timeout_s: float = 15.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.key = key
        self.http = http or httpx.Client(base_url=base_url, verify=verify, timeout=timeout_s)

    @property
    def pseudonym(self) -> str:
        assert self.key is not None
        return pseudonym(bytes(self.key.verify_key))

    def close(self) -> None:
        self.http.close()

    def headers(
        self, method: str, path: str, *, query: str = "", body: bytes = b"", subject: str = ""
    ) -> dict[str, str]:
        assert self.key is not None, "signed requests need a key"
        return sign_request(
            self.key, method, path, query=query, body=body, subject=subject,
            timestamp_ms=time.time_ns() // 1_000_000,
        )

    def get(self, path: str, *, query: str = "", subject: str = "", signed: bool = True) -> httpx.Response:
        h = self.headers("GET", path, query=query, subject=subject) if signed else {}
        url = f"{path}?{query}" if query else path
        return self.http.get(url, headers=h)

    def post_json(self, path: str, doc: Any, *, subject: str = "") -> httpx.Response:
        body = json.dumps(doc).encode()
        h = self.headers("POST", path, body=body, subject=subject)
        h["content-type"] = "application/json"
        return self.http.post(path, content=body, headers=h)

    def post_tx(self, tx_wire: bytes, wait_s: float = 5.0) -> httpx.Response:
        return self.post_json("/v1/tx", {"tx": tx_wire.hex(), "wait_s": wait_s})
