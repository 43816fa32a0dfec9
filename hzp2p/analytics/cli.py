"""`hzp2p export` and `hzp2p query`: argument parsing and exit statuses only.

Exit status 0 ok; 1 the operation failed (state unreadable, DuckDB could not run
the query, the analytics extra missing), with one line on stderr; 2 wrong usage
(bad arguments or config, a directory that does not fit the export asked for,
SQL that does not parse). The work is in hzp2p.analytics.export and .query.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hzp2p.analytics.aggregates import K_DEFAULT

_EXTRA_HINT = "pip install 'hzp2p[analytics]' (pyarrow and duckdb)"


def _fail(msg: str, code: int = 1) -> int:
    print(f"hzp2p: error: {msg}", file=sys.stderr)
    return code


def _missing_extra(exc: ModuleNotFoundError, command: str) -> int:
    return _fail(f"hzp2p {command} needs the analytics extra ({exc.name} is missing): {_EXTRA_HINT}")


def _int_at_least(lo: int) -> Any:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    return parse


def cmd_export(args: argparse.Namespace) -> int:
    from hzp2p.config import ConfigError, load_config
    from hzp2p.ledger.genesis import GenesisError, load_genesis

    try:
        from hzp2p.analytics.export import ExportError, export
        from hzp2p.analytics.sources import SourceError, open_state
    except ModuleNotFoundError as exc:
        if exc.name in ("pyarrow", "duckdb"):
            return _missing_extra(exc, "export")
        raise
    try:
        cfg = load_config(args.config)
        chain_id = load_genesis(cfg.genesis).chain_id
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except (GenesisError, OSError, ValueError) as exc:  # tomllib's error is a ValueError
        return _fail(f"genesis: {exc}", 2)
    try:
        source = open_state(cfg.db_path, cfg.admin.socket)
    except SourceError as exc:
        return _fail(str(exc))
    try:
        result = export(source, Path(args.out), fmt=args.format, from_height=args.from_height,
                        k=args.k, chain_id=chain_id)
    except ExportError as exc:
        return _fail(str(exc), 2)
    except (SourceError, OSError) as exc:
        return _fail(f"export failed: {exc}")
    finally:
        source.close()
    out = {**result.to_json(), "source": source.kind}
    if args.json:
        print(json.dumps(out))
    else:
        via = "the daemon's admin socket" if source.kind == "admin" else "the database file"
        print(f"exported heights {result.after_height + 1}..{result.upto_height} to {result.out_dir}"
              f" ({result.format}, read from {via}, {result.seconds:.2f} s)")
        for name, n in result.rows.items():
            print(f"  {name:<20} {n:>10} rows")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    try:
        from hzp2p.analytics.export import ExportError
        from hzp2p.analytics.query import QueryError, QuerySyntaxError, render, run_query
    except ModuleNotFoundError as exc:
        if exc.name in ("pyarrow", "duckdb"):
            return _missing_extra(exc, "query")
        raise
    try:
        result = run_query(Path(args.data), args.sql)
    except QuerySyntaxError as exc:
        return _fail(f"bad SQL: {exc}", 2)
    except QueryError as exc:
        return _fail(f"query failed: {exc}")
    except ExportError as exc:
        return _fail(str(exc))
    print(json.dumps(result.to_json()) if args.json else render(result))
    return 0


def register(subparsers: Any) -> None:
    e = subparsers.add_parser(
        "export", help="write the non-personal analytics tables (Parquet or CSV) from a node")
    e.add_argument("--config", required=True, metavar="CFG", help="the node's config.toml")
    e.add_argument("--out", required=True, metavar="DIR", help="export directory (appended to)")
    e.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    e.add_argument("--from-height", type=_int_at_least(0), default=None, metavar="H",
                   help="a new directory: export heights above H only (default 0); an existing "
                        "one continues from its manifest")
    e.add_argument("--k", type=_int_at_least(1), default=K_DEFAULT,
                   help=f"smallest group a count of individuals may show (default {K_DEFAULT})")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_export)

    q = subparsers.add_parser("query", help="run SQL (DuckDB) over an export")
    q.add_argument("sql", metavar="SQL")
    q.add_argument("--data", required=True, metavar="DIR", help="an `hzp2p export` directory")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_query)
