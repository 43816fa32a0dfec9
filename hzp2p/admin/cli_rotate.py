"""`hzp2p admin rotate-keys`: an institution's governed key rotation (hzp2p.node.rotation).

    rotate-keys --prepare                    write this node's next keys (signing.key.next,
                                             node.key.next, mode 0600); print their public keys
    rotate-keys --prepare --propose          ... and propose rotating this node's institution
                                             (an authority; the other authorities vote)
    rotate-keys NODE --signing-key HEX --node-key HEX
                                             propose rotating institution NODE to those keys
                                             (prepared on NODE's own machine)

Once the vote approves it, the block that rotates the keys switches the running daemon
to them; nothing restarts (docs/certificates.md, key rotation).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from hzp2p.admin.cli_common import Command, Usage, fmt, non_negative_int
from hzp2p.admin.cli_submit import receipt_failure, render_receipt
from hzp2p.admin.protocol import MAX_INT, WAIT, Param


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", nargs="?", type=non_negative_int, metavar="NODE",
                   help="the institution to rotate (default with --propose: this node's)")
    p.add_argument("--prepare", action="store_true",
                   help="write this node's next keys next to its key files")
    p.add_argument("--propose", action="store_true",
                   help="with --prepare: propose rotating this node's institution to them")
    p.add_argument("--signing-key", metavar="HEX", help="the new signing key (public, hex)")
    p.add_argument("--node-key", metavar="HEX", help="the new node key (public, hex)")


def _hex32(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    try:
        ok = len(bytes.fromhex(text)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise Usage(f"{what} must be 64 hex digits")
    return text.lower()


def _params(args: argparse.Namespace) -> dict[str, Any]:
    sk, nk = _hex32(args.signing_key, "--signing-key"), _hex32(args.node_key, "--node-key")
    if not args.prepare and args.node is None:
        raise Usage("give --prepare, or NODE with --signing-key and --node-key")
    if args.propose and not args.prepare:
        raise Usage("--propose goes with --prepare (or give NODE and the keys)")
    if args.node is not None and not args.prepare and (sk is None or nk is None):
        raise Usage("NODE needs --signing-key and --node-key (its prepared public keys)")
    params: dict[str, Any] = {"wait_s": args.wait}
    if args.prepare:
        params["prepare"] = True
    if args.propose:
        params["propose"] = True
    if args.node is not None:
        params["inst_id"] = args.node
    if sk is not None and nk is not None:
        params["signing_key"], params["node_key"] = sk, nk
    return params


def _render(r: Any) -> str:
    if not isinstance(r, Mapping):
        return fmt(r)
    lines = []
    if r.get("files"):
        lines.append(f"next keys written to {fmt(r['files'])}")
        lines.append(f"  signing key: {fmt(r.get('signing_key'))}")
        lines.append(f"  node key:    {fmt(r.get('node_key'))}")
    if r.get("tx_hash"):
        lines.append(render_receipt({k: v for k, v in r.items()
                                     if k not in ("files", "signing_key", "node_key")}))
    return "\n".join(lines) or "nothing to do"


def _failure(args: argparse.Namespace, r: Any) -> str | None:
    return receipt_failure(args, r) if isinstance(r, Mapping) and r.get("tx_hash") else None


def rotate_keys_command() -> Command:
    return Command(
        "rotate-keys", "rotate_keys", "prepare this node's next keys, or propose a key rotation",
        _args, _params, _render, _failure, waits=True,
        wire=(Param("prepare", "bool", required=False), Param("propose", "bool", required=False),
              Param("inst_id", "int", required=False, min_value=1, max_value=MAX_INT),
              Param("signing_key", "hex", required=False, exact_len=64),
              Param("node_key", "hex", required=False, exact_len=64), WAIT),
        result="with prepare: signing_key, node_key (public, hex), files; with a proposal: "
               "its receipt, proposal_id, inst_id",
    )
