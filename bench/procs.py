"""Processes the race starts: each in its own session, stopped by PID (its group, then any descendant left).

Brokers fork helpers (RabbitMQ's beam.smp forks erl_child_setup and inet_gethost, which start their own process
groups), so a stop first records every descendant of the PID we started (from /proc), then signals the group and
each recorded PID. Nothing is ever looked up or stopped by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

STOP_GRACE_S = 10.0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Proc:
    """A started process with its own session (so its group id is its PID)."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str] | None = None, log: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        family = [self.pid, *descendants(self.pid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            for pid in family:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + (STOP_GRACE_S if sig == signal.SIGTERM else 5.0)
            while time.monotonic() < deadline:
                self.popen.poll()
                if not any(_alive(p) for p in family):
                    return
                time.sleep(0.05)
        left = [p for p in family if _alive(p)]
        if left:
            raise RuntimeError(f"{self.name}: processes {left} did not stop")


class Procs:
    """Everything one cluster started; ``stop_all`` stops it in reverse order and reports any failure at the end."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None, log: Path) -> Proc:
        proc = Proc(name, argv, env=env, log=log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        errors: list[str] = []
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except RuntimeError as exc:
                errors.append(str(exc))
        self.procs.clear()
        if errors:
            raise RuntimeError("; ".join(errors))
