"""`hzp2p gateway --config CFG` and `hzp2p verify-code QR-TEXT|PNG --trust-list FILE`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hzp2p.credentials.verify import DEFAULT_MAX_AGE_S, TrustList, TrustListError, verify


def _fail(args: argparse.Namespace, msg: str, code: int = 1) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": msg}))
    print(f"hzp2p: {msg}", file=sys.stderr)
    return code


def cmd_gateway(args: argparse.Namespace) -> int:
    import trio

    from hzp2p.config import ConfigError, load_config
    from hzp2p.gateway.server import credential_key_path, run_gateway
    from hzp2p.gateway.store import StoreUnavailable
    from hzp2p.node.keys import KeyFileError, generate_signing_key, write_key_file
    from hzp2p.node.logging import configure_logging

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(args, str(exc))
    if cfg.gateway is None:
        return _fail(args, f"{args.config}: no [gateway] section (see docs/gateway.md)")
    if args.new_credential_key:
        path = credential_key_path(cfg)
        try:
            key = generate_signing_key()
            write_key_file(path, key)
        except (KeyFileError, OSError) as exc:
            return _fail(args, f"cannot write {path}: {exc}")
        payload = {"inst_id": cfg.node_id, "public_key": bytes(key.verify_key).hex()}
        out: dict[str, Any] = {"key_file": str(path), "register_payload": payload}
        if args.json:
            print(json.dumps(out))
        else:
            print(f"wrote {path}; an authority registers it with:")
            print(f"  hzp2p admin --config AUTHORITY_CFG submit credkey.register --payload '{json.dumps(payload)}'")
        return 0
    configure_logging(level=cfg.log.level, fmt=cfg.log.format)
    try:
        trio.run(run_gateway, cfg)
    except StoreUnavailable as exc:
        return _fail(args, str(exc))
    except KeyFileError as exc:
        return _fail(args, f"credential key: {exc}")
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        return _fail(args, f"cannot serve: {exc}")
    return 0


def cmd_verify_code(args: argparse.Namespace) -> int:
    from hzp2p.credentials.qr import QrUnavailable, QrUnreadable, read_png
    from hzp2p.credentials.verify import TrustListTooOld

    text: str = args.code
    if not text.startswith("HZ"):
        path = Path(text)
        if not path.is_file():
            return _fail(args, f"{text!r} is neither a credential text (HZ1:...) nor an image file", 2)
        try:
            text = read_png(path)
        except (QrUnavailable, QrUnreadable) as exc:
            return _fail(args, str(exc))
    try:
        trust = TrustList.load(args.trust_list)
        now_s = time.time() if args.at is None else args.at
        result = verify(text, trust, now_s=now_s, max_age_s=args.max_age_s)
    except TrustListTooOld as exc:
        return _fail(args, str(exc))
    except TrustListError as exc:
        return _fail(args, str(exc))
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        state = "VALID" if result.ok else "INVALID"
        print(f"{state}: colour {result.colour or '?'}")
        if result.issuer_id is not None:
            print(f"  issuer: {result.issuer_name or '?'} (institution {result.issuer_id})")
        if result.valid_until_s is not None:
            left = result.valid_until_s - now_s
            print(f"  valid until: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(result.valid_until_s))}"
                  f" ({f'{left:.0f} s left' if left >= 0 else 'expired'})")
        print(f"  trust list: height {trust.height}, {result.trust_list_age_s:.0f} s old")
        for p in result.problems:
            print(f"  problem: {p}")
    if not result.ok:
        print(f"hzp2p: credential refused: {'; '.join(result.problems)}", file=sys.stderr)
        return 1
    return 0


def cmd_citizen_key(args: argparse.Namespace) -> int:
    from hzp2p.crypto.records import pseudonym
    from hzp2p.node.keys import KeyFileError, generate_signing_key, load_signing_key, write_key_file

    path = Path(args.file)
    try:
        if not path.exists():
            write_key_file(path, generate_signing_key())
        key = load_signing_key(path)
    except (KeyFileError, OSError) as exc:
        return _fail(args, str(exc))
    pk = bytes(key.verify_key)
    if args.json:
        print(json.dumps({"key_file": str(path), "public_key": pk.hex(), "pseudonym": pseudonym(pk)}))
    else:
        print(pseudonym(pk))
    return 0


def cmd_sign_request(args: argparse.Namespace) -> int:
    from hzp2p.crypto.records import pseudonym
    from hzp2p.gateway.signing import sign_request
    from hzp2p.node.keys import KeyFileError, load_signing_key

    try:
        key = load_signing_key(args.key)
        body = Path(args.body_file).read_bytes() if args.body_file else b""
    except (KeyFileError, OSError) as exc:
        return _fail(args, str(exc))
    path, _, query = args.path.partition("?")
    subject = pseudonym(bytes(key.verify_key)) if args.citizen else ""
    headers = sign_request(key, args.method, path, query=query, body=body, subject=subject,
                           timestamp_ms=time.time_ns() // 1_000_000)
    if args.json:
        print(json.dumps(headers))
    else:  # curl arguments: values are hex and digits, safe to word-split
        print(" ".join(f"-H {k}:{v}" for k, v in headers.items()))
    return 0


def _max_age(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def register(subparsers: Any) -> None:
    g = subparsers.add_parser("gateway", help="run the HTTP gateway beside this node's daemon")
    g.add_argument("--config", required=True, metavar="CFG")
    g.add_argument("--new-credential-key", action="store_true",
                   help="write a credential key file and print its credkey.register payload")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_gateway)

    k = subparsers.add_parser("citizen-key", help="make (or read) a citizen's key file; print its pseudonym")
    k.add_argument("file", metavar="FILE")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_citizen_key)

    s = subparsers.add_parser("sign-request", help="sign a gateway request: print curl -H arguments")
    s.add_argument("--key", required=True, metavar="FILE", help="a citizen's or a member's key file")
    s.add_argument("--citizen", action="store_true", help="add X-HZ-Subject (the key's pseudonym)")
    s.add_argument("--body-file", metavar="FILE", help="the exact request body to be sent")
    s.add_argument("method", metavar="METHOD")
    s.add_argument("path", metavar="PATH[?QUERY]")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sign_request)

    v = subparsers.add_parser("verify-code", help="verify a health-code credential offline")
    v.add_argument("code", metavar="QR-TEXT|PNG-FILE")
    v.add_argument("--trust-list", required=True, metavar="FILE", help="saved GET /v1/trust-list")
    v.add_argument("--max-age-s", type=_max_age, default=DEFAULT_MAX_AGE_S,
                   help=f"refuse a trust list older than this (default {DEFAULT_MAX_AGE_S} s)")
    v.add_argument("--at", type=_max_age, default=None, metavar="UNIX_S",
                   help="check as of this time instead of now (audits, tests)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify_code)
