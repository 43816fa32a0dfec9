"""The config reference tables of docs/operations.md, written from the declared sections.

    python -m hzp2p.config.reference          # print the tables
    python -m hzp2p.config.reference --write  # rewrite them in docs/operations.md, gateway.md

Each table sits between `<!-- config-reference: NAME -->` and
`<!-- /config-reference -->` in those docs; tests/node/test_config_reference.py
fails when a table there differs from what the schema gives.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, get_type_hints

import msgspec.inspect as mi

from hzp2p.config.reader import Section, bare, choices, description, extra, section_type
from hzp2p.config.sections import HostPort, NodeConfig

TABLES: dict[str, type[Section]] = {
    "top": NodeConfig,
    **{
        f.name: sub
        for f in mi.type_info(NodeConfig).fields  # type: ignore[attr-defined]
        if (sub := section_type(f.type)) is not None
    },
}
"""Each reference table: the top level, then every section in the order of NodeConfig."""
DOCS = tuple(
    Path(__file__).resolve().parents[2] / "docs" / name for name in ("operations.md", "gateway.md")
)
_BLOCK = re.compile(
    r"(<!-- config-reference: (\w+) -->\n)(.*?)(<!-- /config-reference -->)", re.DOTALL
)


def _type(t: mi.Type, hint: Any) -> str:
    if "type_doc" in extra(t):
        return str(extra(t)["type_doc"])
    b = bare(t)
    if isinstance(b, mi.IntType):
        lo, hi = b.ge, b.le
        if lo is not None and hi is not None:
            return f"int in [{lo}, {hi}]"
        return f"int >= {lo}" if lo is not None else "int"
    if isinstance(b, mi.FloatType):
        return "number > 0" if b.gt == 0 else "number"
    if isinstance(b, mi.BoolType):
        return "bool"
    if isinstance(b, mi.LiteralType):
        return ", ".join(f"`{v}`" for v in (choices(hint) or b.values))
    return "string"


def _default(f: mi.Field) -> str:
    ex = extra(f.type)
    if "default_doc" in ex:
        return str(ex["default_doc"])
    if f.required:
        return "required"
    value = f.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, HostPort):
        return f"`{value}`"
    if value == ():
        return "`[]`"
    return str(value)


def table(cls: type[Section]) -> str:
    """The markdown reference table of one section (its sub-sections are their own tables)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    hints = get_type_hints(cls, include_extras=True)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in info.fields:
        if extra(f.type).get("internal") or section_type(f.type) is not None:
            continue
        meaning = description(f.type)
        assert meaning, f"{cls.__name__}.{f.name} has no description"
        rows.append(
            f"| `{f.name}` | {_type(f.type, hints[f.name])} | {_default(f)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"


def update(text: str) -> str:
    """`text` with every marked table rewritten from the schema."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise KeyError(f"unknown config-reference table {name!r}")
        return m.group(1) + table(TABLES[name]) + m.group(4)

    return _BLOCK.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the tables in docs/")
    args = ap.parse_args(argv)
    if args.write:
        for doc in DOCS:
            doc.write_text(update(doc.read_text()))
    else:
        for name, cls in TABLES.items():
            sys.stdout.write(f"<!-- config-reference: {name} -->\n{table(cls)}\n")
    return 0



if __name__ == "__main__":
    sys.exit(main())
