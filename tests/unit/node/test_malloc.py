"""raft_queue.node.malloc on this machine's glibc: the settings are taken, and a trim really gives memory back."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from raft_queue.node import malloc


def test_trim_gives_freed_heap_memory_back_to_the_system() -> None:
    """In a child process (so the test's own heap does not matter): fragment the heap the way request bodies do,
    free it, and compare the resident size before and after one trim."""
    script = (
        "import sys\n"
        "from raft_queue.node import malloc\n"
        "assert malloc.limit_arenas(2)\n"
        "def rss():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])\n"
        "keep, junk = [], []\n"
        "for i in range(200_000):\n"
        "    (keep if i % 50 == 0 else junk).append(bytearray(1000))\n"
        "del junk\n"
        "before = rss()\n"
        "assert malloc.trim()\n"
        "print(before, rss(), len(keep))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    before, after, _ = (int(x) for x in out.stdout.split())
    assert after < before - 50_000, f"trim gave back only {before - after} KiB of ~190 MiB freed"


def test_the_trim_task_runs_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def fake_trim() -> bool:
        calls.append(0.0)
        return True

    monkeypatch.setattr(malloc, "trim", fake_trim)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(malloc.trim_forever(every_s=0.01))
        deadline = loop.time() + 5
        while len(calls) < 3:
            assert loop.time() < deadline, "the trim task did not run"
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(body())
    assert len(calls) >= 3
