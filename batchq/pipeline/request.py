"""One request line, start to end: checks, lease, rate limit, upstream call, retries, the outcome recorded once.

``process_line`` never raises. It returns what happened; ``Requeue`` asks the task to come back later
(a long wait must not hold a worker slot, nor sit in a worker's memory past the broker's visibility timeout).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from batchq import keys
from batchq.keys import request_id
from batchq.pipeline.context import WorkerContext
from batchq.pipeline.intake import read_index_entry
from batchq.ratelimit import Denied, estimate_tokens
from batchq.retry import backoff_delay, is_retryable_status, next_delay
from batchq.schemas import FINAL_STATUSES, output_line
from batchq.state import Usage
from batchq.upstream import UpstreamAnswer, UpstreamFailure
from batchq.validation import RequestLine, normalize_line

log = logging.getLogger(__name__)

#: Messages of the outcomes batchq writes itself.
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass(frozen=True)
class Done:
    """The line has an outcome (this call's, or an earlier one's)."""

    recorded: bool
    batch_done: bool


@dataclass(frozen=True)
class Skipped:
    """Another worker holds the line's lease, or the batch is not running."""

    reason: str


@dataclass(frozen=True)
class Requeue:
    """Come back in ``delay_s`` seconds."""

    delay_s: float
    reason: str


LineResult = Done | Skipped | Requeue


def record_batch_outcome(ctx: WorkerContext, batch_id: str, line: int, code: str) -> Done:
    """Record ``batch_cancelled`` / ``batch_expired`` for a line that was not sent."""
    message = CANCELLED_MESSAGE if code == "batch_cancelled" else EXPIRED_MESSAGE
    counter = {"batch_cancelled": "cancelled", "batch_expired": "expired"}.get(code, "")
    custom_id = _custom_id_or_placeholder(ctx, batch_id, line)
    return _record(
        ctx, batch_id, line, custom_id, None, {"code": code, "message": message}, metric=code, extra_counter=counter
    )


def process_line(ctx: WorkerContext, batch_id: str, line: int) -> LineResult:
    try:
        return _process(ctx, batch_id, line)
    except Exception as exc:  # noqa: BLE001 - a request task never raises: Redis/store outages delay, not fail
        log.warning("batch %s line %d: %s: %s; will retry", batch_id, line, type(exc).__name__, exc)
        try:
            ctx.state.release_lease(batch_id, line)
        except Exception:  # noqa: BLE001 - Redis itself may be the thing that is down
            pass
        return Requeue(min(ctx.settings.max_countdown_s, 5.0), f"{type(exc).__name__}")


def _process(ctx: WorkerContext, batch_id: str, line: int) -> LineResult:
    s = ctx.settings
    record = ctx.state.get_record(batch_id)
    if record is None:
        return Skipped("unknown batch")
    status = record["status"]
    if status in FINAL_STATUSES or status == "validating":
        return Skipped(f"batch is {status}")  # a late duplicate must not move a final batch's counters

    # Long enough for one attempt plus the waits around it; the holder extends it before every attempt.
    lease_s = s.upstream_connect_timeout_s + s.upstream_read_timeout_s + 2 * s.max_inline_wait_s + s.lease_margin_s
    lease = ctx.state.take_lease(batch_id, line, lease_s)
    if lease.done:
        return Done(False, False)
    if not lease.acquired:
        # Another worker is on it (a redelivered duplicate), or one that died holds it until the lease lapses:
        # come back then, so the line cannot be lost with the dead worker.
        return Requeue(min(lease.held_for_s + 0.5, s.max_countdown_s), "leased by another worker")
    # Cancelled or expired lines are recorded under the lease too, so a call in flight is never overruled.
    if status == "cancelling":
        return record_batch_outcome(ctx, batch_id, line, "batch_cancelled")
    if time.time() >= int(record.get("expires_at", 0)):
        return record_batch_outcome(ctx, batch_id, line, "batch_expired")
    entry = read_index_entry(ctx, batch_id, line)
    if entry is None:
        ctx.state.release_lease(batch_id, line)
        return Skipped("index gone")
    offset, length, line_no = entry
    raw = ctx.store.read_range(record["input_storage_key"], offset, length)
    try:
        request = normalize_line(raw, line_no, record["endpoint"])
    except ValueError as exc:
        return _record_failure(ctx, batch_id, line, f"line-{line_no}", "invalid_request_line", str(exc))
    return _call_until_settled(ctx, batch_id, line, request, lease_s)


def _call_until_settled(
    ctx: WorkerContext, batch_id: str, line: int, request: RequestLine, lease_s: float
) -> LineResult:
    s = ctx.settings
    try:
        route = ctx.routes.route_for(request.model)
    except LookupError:
        return _record_failure(
            ctx,
            batch_id,
            line,
            request.custom_id,
            "model_not_found",
            f"No upstream route serves model {request.model!r}.",
        )
    limiter = ctx.limiter(route)
    url = ctx.routes.url_for(route, request.url)
    estimate = estimate_tokens(request.body)
    first_attempt = True
    while True:
        grant = limiter.acquire(estimate, max_wait_s=s.max_inline_wait_s)
        if isinstance(grant, Denied):
            ctx.state.release_lease(batch_id, line)
            return Requeue(min(grant.retry_after_s, s.max_countdown_s), f"rate limit ({grant.reason})")
        if not first_attempt:  # the lease was just taken for the first one
            ctx.state.extend_lease(batch_id, line, lease_s)
        first_attempt = False
        attempt = ctx.state.add_attempt(batch_id, line)
        answer = ctx.upstream.post(
            url, request.body, api_key=route.api_key, batch_id=batch_id, custom_id=request.custom_id
        )
        if isinstance(answer, UpstreamAnswer):
            usage = Usage.from_body(answer.body) if answer.ok else Usage()
            limiter.release(grant, usage.total_tokens if answer.ok else 0)
            if answer.ok:
                return _record_success(ctx, batch_id, line, request.custom_id, answer, usage)
            if answer.status_code == 429:
                # Every worker pauses this route briefly; this request itself waits its Retry-After below.
                limiter.cooldown(s.rate_limit_cooldown_s)
            retryable = is_retryable_status(answer.status_code, answer.headers)
            delay = next_delay(attempt, answer.headers, base_s=s.retry_base_delay_s, max_s=s.retry_max_delay_s)
        else:
            limiter.release(grant, 0)
            retryable = True
            delay = backoff_delay(attempt, base_s=s.retry_base_delay_s, max_s=s.retry_max_delay_s)
        if not retryable or attempt >= s.max_attempts:
            return _record_last_answer(ctx, batch_id, line, request.custom_id, answer)
        stop_code = _stop_code(ctx, batch_id)
        if stop_code:
            return record_batch_outcome(ctx, batch_id, line, stop_code)
        if delay > s.max_inline_wait_s or isinstance(answer, UpstreamFailure):
            # A timeout already held this slot for a whole read timeout: give the slot back rather than
            # chaining calls inside one task (a rollout's grace period must cover one call, not six).
            ctx.state.release_lease(batch_id, line)
            return Requeue(min(delay, s.max_countdown_s), f"retry after {answer_label(answer)}")
        time.sleep(delay)


def answer_label(answer: UpstreamAnswer | UpstreamFailure) -> str:
    return f"HTTP {answer.status_code}" if isinstance(answer, UpstreamAnswer) else answer.code


def _stop_code(ctx: WorkerContext, batch_id: str) -> str:
    """``batch_cancelled`` / ``batch_expired`` when the batch stopped while this line was retrying, else ''."""
    record = ctx.state.get_record(batch_id) or {}
    if record.get("status") in ("cancelling", "cancelled"):
        return "batch_cancelled"
    if time.time() >= int(record.get("expires_at", 0) or 0):
        return "batch_expired"
    return ""


def _record(
    ctx: WorkerContext,
    batch_id: str,
    line: int,
    custom_id: str,
    answer: UpstreamAnswer | None,
    error: dict[str, str] | None,
    *,
    metric: str,
    extra_counter: str = "",
    usage: Usage | None = None,
) -> Done:
    """The one way an outcome is written: the output-line JSON, recorded once, counted in /metrics once."""
    outcome = output_line(
        request_id=request_id(batch_id, line),
        custom_id=custom_id,
        status_code=answer.status_code if answer else None,
        upstream_request_id=answer.request_id if answer else None,
        body=answer.body if answer else None,
        error=error,
    )
    result = ctx.state.record_outcome(
        batch_id, line, outcome, success=error is None, extra_counter=extra_counter, usage=usage
    )
    if result.recorded:
        ctx.redis.hincrby(keys.metrics_totals(), metric, 1)
    return Done(result.recorded, result.batch_done)


def _record_success(
    ctx: WorkerContext, batch_id: str, line: int, custom_id: str, answer: UpstreamAnswer, usage: Usage
) -> Done:
    return _record(ctx, batch_id, line, custom_id, answer, None, metric="succeeded", usage=usage)


def _record_last_answer(
    ctx: WorkerContext, batch_id: str, line: int, custom_id: str, answer: UpstreamAnswer | UpstreamFailure
) -> Done:
    """The last upstream answer of a line that ran out of attempts (or may not be retried) goes to the error file."""
    if isinstance(answer, UpstreamFailure):
        return _record_failure(ctx, batch_id, line, custom_id, answer.code, answer.message)
    error = {"code": answer.error_code(), "message": answer.error_message()}
    return _record(ctx, batch_id, line, custom_id, answer, error, metric="upstream_error")


def _record_failure(ctx: WorkerContext, batch_id: str, line: int, custom_id: str, code: str, message: str) -> Done:
    return _record(ctx, batch_id, line, custom_id, None, {"code": code, "message": message}, metric=code)


def _custom_id_or_placeholder(ctx: WorkerContext, batch_id: str, line: int) -> str:
    """The custom_id of a line never sent, read from the input. Store errors propagate (the caller retries)."""
    record: dict[str, Any] = ctx.state.get_record(batch_id) or {}
    entry = read_index_entry(ctx, batch_id, line)
    if entry is None or not record.get("input_storage_key"):
        return f"line-{line + 1}"  # the index is gone only after finalize: nothing reads this then
    offset, length, line_no = entry
    raw = ctx.store.read_range(record["input_storage_key"], offset, length)
    try:
        return normalize_line(raw, line_no, record["endpoint"]).custom_id
    except ValueError:
        return f"line-{line_no}"
