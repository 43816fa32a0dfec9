"""Property-based API tests generated from the gateway's own /openapi.json (schemathesis),
against a real daemon and a real gateway: for every operation, no 5xx, every response's
status, content type and body match the document. Signed operations are signed (by an
authority's key, which is also a valid citizen key), so fuzzing reaches past the
signature check; the rest of the headers are what schemathesis generates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from hzp2p.crypto.records import pseudonym
from hzp2p.gateway.signing import sign_request
from hzp2p.tools.gatewayrun import (
    AUTH,
    Gateway,
    running_gateway,
)

pytestmark = pytest.mark.slow

OPEN_LIMITS = """rate_per_key_per_s = 100000.0
burst_per_key = 100000
rate_per_address_per_s = 100000.0
burst_per_address = 100000
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("fuzz") / "c", OPEN_LIMITS) as g:
        yield g


def call(gw: Gateway, case: schemathesis.Case) -> requests.Response:
    """Send `case` signed with the authority's key (replacing any generated X-HZ-* header)."""
    key = gw.key(AUTH)
    kw = case.as_transport_kwargs(base_url=gw.base_url)
    headers = {k: v for k, v in (kw.get("headers") or {}).items() if not k.lower().startswith("x-hz-")}
    req = requests.Request(
        method=kw["method"], url=kw["url"], headers=headers, params=kw.get("params"),
        json=kw.get("json"), data=kw.get("data"), cookies=kw.get("cookies"),
    ).prepare()
    parts = urlsplit(req.url or "")
    body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
    subject = pseudonym(bytes(key.verify_key)) if parts.path.startswith("/v1/me") else ""
    req.headers.update(sign_request(key, req.method or "GET", parts.path, query=parts.query,
                                    body=body, subject=subject, timestamp_ms=time.time_ns() // 1_000_000))
    with requests.Session() as s:
        return s.send(req, timeout=30)


def check_operation(gw: Gateway, op: Any, excluded: list[Any]) -> None:
    @given(case=op.as_strategy())
    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.validate_response(call(gw, case), excluded_checks=excluded)

    run()


def test_every_operation_conforms(gw: Gateway) -> None:
    api = schemathesis.openapi.from_url(f"{gw.base_url}/openapi.json")
    tested = []
    for result in api.get_all_operations():
        op = result.ok()
        # A schema cannot describe a signed transaction: well-formed hex that is no valid
        # transaction is refused (400/422) and that is right, not a schema violation.
        check_operation(gw, op, [positive_data_acceptance] if op.label == "POST /v1/tx" else [])
        tested.append(op.label)
    assert len(tested) >= 18, tested
