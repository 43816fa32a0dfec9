"""`hzp2p sensor sign`: a sensor gateway signs a batch of temperature readings, no Python needed.

It reads readings as CSV — `time,temp_c` per line: an ISO 8601 time (with a zone, or
UTC) or epoch milliseconds, and the temperature in degrees Celsius (at most two
decimals) — signs the batch with the sensor's key file (`hzp2p keygen --kind sensor`)
exactly as the cold-chain contract verifies it (hzp2p.contracts.coldchain
.readings_message), and prints the `coldchain.readings` payload as JSON with bytes as
{"$hex": ...}, the form `hzp2p admin readings submit --file` (and `submit --payload`)
takes. Bad input — an unparseable line, a temperature out of range, too many readings,
a wrong key file — is a usage error naming the line (exit 2); nothing is printed then.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from hzp2p.client import coldchain_readings_payload
from hzp2p.contracts.coldchain import MAX_READINGS
from hzp2p.contracts.schema import ID_RE
from hzp2p.contracts.supply import TEMP_LIMIT_CENTI_C
from hzp2p.node.keys import KeyFileError, load_signing_key


class ReadingsError(Exception):
    """Bad readings input; str() names the line and what is wrong."""


_EPOCH_MS = re.compile(r"[0-9]{1,16}")


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC when it names no zone)."""
    if _EPOCH_MS.fullmatch(text):
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReadingsError(f"time {text!r} is neither ISO 8601 nor epoch milliseconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def parse_temp_centi(text: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ReadingsError(f"temperature {text!r} is not a number of degrees C") from None
    centi = value * 100
    if centi != centi.to_integral_value():
        raise ReadingsError(f"temperature {text!r} has more than two decimals")
    if not -TEMP_LIMIT_CENTI_C <= centi <= TEMP_LIMIT_CENTI_C:
        raise ReadingsError(f"temperature {text!r} is outside ±{TEMP_LIMIT_CENTI_C // 100} C")
    return int(centi)


def parse_csv(text: str) -> list[tuple[int, int]]:
    """(t_ms, temp_centi_c) per line; a header line `time,...` and blank lines are skipped."""
    out: list[tuple[int, int]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        cells = [c.strip() for c in line.split(",")]
        if not line.strip() or (n == 1 and cells[0].lower() in ("time", "t", "t_ms")):
            continue
        if len(cells) != 2:
            raise ReadingsError(f"line {n}: expected `time,temp_c`, got {len(cells)} fields")
        try:
            out.append((parse_time_ms(cells[0]), parse_temp_centi(cells[1])))
        except ReadingsError as exc:
            raise ReadingsError(f"line {n}: {exc}") from None
    if not out:
        raise ReadingsError("no readings")
    if len(out) > MAX_READINGS:
        raise ReadingsError(f"{len(out)} readings; a batch holds at most {MAX_READINGS}")
    return out


def jsonable(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload with bytes as {"$hex": ...} (the CLI's bytes convention)."""
    return {k: {"$hex": v.hex()} if isinstance(v, bytes) else v for k, v in payload.items()}


def cmd_sign(args: argparse.Namespace) -> int:
    for name, value in (("--sensor", args.sensor), ("--lot", args.lot)):
        if not ID_RE.fullmatch(value):
            print(f"hzp2p sensor sign: error: {name} must be 1..64 of [A-Za-z0-9._:-]",
                  file=sys.stderr)
            return 2
    try:
        key = load_signing_key(args.key)
        text = sys.stdin.read() if args.readings == "-" else Path(args.readings).read_text(
            encoding="utf-8")
        readings = parse_csv(text)
    except (KeyFileError, ReadingsError) as exc:
        print(f"hzp2p sensor sign: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"hzp2p sensor sign: error: cannot read --readings: {exc}", file=sys.stderr)
        return 2
    payload = coldchain_readings_payload(key, args.sensor, args.lot, readings)
    print(json.dumps(jsonable(payload)))
    return 0


def register(subparsers: Any) -> None:
    s = subparsers.add_parser("sensor", help="cold-chain sensor tools (sign a readings batch)")
    sub = s.add_subparsers(dest="sensor_command", metavar="SUBCOMMAND")
    sign = sub.add_parser("sign", help="sign CSV readings with a sensor key; prints the payload")
    sign.add_argument("--key", type=Path, required=True, help="the sensor's key file")
    sign.add_argument("--sensor", required=True, help="the sensor's registered id")
    sign.add_argument("--lot", required=True, help="the lot the readings are for")
    sign.add_argument("--readings", required=True, metavar="CSV|-",
                      help="`time,temp_c` lines (ISO 8601 or epoch ms; degrees C)")
    sign.set_defaults(func=cmd_sign)
    s.set_defaults(func=lambda _a: (s.print_usage(sys.stderr), 2)[1])
