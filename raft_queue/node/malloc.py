"""glibc malloc tuning for a long-running node: fewer arenas, and freed memory handed back to the system.

Measured on a leader that had taken 300,000 messages in batches: 343 MiB resident, of which ``malloc_trim(0)``
gave 92 MiB back at once. The memory was free inside malloc's heaps (request bodies, pysyncobj's pickled,
compressed and encrypted copies of each append_entries) but never returned, because glibc only gives back the
top of a heap. Each thread that allocates also gets an arena of its own (up to 8 per core) that keeps its peak.
So a node limits malloc to two arenas before it starts any thread, and trims every ``TRIM_EVERY_S`` seconds from
a worker thread (ctypes releases the GIL during the call). Both do nothing where glibc's functions are missing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter
TRIM_EVERY_S = 5.0


def _libc() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def limit_arenas(arenas: int = 2) -> bool:
    """Call before any thread starts. True when glibc took the setting."""
    fn = getattr(_LIBC, "mallopt", None)
    return bool(fn is not None and fn(M_ARENA_MAX, arenas) == 1)


def trim() -> bool:
    """Gives free heap memory back to the system; True when some was released."""
    fn = getattr(_LIBC, "malloc_trim", None)
    return bool(fn is not None and fn(0) == 1)


async def trim_forever(every_s: float = TRIM_EVERY_S) -> None:
    """A background task for the node's event loop."""
    if getattr(_LIBC, "malloc_trim", None) is None:
        log.debug("malloc_trim is not available; freed memory stays with malloc")
        return
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(trim)
