"""Fail fast when no quorum is reachable: the typed, retryable error a submit gets instead
of waiting out its whole --wait (issue 22).

It owns the rule and the words. A node that has known no leader for a whole election
timeout (a follower or candidate cut off with a minority, a leader that stepped down by
check-quorum, every node during a long election) cannot get a transaction committed now;
telling the client at once, with the transaction it signed, lets the client hand the very
same transaction to another node (`submit_raw`: same hash, so it is never applied twice)
within its wait. The error is AdminError code `no_quorum`, e.g.

    no quorum reachable from node 3 (no leader known for 1.2 s); last leader 5 at term 7

with `retry_tx` = the signed transaction (hex) when the request carried one. A batch
(`submit_many`) on a node that cannot reach a quorum is answered at once too (on the
majority side it waits for the election): what is still pending carries these words,
`no_quorum: true` and its own `retry_tx`; a linearizable read (hzp2p.node.reads) gets
the same error. The CLI (hzp2p.admin.cli_submit) retries through its --fallback nodes;
a client without one retries the same node later.
"""

from __future__ import annotations

import trio

from hzp2p.admin.protocol import AdminError
from hzp2p.node.driver import RaftDriver

LEADERLESS_POLL_S = 0.1
"""How often a waiting submit looks again while its node knows no leader."""


class NoQuorum(AdminError):
    """A submit that cannot commit now: this node has known no leader for an election timeout."""

    def __init__(self, message: str, retry_tx: bytes | None) -> None:
        super().__init__(
            "no_quorum", message,
            hint="retry through another node (same transaction: `submit-raw`, or the CLI's "
                 "--fallback), or here once the partition heals",
            retry_tx=retry_tx.hex() if retry_tx else None,
        )


def election_timeout_s(driver: RaftDriver) -> float:
    """The node's (minimum) election timeout in seconds."""
    return float(driver.election_ticks) * driver.tick_s


def leaderless_for_s(driver: RaftDriver) -> float:
    """How long this node has known no leader (0 while it knows one)."""
    if driver.leader_id:
        return 0.0
    now = trio.current_time()
    if driver.leaderless_since is None:
        driver.leaderless_since = now
    return now - driver.leaderless_since


def poll_s(driver: RaftDriver, default_s: float) -> float:
    """How long a waiting submit may sleep before it looks at the leader again."""
    return default_s if driver.leader_id else min(default_s, LEADERLESS_POLL_S)


LEADERLESS_WITH_QUORUM_TIMEOUTS = 4
"""Election timeouts a node that can reach a quorum waits for an election before it, too,
tells its clients (an election under message loss may take a few rounds)."""


def quorum_reachable(driver: RaftDriver) -> bool:
    """This node and the voters it is connected to are a majority of the voters."""
    voters = driver.conf.voters
    reach = {driver.node_id} | set(driver.transport.connected_peers())
    return 2 * len(voters & reach) > len(voters)


def no_quorum(driver: RaftDriver, node_id: int) -> str | None:
    """Why this node cannot get a transaction committed now — it has known no leader for a
    whole election timeout and cannot reach a quorum of voters (on the majority side of a
    partition an election is under way: it waits, up to LEADERLESS_WITH_QUORUM_TIMEOUTS
    election timeouts) — or None."""
    stuck_s = leaderless_for_s(driver)
    timeout_s = election_timeout_s(driver)
    if stuck_s < timeout_s:
        return None
    if stuck_s < LEADERLESS_WITH_QUORUM_TIMEOUTS * timeout_s and quorum_reachable(driver):
        return None
    lead, term = driver.last_leader
    last = f"last leader {lead} at term {term}" if lead else "no leader known since start"
    return f"no quorum reachable from node {node_id} (no leader known for {stuck_s:.1f} s); {last}"


def check(driver: RaftDriver, node_id: int, raw_tx: bytes | None) -> None:
    """Raise NoQuorum (with the signed transaction) if `no_quorum` says why."""
    why = no_quorum(driver, node_id)
    if why is not None:
        raise NoQuorum(why, raw_tx)
