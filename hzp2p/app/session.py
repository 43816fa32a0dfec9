"""One command's conversation with a gateway: the key file, signed requests, readable errors.

`Session` wraps hzp2p.gateway.client.GatewayClient (which signs) and turns every way a
request can fail into `AppError` with the command's exit status and one line to print:
a key file that cannot be read or a malformed URL is the caller's mistake (exit 2); an
unreachable gateway, a timeout, or a refusal (its RFC 9457 problem document rendered:
status, kind, detail, the fields at fault, Retry-After) is the operation failing (exit 1).
Needs httpx (the `gateway` extra): hzp2p.app.common imports this module only when a
command runs.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nacl.signing

from hzp2p.app.errors import AppError
from hzp2p.client import Client
from hzp2p.crypto.keyfiles import KeyFileError, load_signing_key
from hzp2p.crypto.records import RecordCryptoError
from hzp2p.gateway.client import GatewayClient, open_record
from hzp2p.ledger.tx import Transaction

TX_WAIT_S = 15.0


def load_key(path: Path) -> nacl.signing.SigningKey:
    try:
        return load_signing_key(path)
    except KeyFileError as exc:
        raise AppError(str(exc), 2) from None


def _cert_refused(exc: BaseException) -> bool:
    """The TLS handshake refused the gateway's certificate (somewhere in the cause chain)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    """A record's fields as JSON can carry them: bytes as hex; a check-in's padding (which
    only hides the plaintext's length) left out."""
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items() if k != "pad"}


def problem_line(r: httpx.Response) -> tuple[str, Any]:
    """One line for a refused request, from its problem document when it has one."""
    try:
        doc = r.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "status" not in doc:
        text = " ".join(r.text.split())[:200]
        return f"HTTP {r.status_code}" + (f": {text}" if text else ""), doc
    kind = str(doc.get("type", "")).rsplit("/", 1)[-1]
    line = f"HTTP {r.status_code} {kind or doc.get('title', '')}: {doc.get('detail', '')}"
    detail = str(doc.get("detail", ""))
    errors = [e for e in doc.get("errors") or [] if str(e.get("reason")) not in detail]
    if errors:  # the fields at fault that the detail line does not already name
        line += " (" + "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in errors) + ")"
    if "retry-after" in r.headers:
        line += f"; retry after {r.headers['retry-after']} s"
    return line, doc


class Session:
    """Signed requests to one gateway with one key file."""

    def __init__(self, gateway: str, key_file: Path | None, *, ca: str | None = None,
                 insecure: bool = False, timeout_s: float = 30.0) -> None:
        if not gateway.startswith(("http://", "https://")):
            raise AppError(f"--gateway must be an http:// or https:// URL, got {gateway!r}", 2)
        self.url = gateway.rstrip("/")
        key = load_key(key_file) if key_file is not None else None
        verify: bool | str = False if insecure else (ca or True)
        try:
            self.gw = GatewayClient(self.url, key, verify=verify, timeout_s=timeout_s)
        except (httpx.InvalidURL, OSError) as exc:
            raise AppError(f"--gateway {gateway}: {exc}", 2) from None
        self._chain_id: str | None = None

    def close(self) -> None:
        self.gw.close()

    @property
    def key(self) -> nacl.signing.SigningKey:
        assert self.gw.key is not None, "a session without a key file makes public requests only"
        return self.gw.key

    @property
    def public_key(self) -> str:
        return bytes(self.key.verify_key).hex()

    @property
    def pseudonym(self) -> str:
        return self.gw.pseudonym

    def _call(self, what: str, send: Callable[[], httpx.Response]) -> Any:
        try:
            r = send()
        except httpx.TimeoutException:
            raise AppError(f"{what}: the gateway at {self.url} did not answer in time") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise AppError(f"--gateway {self.url}: {exc}", 2) from None
        except httpx.TransportError as exc:
            hint = ("; its certificate is not trusted here (--ca FILE names the CA that "
                    "signed it)" if _cert_refused(exc) else "")
            raise AppError(f"cannot reach the gateway at {self.url}: {exc}{hint}") from None
        if r.status_code != 200:
            line, doc = problem_line(r)
            raise AppError(f"{what}: {line}", body=doc)
        try:
            return r.json()
        except ValueError:
            raise AppError(f"{what}: the gateway's answer is not JSON") from None

    def public(self, path: str, what: str) -> Any:
        """An unsigned GET (public data)."""
        return self._call(what, lambda: self.gw.get(path, signed=False))

    def me(self, path: str, what: str) -> Any:
        """A citizen's signed GET about her own pseudonym."""
        return self._call(what, lambda: self.gw.get(path, subject=self.pseudonym))

    def signed(self, path: str, what: str, query: str = "") -> Any:
        """A signed GET without a subject (an institution, or a transaction's receipt)."""
        return self._call(what, lambda: self.gw.get(path, query=query))

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self.public("/v1/status", "status")["chain_id"])
        return self._chain_id

    def client(self) -> Client:
        """Signs her transactions (hzp2p.client) for this gateway's chain."""
        return Client(self.key, self.chain_id)

    def post(self, tx: Transaction) -> dict[str, Any]:
        """POST /v1/tx and wait for the verdict; a rejected transaction is AppError (exit 1)
        carrying its receipt."""
        receipt: dict[str, Any] = self._call(
            f"POST /v1/tx ({tx.tx_type})", lambda: self.gw.post_tx(tx.encode(), wait_s=TX_WAIT_S))
        if receipt.get("status") == "rejected":
            raise AppError(f"{tx.tx_type} rejected: {receipt.get('reason')}", body=receipt)
        return receipt

    def open(self, view: dict[str, Any]) -> dict[str, Any]:
        """Decrypt a record view with this key (on this side: the gateway never can)."""
        try:
            return _plain(open_record(view, self.key))
        except (RecordCryptoError, ValueError, KeyError) as exc:
            raise AppError(f"record {view.get('record_id')!r} does not open with this key "
                           f"(key id {view.get('key_id')}): {exc}") from None
