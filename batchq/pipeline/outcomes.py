"""The one way a line's outcome is written: the output-line JSON, recorded once, with the counters, the metrics,
the limiter's slot and the feeding window, in one round trip that also picks the lines to feed next (and, in a
worker, pushes their request messages).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.exceptions import NoScriptError

from batchq import keys
from batchq.pipeline.context import WorkerContext
from batchq.ratelimit import Grant, RateLimiter
from batchq.schemas import output_line
from batchq.state import Usage, placeholder_custom_id
from batchq.storage import ObjectNotFoundError
from batchq.upstream import UpstreamAnswer, UpstreamFailure
from batchq.validation import normalize_line

#: Messages of the outcomes batchq writes itself.
STOP_MESSAGES = {
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
    "batch_expired": "This request could not be executed before the completion window expired.",
}
STOP_COUNTERS = {"batch_cancelled": "cancelled", "batch_expired": "expired"}
#: Lines a recorded outcome feeds at most: its own place, plus one to close a gap the window may have.
FEED_PER_OUTCOME = 2


@dataclass(frozen=True)
class Slot:
    """A limiter grant to give back in the outcome's round trip, with the tokens the call really used."""

    limiter: RateLimiter
    grant: Grant
    tokens: int


@dataclass(frozen=True)
class Done:
    """The line has an outcome (this call's, or an earlier one's)."""

    recorded: bool
    batch_done: bool
    next_lines: list[tuple[str, int]] = field(default_factory=list)
    """Lines the scheduler picked to hand to the broker now (this outcome freed their place)."""
    pushed: bool = False
    """The feed script already pushed ``next_lines``'s messages (``ctx.feed_template``): nothing left to push."""


def record(
    ctx: WorkerContext,
    batch_id: str,
    account: str,
    line: int,
    custom_id: str,
    answer: UpstreamAnswer | None,
    error: dict[str, str] | None,
    *,
    metric: str,
    extra_counter: str = "",
    usage: Usage | None = None,
    feed: bool = True,
    slot: Slot | None = None,
) -> Done:
    outcome = output_line(
        request_id=keys.request_id(batch_id, line),
        custom_id=custom_id,
        status_code=answer.status_code if answer else None,
        upstream_request_id=answer.request_id if answer else None,
        body=answer.body if answer else None,
        error=error,
    )
    for tries_left in (1, 0):
        try:
            with ctx.redis.pipeline(transaction=False) as pipe:
                ctx.lines.record_on(
                    pipe,
                    batch_id,
                    account,
                    line,
                    outcome,
                    success=error is None,
                    metric=metric,
                    extra_counter=extra_counter,
                    usage=usage,
                )
                if feed:
                    ctx.schedule.feed_on(pipe, FEED_PER_OUTCOME, push=ctx.feed_template)
                if slot is not None:
                    slot.limiter.release_on(pipe, slot.grant, slot.tokens)
                replies = pipe.execute()
            if slot is not None:
                slot.limiter.released(slot.grant, replies[-1])  # queued last
            break
        except NoScriptError:
            if not tries_left:
                raise
            # Redis restarted and lost its scripts: load them and record again (first write still wins).
            ctx.lines.load_scripts()
            ctx.schedule.load_scripts()
    result = ctx.lines.recorded(replies[0])
    picked = ctx.schedule.picked(replies[1]) if feed else []
    return Done(result.recorded, result.batch_done, picked, pushed=feed and ctx.feed_template is not None)


def record_success(
    ctx: WorkerContext,
    batch_id: str,
    account: str,
    line: int,
    custom_id: str,
    answer: UpstreamAnswer,
    usage: Usage,
    slot: Slot | None = None,
) -> Done:
    return record(ctx, batch_id, account, line, custom_id, answer, None, metric="succeeded", usage=usage, slot=slot)


def record_failure(
    ctx: WorkerContext, batch_id: str, account: str, line: int, custom_id: str, code: str, message: str
) -> Done:
    return record(ctx, batch_id, account, line, custom_id, None, {"code": code, "message": message}, metric=code)


def record_last_answer(
    ctx: WorkerContext,
    batch_id: str,
    account: str,
    line: int,
    custom_id: str,
    answer: UpstreamAnswer | UpstreamFailure,
) -> Done:
    """The last upstream answer of a line that ran out of attempts (or may not be retried) goes to the error file."""
    if isinstance(answer, UpstreamFailure):
        return record_failure(ctx, batch_id, account, line, custom_id, answer.code, answer.message)
    error = {"code": answer.error_code(), "message": answer.error_message()}
    return record(ctx, batch_id, account, line, custom_id, answer, error, metric="upstream_error")


def record_stop(ctx: WorkerContext, batch_id: str, account: str, line: int, code: str, *, feed: bool = True) -> Done:
    """Record ``batch_cancelled`` / ``batch_expired`` for a line that was not sent."""
    custom_id = read_custom_id(ctx, batch_id, line)
    error = {"code": code, "message": STOP_MESSAGES[code]}
    return record(
        ctx, batch_id, account, line, custom_id, None, error, metric=code, extra_counter=STOP_COUNTERS[code], feed=feed
    )


def read_custom_id(ctx: WorkerContext, batch_id: str, line: int) -> str:
    """The custom_id of a line never sent, read from the input; a placeholder when the input is gone."""
    record_ = ctx.state.get_record(batch_id)
    entry = ctx.lines.index_entry(batch_id, line)
    if entry is None or record_ is None or not record_.input_storage_key:
        return placeholder_custom_id(line + 1)
    try:
        raw = ctx.inputs.read(record_.input_storage_key, entry)
        return normalize_line(raw, entry.line_no, record_.endpoint).custom_id
    except (ValueError, ObjectNotFoundError):
        return placeholder_custom_id(entry.line_no)
