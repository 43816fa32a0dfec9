"""`hzp2p demo`: three real daemons in a temporary directory tell the public-health story.

The story itself is hzp2p.tools.demo_story: what each party types (`hzp2p` commands,
Alice's phone's included: `hzp2p citizen` over the gateway), and what happens to
processes. This module
runs it and narrates: `Runner` runs each `hzp2p` command line in-process (with the
`main` the command runs, handed down by hzp2p.cli; tests/integration/test_demo_cli_story.py
runs the same list as subprocesses), checks the story's expected outcome from the --json output,
and counts receipts; `Harness` does what is not a command (start, SIGKILL, restart,
start the gateway process) on hzp2p.tools.localcluster's daemons. Half-way through,
the leader is killed and a new one takes over; at the end every node must hold the
identical chain and pass `verify`, and Alice's vaccination receipt, written by one node,
is verified with every daemon stopped against the genesis file alone. Everything it
started is stopped, and the directory removed, whatever happens.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hzp2p.admin.client import AdminClientError
from hzp2p.admin.protocol import AdminError
from hzp2p.crypto.keyfiles import load_signing_key
from hzp2p.ledger.genesis import load_genesis
from hzp2p.tools.demo_research import research_chapter
from hzp2p.tools.demo_story import Chapter, Cmd, V, Wrong, after_stop, chapters
from hzp2p.tools.localcluster import ClusterError, LocalCluster

Execute = Callable[[list[str]], tuple[int, str, str]]
"""argv (after `hzp2p`) -> (exit status, stdout, stderr)."""


class DemoFailed(Exception):
    pass


def in_process(main: Callable[[list[str]], int]) -> Execute:
    """Run `hzp2p ARGV` in this process with the command's own `main` (the same code, without
    a new interpreter for each step); `hzp2p demo` hands it its `main`."""

    def execute(argv: list[str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
        return code, out.getvalue(), err.getvalue()

    return execute


def as_subprocess(argv: list[str]) -> tuple[int, str, str]:
    """Run `hzp2p ARGV` as its own process, as an operator's shell does."""
    p = subprocess.run([sys.executable, "-m", "hzp2p.cli", *argv], capture_output=True,
                       text=True, timeout=120, check=False)
    return p.returncode, p.stdout, p.stderr


class Harness:
    """What happens to processes: the cluster's daemons and the gateway's."""

    def __init__(self, cluster: LocalCluster, gateway: Any) -> None:
        self.c, self.gateway = cluster, gateway
        self.killed: int | None = None
        self.summary: dict[str, Any] = {}

    def live(self) -> list[int]:
        return [k for k in self.c.ids if self.c.running(k)]

    def kill_leader(self) -> str:
        old = self.c.wait_leader(20)
        self.c.kill(old)
        t = time.monotonic()
        new = self.c.wait_leader(30, among=[k for k in self.c.ids if k != old])
        self.killed = old
        self.summary["leader_killed"], self.summary["new_leader"] = old, new
        return f"node {old} killed; node {new} took over after {time.monotonic() - t:.1f}s"

    def restart(self) -> str:
        assert self.killed is not None
        self.c.start(self.killed)
        h = self.c.wait_converged(30)
        return f"node {self.killed} is back and holds the same chain (height {h})"

    def start_gateway(self) -> tuple[int, str, str]:
        node = self.live()[0]
        url, key = self.gateway.start_gateway(node)
        return node, url, key

    def converge(self) -> int:
        return self.c.wait_converged(30)


class Runner:
    """Runs the chapters' steps, narrates them, and checks each outcome."""

    def __init__(self, v: V, harness: Harness | None, execute: Execute, *, quiet: bool) -> None:
        self.v, self.h, self.execute, self.quiet = v, harness, execute, quiet
        self.t0 = time.monotonic()
        self.txs = self.refused = self.commands = 0
        self.log: list[dict[str, Any]] = []
        """Every step run: kind, argv (commands), exit status."""

    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:5.1f}s] {text}" if text else "", flush=True)

    def chapter(self, n: int, ch: Chapter) -> None:
        self.say()
        self.say(f"{n}. {ch.title}" if n else ch.title)
        for step in ch.steps:
            try:
                if isinstance(step, Cmd):
                    self.cmd(step)
                else:
                    self._note(step.say, step.run(self.v, self.h))
            except Wrong as exc:
                raise DemoFailed(f"{step.say}: {exc}") from None

    def _note(self, say: str, line: str | None) -> None:
        self.log.append({"kind": "op", "say": say})
        self.say(f"  !!   {say}" + (f": {line}" if line else ""))

    def cmd(self, step: Cmd) -> None:
        v = self.v
        for path, text in (step.files(v) if step.files else {}).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        argv = step.argv(v)
        deadline = time.monotonic() + step.retry_s
        while True:
            code, out, err = self.execute(argv)
            if code == step.exit or step.refused or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.commands += 1
        result: Any = None
        if step.lines:
            result = [json.loads(line) for line in out.splitlines() if line.strip()]
        elif step.to_file is None and "--json" in argv:
            result = self._json(out)
        self.log.append({"kind": "cmd", "say": step.say, "argv": argv, "exit": code,
                         "result": result})
        receipt = isinstance(result, dict) and result.get("status") in ("committed", "rejected")
        if receipt:
            self.txs += 1
        if step.refused:
            if not (code == 1 and receipt and result["status"] == "rejected"):
                raise DemoFailed(f"{step.say}: expected a refusal, got exit {code}: "
                                 f"{out.strip()[-300:]} {err.strip()[-300:]}")
            self.refused += 1
            self.say(f"  NO   {step.say}: {result['reason']}")
            return
        if code != step.exit:
            raise DemoFailed(f"{step.say}: `hzp2p {' '.join(argv[:4])} ...` exit {code}: "
                             f"{err.strip()[-500:] or out.strip()[-500:]}")
        if step.to_file is not None:
            step.to_file(v).write_text(out, encoding="utf-8")
        if step.keep is not None:
            step.keep(v, result)
        line = step.check(v, result) if step.check is not None else None
        where = (f"  (block {result['height']}, tx {result['tx_hash'][:12]})" if receipt
                 else "")
        mark = "ok  " if step.exit == 0 else "NO  "  # a documented failure, as the story wants
        self.say(f"  {mark} {step.say}{where}" + (f": {line}" if line else ""))

    @staticmethod
    def _json(out: str) -> Any:
        lines = out.strip().splitlines()
        try:
            return json.loads(lines[-1]) if lines else None
        except ValueError:
            return None


def _gateway(cluster: LocalCluster) -> Any:
    try:
        from hzp2p.tools.demo_http import DemoGateway
    except ImportError:
        raise DemoFailed("Alice's app talks to the gateway: install the gateway extra "
                         "(pip install 'hzp2p[gateway]')") from None
    return DemoGateway(cluster)


Hold = Callable[[str, str], None]
"""Called with the gateway's URL and Alice's key (hex) once the story is told, while every
daemon and the gateway still run (`hzp2p demo --keep`: the web pages stay up until it
returns)."""


def story() -> list[Chapter]:
    """Every chapter told while the daemons run, data sharing (issue 18) included."""
    return chapters(before_checks=[research_chapter()])


def tell(root: Path, execute: Execute, *, quiet: bool,
         hold: Hold | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The whole story in `root`: a 3-node cluster, every chapter, then the offline check.
    Returns the summary and the log of every step (commands with their argv, exit status
    and --json output); raises DemoFailed (or a cluster error) if any step goes wrong."""
    t0 = time.monotonic()
    work = root / "institutions"
    work.mkdir(parents=True, exist_ok=True)
    with LocalCluster(root / "c", 3) as cluster:
        genesis = cluster.root / "genesis.toml"
        gateway = _gateway(cluster)
        h = Harness(cluster, gateway)
        v = V(work, genesis, {k: cluster.config(k) for k in cluster.ids}, h.live)
        v["chain_id"] = load_genesis(genesis).chain_id
        run = Runner(v, h, execute, quiet=quiet)
        run.t0 = t0
        run.say(f"starting 3 daemons in {cluster.root} (nodes 1, 2: authorities; node 3: a lab)")
        cluster.start_all()
        run.say(f"node {cluster.wait_up(30)} was elected leader")
        try:
            for n, ch in enumerate(story(), start=1):
                run.chapter(n, ch)
            if hold is not None and gateway.gw is not None:
                # her key file holds the seed as hex: what her page in the browser takes
                alice = load_signing_key(v.file("alice.key"))
                hold(gateway.gw.base_url, bytes(alice).hex())
        finally:
            gateway.stop()
            run.say("stopping every daemon")
    run.chapter(0, after_stop())
    summary = {**h.summary, "height": v["height"], "head": v["head1"],
               "txs": run.txs, "refused": run.refused, "commands": run.commands,
               "nodes": len(cluster.ids), "receipt": v["receipt"],
               "seconds": round(time.monotonic() - t0, 1)}
    return summary, run.log


def _serve_pages(json_output: bool) -> Hold:
    """`--keep`: print the web pages' URLs (Alice's key rides in the fragment, which a
    browser never sends) and keep everything running until Enter or Ctrl-C."""

    def hold(url: str, alice_key_hex: str) -> None:
        print(f"\nweb pages, served until you press Enter or Ctrl-C:\n  dashboard     "
              f"{url}/\n  Alice's page  {url}/citizen#key={alice_key_hex}"
              f"\n  venue check   {url}/venue", file=sys.stderr if json_output else sys.stdout,
              flush=True)
        try:
            sys.stdin.readline()
        except KeyboardInterrupt:
            print()  # past the ^C

    return hold


def run_demo(*, json_output: bool = False, keep: bool = False,
             hzp2p_main: Callable[[list[str]], int] | None = None) -> int:
    """`hzp2p demo`: each step's command runs in-process through `hzp2p_main` (the command's
    main, handed down by hzp2p.cli), or as a subprocess without it."""
    execute = in_process(hzp2p_main) if hzp2p_main is not None else as_subprocess
    root = Path(tempfile.mkdtemp(prefix="hzp2p-demo-"))
    summary: dict[str, Any] | None = None
    code = 0
    try:
        summary, _ = tell(root, execute, quiet=json_output,
                          hold=_serve_pages(json_output) if keep else None)
    except (DemoFailed, ClusterError, AdminClientError, AdminError) as exc:
        print(f"hzp2p demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if summary is not None and code == 0:
        s = summary
        if json_output:
            print(json.dumps({"ok": True, **s}))
        else:
            print(f"\ndemo ok: {s['nodes']} nodes, {s['commands']} `hzp2p` commands, "
                  f"{s['txs']} transactions ({s['refused']} refused as the rules require), "
                  f"chain height {s['height']}, leader {s['leader_killed']} killed and replaced "
                  f"by {s['new_leader']}, identical chains, {s['seconds']}s; Alice's receipt "
                  "verified offline")
    return code
