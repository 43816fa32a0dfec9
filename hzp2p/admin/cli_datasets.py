"""`hzp2p admin dataset ACTION ...`: data sets delivered encrypted, and data-use requests.

    dataset publish ID --file F --title T --scope public|members|roles:R,..|institutions:N,..
    dataset fetch ID [--version V] --out F
    dataset pull ID [--version V]                  (only into this node's content store)
    dataset request ID --purpose P --days N        (a member asks the owner for the key)
    dataset approve|deny|revoke REQUEST [--reason R]  (the owner decides)
    dataset access-log ID                          (the owner and authorities)
    dataset show ID | dataset list

One operation (method `dataset`, served by hzp2p.node.content.handlers). Files are
read and written by the daemon (same machine, the socket's owner), so paths are made
absolute here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from hzp2p.admin.cli_common import Command, Usage, iso_ms, render_mapping, table
from hzp2p.admin.cli_submit import PayloadError, payload_from_json, receipt_failure
from hzp2p.admin.client import call_sync
from hzp2p.admin.protocol import WAIT, Param

ACTIONS = ("publish", "fetch", "pull", "request", "approve", "deny", "revoke", "access-log", "show", "list")
_ON_REQUEST = ("approve", "deny", "revoke")
_ID_PATTERN = r"[A-Za-z0-9._:\-]{1,128}"
SCOPE_PATTERN = r"public|members|roles:[a-z_]+(,[a-z_]+)*|institutions:[0-9]+(,[0-9]+)*"


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, metavar="ACTION", help=" | ".join(ACTIONS))
    p.add_argument("target", nargs="?", metavar="ID",
                   help="the data set's id (approve/deny/revoke: the request's id)")
    p.add_argument("--file", type=Path, help="publish: the content")
    p.add_argument("--title", help="publish: the title (metadata)")
    p.add_argument("--meta", metavar="JSON", help="publish: more metadata (a JSON object)")
    p.add_argument("--scope", help="publish: public | members | roles:R1,R2 | institutions:N1,N2")
    p.add_argument("--version", type=int, help="fetch: the version (default: the latest)")
    p.add_argument("--out", type=Path, help="fetch: where to write the plaintext")
    p.add_argument("--purpose", help="request: the purpose of use")
    p.add_argument("--days", type=int, help="request: for how many days")
    p.add_argument("--request-id", help="request: the request's id (default: generated)")
    p.add_argument("--reason", help="deny/revoke: why")


def _params(a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"action": a.action, "wait_s": a.wait}
    if a.action != "list":
        if a.target is None:
            raise Usage(f"dataset {a.action} needs " + ("a REQUEST id" if a.action in _ON_REQUEST
                                                          else "a data set ID"))
        out["request_id" if a.action in _ON_REQUEST else "dataset_id"] = a.target
    if a.action == "publish":
        if a.file is None or a.scope is None:
            raise Usage("dataset publish needs --file and --scope")
        if not re.fullmatch(SCOPE_PATTERN, a.scope):
            raise Usage("--scope must be public | members | roles:R1,R2 | institutions:N1,N2")
        out.update(file=str(a.file.resolve()), scope=a.scope)
        if a.title is not None:
            out["title"] = a.title
        if a.meta is not None:
            try:
                out["metadata"] = payload_from_json(a.meta)
            except PayloadError as exc:
                raise Usage(f"--meta {exc}") from None
    elif a.action in ("fetch", "pull"):
        if a.action == "fetch":
            if a.out is None:
                raise Usage("dataset fetch needs --out FILE")
            out["out"] = str(a.out.resolve())
        if a.version is not None:
            out["version"] = a.version
    elif a.action == "request":
        if a.purpose is None or a.days is None:
            raise Usage("dataset request needs --purpose and --days")
        out.update(purpose=a.purpose, days=a.days)
        if a.request_id is not None:
            out["request_id"] = a.request_id
    elif a.action in ("deny", "revoke"):
        if a.reason is None:
            raise Usage(f"dataset {a.action} needs --reason")
        out["reason"] = a.reason
    return out


LONG_TIMEOUT_S = 3600.0
"""Client time for publish / fetch / pull: encrypting, delivering and decrypting a large
data set takes as long as it takes (the daemon reports failures itself)."""


def _call(socket: Path, params: dict[str, Any], timeout_s: float) -> Any:
    if params["action"] in ("publish", "fetch", "pull"):
        timeout_s = max(timeout_s, LONG_TIMEOUT_S)
    return call_sync(socket, "dataset", params, timeout_s=timeout_s)


def _render(result: Any) -> str:
    if isinstance(result, dict) and "datasets" in result:
        return table(["id", "version", "owner", "access", "size", "readable", "title"],
                     [[str(d["dataset_id"]), str(d["version"]), str(d["owner"]),
                       str(d["access"]), str(d["size"]), "yes" if d["readable"] else "no",
                       str((d["metadata"] or {}).get("title", "-"))] for d in result["datasets"]])
    if isinstance(result, dict) and "entries" in result:
        return table(["when", "kind", "who", "by", "version", "purpose"],
                     [[iso_ms(e["timestamp_ms"]), str(e["kind"]), str(e["who"]), str(e["by"]),
                       str(e.get("version") or "-"), str(e.get("purpose") or "-")]
                      for e in result["entries"]], title=f"access log of {result['dataset_id']}")
    return render_mapping(result)


def _failure(a: argparse.Namespace, result: Any) -> str | None:
    if isinstance(result, dict) and "status" in result:
        return receipt_failure(a, result)
    return None


DATASET_COMMANDS: tuple[Command, ...] = (
    Command(
        "dataset", "dataset",
        "data sets: publish (encrypted to a scope), fetch, request / approve / deny / revoke "
        "use, access-log, show, list",
        _args, _params, _render, _failure, waits=True, call=_call,
        wire=(
            Param("action", "str", pattern="|".join(ACTIONS), shown=" | ".join(ACTIONS)),
            Param("dataset_id", "str", pattern=_ID_PATTERN, shown="a data set id", required=False),
            Param("request_id", "str", pattern=r"[A-Za-z0-9._:\-]{1,64}", shown="a request id",
                  required=False),
            Param("file", "str", max_len=4096, required=False),
            Param("out", "str", max_len=4096, required=False),
            Param("title", "str", max_len=256, required=False),
            Param("metadata", "map", required=False),
            Param("scope", "str", pattern=SCOPE_PATTERN,
                  shown="public | members | roles:R1,R2 | institutions:N1,N2", required=False),
            Param("version", "int", min_value=1, max_value=2**31, required=False),
            Param("purpose", "str", max_len=128, required=False),
            Param("days", "int", min_value=1, max_value=36500, required=False),
            Param("reason", "str", max_len=256, required=False),
            WAIT,
        ),
        result="publish: receipt + dataset_id, version, content_hash, holders, scope; fetch: "
               "dataset_id, version, out, size, content_hash, fetch_tx; request/approve/deny/"
               "revoke: receipt + request_id; access-log: dataset_id, owner, entries, requests; "
               "show: dataset_id, versions; list: datasets",
    ),
)
