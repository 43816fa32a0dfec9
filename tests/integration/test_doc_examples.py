"""Every example command in README.md and docs/*.md runs, so no documented example can go stale.

The fenced blocks of each document are collected in order. A block holding commands
(`hzp2p ...`, `python ...`, `pip ...`, `curl ...`) is run unless the line right above its
fence says why it cannot be, as ``<!-- doc-test: skip: REASON -->``; a block that only
shows output, a file or code is not a command block. Each document runs in a scratch
directory of its own, as a person would follow it:

* ``[...]`` parts are the optional flags of a synopsis: the example runs without them;
  ``# ...`` is a comment; a trailing ``\\`` continues a command;
* ``hzp2p init DIR`` gets a free ``--base-port`` and every ``--address HOST:PORT`` a free
  port, the same one wherever the document names that address again (tests never take
  fixed ports);
* ``hzp2p run --config CFG`` starts the daemon in the background — a person starts each in
  a terminal of its own — and the next command waits until the daemons it started answer
  and know their leader; all of them are stopped when the document is done;
* a block marked ``<!-- doc-test: file NAME -->`` is the content of file NAME, written where
  it appears; a file the document describes only in prose (``day.jsonl``) is made by
  ``FILES`` below;
* a document that uses ``cluster/...`` without making it gets README's: ``hzp2p init
  cluster --nodes 3`` and its three daemons;
* every command must exit 0 unless the line above its block says
  ``<!-- doc-test: exit N -->`` (a documented failure).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hzp2p.admin.client import AdminClientError, call_sync
from hzp2p.admin.protocol import AdminError
from hzp2p.config import load_config
from hzp2p.tools.localcluster import free_base_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(hzp2p|python3?|pip|curl|\.venv/\S+|[A-Z_0-9]+=\S+ (python|hzp2p)) (?!\S*: )")
"""A command line (not output such as `hzp2p run: node 3's data was lost`)."""
DIRECTIVE = re.compile(r"^<!-- doc-test: (skip: .+|exit \d+|file [\w.-]+) -->$")
FILES = {
    "day.jsonl": "\n".join(
        json.dumps({"type": "epi.report", "payload": {
            "report_id": f"doc-day-{i}", "region": "north", "metric": "cases", "value": i,
            "period": "2026-W47"}})
        for i in range(3)
    ) + "\n",
}
COMMAND_TIMEOUT_S = 60.0


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    commands: list[str]
    skip: str | None = None
    exit_code: int = 0
    file: tuple[str, str] | None = None  # (name, content) of a file block

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _blocks(doc: Path) -> Iterator[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].lstrip().startswith("```"):
            i += 1
            continue
        fence, indent = lines[i].strip(), len(lines[i]) - len(lines[i].lstrip())
        lang = fence[3:].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            body.append(lines[j][indent:])
            j += 1
        above = lines[i - 1].strip() if i else ""
        m = DIRECTIVE.match(above)
        if m and m.group(1).startswith("file "):
            yield Block(doc, i + 1, [], file=(m.group(1)[5:], "\n".join(body) + "\n"))
        elif lang in ("", "sh", "bash", "console", "shell"):
            commands = _commands(body)
            if commands:
                block = Block(doc, i + 1, commands)
                if m and m.group(1).startswith("skip: "):
                    block.skip = m.group(1)[len("skip: "):]
                elif m:
                    block.exit_code = int(m.group(1).split()[1])
                yield block
        i = j + 1


def _commands(body: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""
    for raw in body:
        line = raw.rstrip()
        if pending:
            line = pending + " " + line.strip()
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if COMMAND.match(line.strip()):
            out.append(line.strip())
    return out


ALL_BLOCKS = [b for doc in DOCS for b in _blocks(doc) if b.file is None]
FILE_BLOCKS = [b for doc in DOCS for b in _blocks(doc) if b.file is not None]


def test_there_are_examples_and_every_skip_says_why() -> None:
    assert len(ALL_BLOCKS) > 10
    runnable = [b for b in ALL_BLOCKS if b.skip is None]
    assert {b.doc.name for b in runnable} >= {"README.md", "daemon.md"}  # the quick starts
    for b in ALL_BLOCKS:
        assert b.skip is None or len(b.skip) > 10, f"{b.where}: say why it cannot run"


def _argv(command: str) -> list[str]:
    text = re.sub(r"\s\[[^\]]*\]", "", command)  # a synopsis's optional parts
    argv = shlex.split(text, comments=True)
    assert argv and argv[0] == "hzp2p", f"only hzp2p commands run here: {command!r}"
    return argv


@dataclass
class Session:
    """One document's scratch directory, its daemons and their logs."""

    cwd: Path
    daemons: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)  # documented -> free
    hzp2p: list[str] = field(default_factory=lambda: [sys.executable, "-m", "hzp2p.cli"])

    def run(self, block: Block, command: str) -> None:
        argv = self._free_addresses(_argv(command))
        if argv[1:2] == ["init"]:
            argv = self._free_port(argv)
        if argv[1:2] == ["run"]:
            self._start(argv)
            return
        self._wait_daemons()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [*self.hzp2p, *argv[1:]], cwd=self.cwd, env=env, capture_output=True,
            timeout=COMMAND_TIMEOUT_S, check=False,
        )
        out, err = done.stdout.decode(), done.stderr.decode()
        assert "Traceback" not in out + err, f"{block.where}: {command}\n{err}"
        assert done.returncode == block.exit_code, (
            f"{block.where}: `{command}` exited {done.returncode}, expected {block.exit_code}"
            f"\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
        )

    def _free_addresses(self, argv: list[str]) -> list[str]:
        if "--address" in argv:
            given = argv[argv.index("--address") + 1]
            if given not in self.addresses:
                host = given.rsplit(":", 1)[0]
                self.addresses[given] = f"{host}:{free_base_port(1)}"
        return [self.addresses.get(a, a) for a in argv]

    @staticmethod
    def _free_port(argv: list[str]) -> list[str]:
        nodes = int(argv[argv.index("--nodes") + 1]) if "--nodes" in argv else 3
        port = str(free_base_port(nodes + 8))
        if "--base-port" in argv:
            k = argv.index("--base-port")
            return [*argv[: k + 1], port, *argv[k + 2 :]]
        return [*argv, "--base-port", port]

    def _start(self, argv: list[str]) -> None:
        cfg = self.cwd / argv[argv.index("--config") + 1]
        log = cfg.parent / "doc-test.log"
        proc = subprocess.Popen(
            [*self.hzp2p, *argv[1:]], cwd=self.cwd, stdout=subprocess.DEVNULL,
            stderr=log.open("wb"), env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.daemons.append((proc, cfg))

    def _wait_daemons(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        for proc, cfg in self.daemons:
            sock = load_config(cfg).admin.socket
            while True:
                assert proc.poll() is None, f"daemon {cfg} exited: {cfg.parent / 'doc-test.log'}"
                try:
                    st = call_sync(sock, "status", {}, timeout_s=2)
                    if st.get("leader_id"):
                        break
                except (AdminClientError, AdminError):
                    pass
                assert time.monotonic() < deadline, f"daemon {cfg} did not come up"
                time.sleep(0.1)

    def close(self) -> None:
        for proc, _ in self.daemons:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.daemons:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_documented_examples_run(doc: Path, tmp_path: Path) -> None:
    blocks = sorted((b for b in [*ALL_BLOCKS, *FILE_BLOCKS] if b.doc == doc and b.skip is None),
                    key=lambda b: b.line)
    if not any(b.commands for b in blocks):
        pytest.skip("no runnable examples in this document")
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    session = Session(tmp_path)
    try:
        commands = [c for b in blocks for c in b.commands]
        if any("cluster/" in c for c in commands) and not any(
            _argv(c)[1:2] == ["init"] for c in commands
        ):
            readme = Block(ROOT / "README.md", 0, [])
            session.run(readme, "hzp2p init cluster --nodes 3")
            for k in (1, 2, 3):
                session.run(readme, f"hzp2p run --config cluster/node{k}/config.toml")
        for b in blocks:
            if b.file is not None:
                (tmp_path / b.file[0]).write_text(b.file[1])
            for command in b.commands:
                session.run(b, command)
    finally:
        session.close()
