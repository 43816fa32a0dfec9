"""The daemon's side of paging (hzp2p.admin.paging): a handler's whole list, one page of it.

`serve(method, handler)` wraps the handler of an operation that answers a list: it
takes `limit` and `after` out of the request (the handler answers everything), orders
the list by the operation's key fields, keeps the rows after the cursor, at most
`limit`, and adds `next`. Other fields of the answer (counts, totals) are left as the
handler computed them, over the whole list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hzp2p.admin.paging import PAGED, Paged, decode_cursor, encode_cursor
from hzp2p.admin.protocol import AdminError

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]


def _key(spec: Paged, row: Any, position: int) -> list[Any]:
    if not spec.key:
        return [position]
    return [row.get(f) if isinstance(row, Mapping) else None for f in spec.key]


def _sortable(key: list[Any]) -> tuple[Any, ...]:
    # None first, then ints, then strings: rows missing a field still order the same way
    return tuple((0, 0) if v is None else (1, v) if isinstance(v, int) else (2, str(v))
                 for v in key)


def page(spec: Paged, result: Any, limit: int | None, after: str | None) -> Any:
    """One page of `result`'s list (see the module docstring)."""
    if not isinstance(result, dict):
        return result
    field = next((f for f in spec.fields if isinstance(result.get(f), list)), None)
    if field is None:
        return result
    rows = [(_key(spec, row, i), row) for i, row in enumerate(result[field])]
    rows.sort(key=lambda kr: _sortable(kr[0]))
    if after is not None:
        try:
            cursor = _sortable(decode_cursor(after))
        except ValueError as exc:
            raise AdminError("bad_request", f"after: {exc}") from None
        if rows and len(cursor) != len(rows[0][0]):
            raise AdminError("bad_request", "after: a cursor of another list")
        rows = [kr for kr in rows if _sortable(kr[0]) > cursor]
    more = limit is not None and len(rows) > limit
    if limit is not None:
        rows = rows[:limit]
    out = dict(result)
    out[field] = [row for _, row in rows]
    out["next"] = encode_cursor(rows[-1][0]) if more and rows else None
    return out


def serve(method: str, handler: Handler) -> Handler:
    """`handler`, paged if `method` answers a list (else `handler` itself)."""
    spec = PAGED.get(method)
    if spec is None:
        return handler

    async def paged(params: Mapping[str, Any]) -> Any:
        rest = {k: v for k, v in params.items() if k not in ("limit", "after")}
        return page(spec, await handler(rest), params.get("limit"), params.get("after"))

    return paged
