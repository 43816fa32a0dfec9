"""What needs an operator's attention, as metrics: overdue readings and appeals, failed hand-overs.

It owns the metric families of conditions judged on committed state at the head's block
time — lots whose readings are overdue (hzp2p.contracts.coldchain: `lot.monitor`),
appeals open longer than the health-code rules allow (hzp2p.contracts.codelife) — and
of this node's key hand-overs (hzp2p.node.handover). The state conditions are counted
by a task after each new head, at most once a second (a storage read, which a collect hook on the Trio thread
cannot make), the hand-over counters from the Handover's own counts at each collection.
`admin watch` shows the same conditions as events (hzp2p.contracts.events).

    hzp2p_lots_readings_overdue        gauge: lots whose readings are overdue now
    hzp2p_appeals_overdue              gauge: appeals open past the rules' limit now
    hzp2p_handover_total{outcome}      counter: shared | failed | retried | dropped
"""

from __future__ import annotations

import trio
from prometheus_client import Counter, Gauge

from hzp2p.contracts import codelife, coldchain
from hzp2p.contracts import domain_queries as dq
from hzp2p.node.applier import Applier
from hzp2p.node.handover import Handover
from hzp2p.node.metrics import MetricsRegistry
from hzp2p.storage import AsyncStorage, SyncStorage

PERIOD_S = 1.0
"""The counts are refreshed after a new head, at most this often (a scrape between shows
the previous count)."""


def count_overdue(s: SyncStorage) -> dict[str, int]:
    """{lots, appeals} overdue at the head's block time."""
    _, now = dq.head_of(s)
    lots = 0
    for mon in coldchain.monitored_lots(s):
        lot = dq.lot(s, mon["lot_id"])
        due = None if lot is None else coldchain.overdue(s, lot, now)
        lots += 1 if due is not None and due["overdue"] else 0
    return {"lots": lots, "appeals": len(codelife.overdue_appeals(s, now))}


class Alerts:
    """See the module docstring. `run` is a task of the node; `register` adds the metrics."""

    def __init__(self, storage: AsyncStorage, applier: Applier, handover: Handover) -> None:
        self.storage = storage
        self.applier = applier
        self.handover = handover
        self.overdue: dict[str, int] = {"lots": 0, "appeals": 0}

    async def run(self) -> None:
        height = 0
        while True:
            await self.applier.wait_height(height + 1)
            height = self.applier.head.height
            self.overdue = await self.storage.call(count_overdue)
            await trio.sleep(PERIOD_S)  # at most once a period, however fast blocks come

    def register(self, registry: MetricsRegistry) -> None:
        lots = Gauge("hzp2p_lots_readings_overdue",
                     "Monitored lots whose readings are overdue at the head's block time.",
                     registry=registry)
        appeals = Gauge("hzp2p_appeals_overdue",
                        "Health-code appeals open longer than the rules' limit.",
                        registry=registry)
        handovers = Counter("hzp2p_handover_total",
                            "Automatic key hand-overs by outcome (shared, failed after its "
                            "retries, retried, dropped from a full queue).", ["outcome"],
                            registry=registry)
        counted: dict[str, int] = {"shared": 0, "failed": 0, "retried": 0, "dropped": 0}
        for outcome in counted:
            handovers.labels(outcome=outcome)

        def collect() -> None:
            lots.set(self.overdue["lots"])
            appeals.set(self.overdue["appeals"])
            ho = self.handover
            now = {"shared": ho.shared, "failed": ho.failed, "retried": ho.retries,
                   "dropped": ho.dropped}
            for key, value in now.items():
                if value > counted[key]:
                    handovers.labels(outcome=key).inc(value - counted[key])
            counted.update(now)

        registry.add_collect_hook(collect)
