"""Policy notices: `notice.publish` lets authorities publish the latest epidemic policies.

State layout:
  notice/n/<notice_id>      a notice (each notice_id is published once, ever)

A notice is public text in the clear (title, body, effective date, region), the
seed's "latest epidemic policies and developments"; the gateway lists them at
GET /v1/notices.
"""

from __future__ import annotations

import re
from typing import Any

from hzp2p.contracts.api import TxContext, decode_value, encode_value
from hzp2p.contracts.domain_queries import fail
from hzp2p.contracts.registry import contract
from hzp2p.contracts.schema import Match, Schema, Text
from hzp2p.contracts.state import Readable

_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_LABEL = re.compile(r"[A-Za-z0-9._:\- ]{1,64}")
_DATE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")
MAX_TITLE = 200
MAX_BODY = 4000
K_NOTICE = b"notice/n/"
NOTICE_SCHEMA = Schema(
    {
        "notice_id": Match(_ID),
        "title": Text(MAX_TITLE),
        "body": Text(MAX_BODY),
        "effective_date": Match(_DATE, "YYYY-MM-DD"),
        "region": Match(_LABEL),
    }
)


def k_notice(notice_id: str) -> bytes:
    return K_NOTICE + notice_id.encode()


@contract("notice.publish", schema=NOTICE_SCHEMA)
def publish(ctx: TxContext) -> None:
    """An authority publishes a notice: notice_id, title, body, effective_date, region."""
    me = ctx.require_member("authority")
    p = ctx.payload
    key = k_notice(p["notice_id"])
    if ctx.state.get(key) is not None:
        fail(ctx, f"notice {p['notice_id']!r} already published")
    ctx.state.put(
        key,
        encode_value(
            {
                "body": p["body"],
                "effective_date": p["effective_date"],
                "height": ctx.height,
                "notice_id": p["notice_id"],
                "publisher": me.inst_id,
                "region": p["region"],
                "timestamp_ms": ctx.timestamp_ms,
                "title": p["title"],
                "tx_hash": ctx.tx_hash,
            }
        ),
    )


def notices(state: Readable, limit: int | None = None) -> list[dict[str, Any]]:
    """Every published notice, by notice id."""
    return [dict(decode_value(v)) for _, v in state.scan(K_NOTICE, limit)]
