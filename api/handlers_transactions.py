"""``/v1/transactions``: one-shot transactions, and interactive ones (begin, stage, commit, abort, read).

A transaction's ID is its idempotency key: every write here may be retried with the same ID after an unknown
outcome, and the state machine answers a retry with the recorded outcome (``duplicate: true``).
"""

from __future__ import annotations

from aiohttp import web

from api import parse, render
from api.context import ApiContext, context, expect
from api.problems import Problem, ProblemCode
from api.validation import read_object
from state_machine.commands import (
    AbortTxn,
    BeginTxn,
    Command,
    CommitTxn,
    StageTxn,
    Transact,
    TxnOp,
    txn_fingerprint,
)
from state_machine.results import TxnOutcome, TxnStatus

#: Failures spelled out in a ``transaction_aborted`` detail (all of them are in ``failures``).
DETAIL_FAILURES = 3


async def _execute(ctx: ApiContext, command: Command) -> tuple[TxnOutcome, int]:
    """Executes a transaction command; a rejection names the request's fields (``operations[2]``, not ``ops[2]``)."""
    result, commit_index = await ctx.execute(command, request_field=render.txn_request_field)
    return expect(result, TxnOutcome), commit_index


def _transaction_id(request: web.Request) -> str:
    return parse.client_id(request.match_info["transaction_id"], "transaction_id")


def _aborted_detail(outcome: TxnOutcome) -> str:
    name = f"transaction {outcome.transaction_id!r}"
    if outcome.reason == "timeout":
        return f"{name} was aborted: its timeout passed before it was committed"
    if outcome.reason == "aborted":
        return f"{name} was aborted by the client"
    if not outcome.failures:
        return f"{name} was aborted ({outcome.reason})"
    listed = "; ".join(f"{render.txn_field(f.op, f.field)}: {f.detail}" for f in outcome.failures[:DETAIL_FAILURES])
    more = len(outcome.failures) - DETAIL_FAILURES
    return f"{name} was not applied, its preconditions failed: {listed}" + (f" (and {more} more)" if more > 0 else "")


def aborted_problem(outcome: TxnOutcome) -> Problem:
    """``409 transaction_aborted``, carrying the outcome (reason, failures with field paths, decided_index)."""
    body = render.txn_outcome(outcome)
    extensions = {k: body[k] for k in ("transaction_id", "reason", "failures", "decided_index", "duplicate")}
    return Problem(409, ProblemCode.TRANSACTION_ABORTED, _aborted_detail(outcome), extensions=extensions)


def _decided(outcome: TxnOutcome, commit_index: int, ops: list[TxnOp] | None = None) -> web.Response:
    """A commit's answer: ``200`` committed, ``409 transaction_aborted`` otherwise."""
    if outcome.status is TxnStatus.COMMITTED:
        return render.json_response({**render.txn_outcome(outcome, ops), "commit_index": commit_index})
    if outcome.status is TxnStatus.ABORTED:
        raise aborted_problem(outcome)
    raise RuntimeError(f"transaction {outcome.transaction_id!r} is still pending after a commit")


async def transact(request: web.Request) -> web.Response:
    ctx = context(request)
    parsed = parse.transact(await read_object(request))
    ops = parse.txn_ops(parsed.operations, ctx.new_message_id)
    command = Transact(parsed.transaction_id, txn_fingerprint(ops), ops, ctx.backend.transaction_retention_ms)
    outcome, commit_index = await _execute(ctx, command)
    return _decided(outcome, commit_index, ops)


async def begin(request: web.Request) -> web.Response:
    ctx = context(request)
    transaction_id = _transaction_id(request)
    timeout_ms = parse.begin(await read_object(request, optional=True))
    command = BeginTxn(transaction_id, timeout_ms, ctx.backend.transaction_retention_ms)
    outcome, commit_index = await _execute(ctx, command)
    body = {**render.txn_outcome(outcome), "commit_index": commit_index}
    return render.json_response(body, status=200 if outcome.duplicate else 201)


async def stage(request: web.Request) -> web.Response:
    ctx = context(request)
    transaction_id = _transaction_id(request)
    parsed = parse.stage(await read_object(request))
    ops = parse.txn_ops(parsed.operations, ctx.new_message_id)
    outcome, commit_index = await _execute(ctx, StageTxn(transaction_id, parsed.stage_seq, txn_fingerprint(ops), ops))
    return render.json_response({**render.txn_outcome(outcome), "commit_index": commit_index})


async def commit(request: web.Request) -> web.Response:
    ctx = context(request)
    transaction_id = _transaction_id(request)
    parse.no_fields(await read_object(request, optional=True))
    outcome, commit_index = await _execute(ctx, CommitTxn(transaction_id))
    return _decided(outcome, commit_index)


async def abort(request: web.Request) -> web.Response:
    ctx = context(request)
    transaction_id = _transaction_id(request)
    parse.no_fields(await read_object(request, optional=True))
    outcome, commit_index = await _execute(ctx, AbortTxn(transaction_id))
    return render.json_response({**render.txn_outcome(outcome), "commit_index": commit_index})


async def get_transaction(request: web.Request) -> web.Response:
    ctx = context(request)
    local = parse.local_consistency(request.query)
    transaction_id = _transaction_id(request)
    if not local:
        await ctx.barrier()
    outcome = ctx.backend.transaction(transaction_id)
    if outcome is None:
        raise Problem(
            404,
            ProblemCode.TRANSACTION_NOT_FOUND,
            f"no transaction {transaction_id!r} is recorded (never begun, not applied, or past its retention)",
        )
    return render.json_response(render.txn_outcome(outcome))
