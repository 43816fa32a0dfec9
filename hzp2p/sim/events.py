"""The virtual-time event loop: one heap of (time_ms, seq, callback, args).

Owns simulated time and the order of everything that happens in a run. No
threads, no wall clock: an event runs to completion, then the next earliest one
(ties broken by insertion order) runs. Together with RNGs derived from one seed
(`derive_rng`) this makes a run a pure function of its seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

MAX_PENDING_EVENTS = 1_000_000
"""Bound on the queue; a run that schedules more than this is a simulator bug."""

Callback = Callable[..., None]


def derive_rng(parent: random.Random) -> random.Random:
    """A child RNG whose stream depends only on the parent's state (deterministic)."""
    return random.Random(parent.getrandbits(64))


class EventLoop:
    """A min-heap of timed callbacks in integer virtual milliseconds."""

    __slots__ = ("_heap", "_seq", "now_ms", "steps")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callback, tuple[Any, ...]]] = []
        self._seq = 0
        self.now_ms = 0
        self.steps = 0

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, time_ms: int, fn: Callback, *args: Any) -> None:
        """Run `fn(*args)` at virtual time `time_ms` (never in the past)."""
        assert time_ms >= self.now_ms, f"event scheduled in the past: {time_ms} < {self.now_ms}"
        assert len(self._heap) < MAX_PENDING_EVENTS, "event queue bound exceeded"
        self._seq += 1
        heapq.heappush(self._heap, (time_ms, self._seq, fn, args))

    def after(self, delay_ms: int, fn: Callback, *args: Any) -> None:
        assert delay_ms >= 0
        self.at(self.now_ms + delay_ms, fn, *args)

    def next_time_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def step(self) -> bool:
        """Run the earliest event; False when the queue is empty."""
        if not self._heap:
            return False
        time_ms, _, fn, args = heapq.heappop(self._heap)
        assert time_ms >= self.now_ms, "virtual time went backwards"
        self.now_ms = time_ms
        self.steps += 1
        fn(*args)
        return True

    def run_until(
        self,
        end_ms: int,
        after_step: Callable[[], bool] | None = None,
        max_steps: int = 10_000_000,
    ) -> bool:
        """Run events with time <= end_ms; stop early when `after_step()` returns True.

        Returns True if stopped early by `after_step`. `max_steps` bounds the loop.
        """
        heap = self._heap
        budget = max_steps
        while heap and heap[0][0] <= end_ms:
            budget -= 1
            assert budget >= 0, "step budget exceeded (livelock in the simulator?)"
            self.step()
            if after_step is not None and after_step():
                return True
        self.now_ms = max(self.now_ms, end_ms)
        return False
