"""What the adapter's tests share: a stand-in for ``os._exit`` that raises instead of ending the test process."""

from __future__ import annotations


class Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def fake_exit(code: int) -> None:
    raise Exited(code)
