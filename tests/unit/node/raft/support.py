"""What the adapter's tests share: a stand-in for ``os._exit`` that raises instead of ending the test process, a spy
that notes a call before making it, and a fixture body that opens nodes' files by name and closes them all at
teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


def closed_at_teardown(tmp_path: Path, open_: Callable[[Path], C]) -> Iterator[Callable[[str], C]]:
    """For a fixture (``yield from``): ``make(name)`` is ``open_(tmp_path / name)``; all of them close at the end."""
    opened: list[C] = []

    def make(name: str) -> C:
        opened.append(open_(tmp_path / name))
        return opened[-1]

    yield make
    for item in opened:
        item.close()


class Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def fake_exit(code: int) -> None:
    raise Exited(code)


def spy(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, note: Callable[..., object]) -> None:
    """Replaces ``owner.name`` (for the test) by a wrapper that calls ``note`` with the arguments, then the real one."""
    real = getattr(owner, name)

    def noted(*args: Any) -> Any:
        note(*args)
        return real(*args)

    monkeypatch.setattr(owner, name, noted)
