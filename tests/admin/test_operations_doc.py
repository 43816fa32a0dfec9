"""docs/operations.md shows every `hzp2p admin` subcommand in a fenced example (which
tests/integration/test_doc_examples.py runs, or whose skip says why), and lists every
paged operation, so a new command cannot ship undocumented."""

from __future__ import annotations

import re
from pathlib import Path

from hzp2p.admin.cli import COMMANDS
from hzp2p.admin.paging import PAGED

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_admin_command_has_an_example() -> None:
    text = DOC.read_text(encoding="utf-8")
    shown = set()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            m = re.match(r"\s*hzp2p admin (?:--\S+ \S+ )*(?:--json )?(\S+)", line)
            if m:
                shown.add(m.group(1))
    assert sorted(c.name for c in COMMANDS if c.name not in shown) == []


def test_every_paged_list_is_documented_as_paged() -> None:
    text = DOC.read_text(encoding="utf-8")
    para = text[text.index("**Every list pages.**"):]
    para = para[: para.index("\n\n")]
    names = {c.method: c.name for c in COMMANDS}
    assert [m for m in PAGED if f"`{names[m]}`" not in para] == []
