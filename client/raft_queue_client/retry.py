"""When to send a request again, and how long to wait first.

The waits are exponential with "equal jitter": before retry ``n`` (1-based) the client waits a uniformly
random time in ``[c/2, c]`` where ``c = min(backoff_max_s, backoff_initial_s * 2**(n-1))``, so that clients
that failed together do not come back together. A ``Retry-After`` from the server is a floor on that wait (the transport
applies it only when the retry goes back to the node that sent it),
capped at ``backoff_max_s`` (a misbehaving server cannot park a client for an hour).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: Attempts in all, the first included (redirect hops within one attempt do not count).
    max_attempts: int = 8
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not (math.isfinite(self.backoff_initial_s) and self.backoff_initial_s >= 0):
            raise ValueError("backoff_initial_s must be a finite number >= 0")
        if not (math.isfinite(self.backoff_max_s) and self.backoff_max_s >= self.backoff_initial_s):
            raise ValueError("backoff_max_s must be a finite number >= backoff_initial_s")

    def delay_s(self, retry: int, retry_after_s: float | None, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (1 = the second attempt)."""
        exponent = min(max(retry - 1, 0), _MAX_EXPONENT)
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0**exponent)
        delay = rng.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self.backoff_max_s)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds (fractions tolerated) or an HTTP-date; ``None`` if absent or
    unreadable. Never negative."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
