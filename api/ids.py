"""Message ids: the UUIDv7 layout of RFC 9562, written as 32 lowercase hex digits.

48 bits of Unix milliseconds, the version nibble 7, a 12-bit counter (RFC 9562 method 1, so that ids made
in the same millisecond still sort in creation order), the variant bits, then 62 random bits. Ids from one
generator are strictly increasing as strings, even if the wall clock steps back. The id is chosen here, at
the edge, and carried inside the log entry, so every replica stores the same one.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable

_MS_MASK = (1 << 48) - 1
_COUNTER_MAX = 0xFFF


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MessageIdGenerator:
    def __init__(
        self,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        random_bits: Callable[[int], int] | None = None,
    ) -> None:
        self._clock_ms = clock_ms
        # A generator seeded from the OS once: ids need to be unique, not secret, and a getrandom() system call
        # per id costs a GIL hand-over on a thread that shares the GIL with the Raft tick thread.
        self._random_bits = random_bits or random.Random(os.urandom(32)).getrandbits
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def __call__(self) -> str:
        with self._lock:
            now = self._clock_ms()
            if now > self._last_ms:
                self._last_ms = now
                # Start low in the counter space so that many ids still fit in this millisecond.
                self._counter = self._random_bits(9)
            else:  # same millisecond, or the clock stepped back: stay on the last one and count
                self._counter += 1
                if self._counter > _COUNTER_MAX:
                    self._last_ms += 1
                    self._counter = 0
            ms, counter = self._last_ms, self._counter
        rand_b = self._random_bits(62)
        value = (ms & _MS_MASK) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
        return f"{value:032x}"


def timestamp_ms(message_id: str) -> int:
    """The creation time (Unix ms) encoded in an id made by ``MessageIdGenerator``."""
    return int(message_id[:12], 16)
