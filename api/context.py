"""The one place handlers reach the backend: what the app holds, and the calls that translate failures.

``execute`` returns a result that is never ``Rejected`` (those become problems here), and ``barrier`` turns a
replication failure into the read mapping, so no handler repeats the error tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from aiohttp import web

from api.backend import Backend
from api.problems import read_failure, rejected_problem, write_failure
from state_machine.commands import Command
from state_machine.contract import ReplicationError
from state_machine.results import Rejected, Result

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ApiContext:
    backend: Backend
    request_timeout_s: float
    max_request_bytes: int
    new_message_id: Callable[[], str]

    async def execute(
        self, op: Command, *, request_field: Callable[[str | None], str | None] | None = None
    ) -> tuple[Result, int]:
        """Replicates ``op``; returns its (non-rejected) result and commit index, or raises ``Problem``.

        ``request_field`` maps a rejection's field from the command's naming to the request's."""
        try:
            applied = await self.backend.execute(op, timeout=self.request_timeout_s)
        except ReplicationError as exc:
            raise write_failure(exc) from exc
        result = applied.result
        if isinstance(result, Rejected):
            if request_field is not None:
                result = msgspec.structs.replace(result, field=request_field(result.field))
            raise rejected_problem(result)
        return result, applied.commit_index

    async def barrier(self) -> None:
        """A linearizable read point, or ``Problem`` (never an unknown outcome: reads change nothing)."""
        try:
            await self.backend.barrier(timeout=self.request_timeout_s)
        except ReplicationError as exc:
            raise read_failure(exc) from exc


CONTEXT = web.AppKey("raft_queue.api", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.config_dict[CONTEXT]


def expect(result: Result, kind: type[R]) -> R:
    """The result an operation must produce; anything else is a bug (500 ``internal``)."""
    if not isinstance(result, kind):
        raise TypeError(f"backend returned {type(result).__name__} where {kind.__name__} was expected")
    return result
