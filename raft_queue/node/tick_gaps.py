"""TickGaps: how long pysyncobj's tick thread went between two ticks, and a warning when it stalled."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class TickGaps:
    """How long pysyncobj's tick thread went between two ticks (it sends heartbeats, and checks its election
    deadline before it reads what arrived, so a follower stalled for an election timeout starts an election).

    A tick callback on the tick thread; a stall over ``warn_s`` is logged."""

    def __init__(self, warn_s: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._warn_s = warn_s
        self._last: float | None = None
        self.max_gap_s = 0.0
        self.stalls = 0

    def tick(self) -> None:
        now = self._clock()
        if self._last is not None:
            gap = now - self._last
            self.max_gap_s = max(self.max_gap_s, gap)
            if gap > self._warn_s:
                self.stalls += 1
                log.warning("the Raft tick thread stalled for %.2f s", gap)
        self._last = now
