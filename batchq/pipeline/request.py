"""One request line, start to end: claim, rate limit, upstream call, retries, the outcome recorded once.

``process_line`` never raises. It returns what happened; ``Requeue`` asks the task to come back later
(a long wait must not hold a worker slot, nor sit in a worker's memory past the broker's visibility timeout).
A line is claimed in one round trip and recorded in one; while its call runs, the process's heartbeat keeps
its lease alive (pipeline/leases.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from batchq.pipeline.context import WorkerContext
from batchq.pipeline.outcomes import Done, Slot, record_failure, record_last_answer, record_stop, record_success
from batchq.ratelimit import Denied, estimate_tokens
from batchq.retry import backoff_delay, is_retryable_status, next_delay
from batchq.state import Claim, Usage, placeholder_custom_id
from batchq.storage import ObjectNotFoundError
from batchq.upstream import UpstreamAnswer, UpstreamFailure
from batchq.validation import RequestLine, normalize_line

log = logging.getLogger(__name__)

#: After waiting this long for a limiter slot, the batch's status is read again before the call is made. A wait of
#: about one call (the common case: a worker has more slots than the in-flight cap) costs no extra round trip; a
#: cancel meanwhile lets such a line go out as it lets calls already in flight finish.
STALE_CLAIM_S = 1.0


@dataclass(frozen=True)
class Skipped:
    """Nothing to do here: another worker holds the line, it is done, or the batch is not running."""

    reason: str
    duplicate: bool = False
    """A copy of a line another live worker is on (it must not count as the line's chord part)."""


@dataclass(frozen=True)
class Requeue:
    """Come back in ``delay_s`` seconds."""

    delay_s: float
    reason: str


LineResult = Done | Skipped | Requeue


def process_line(ctx: WorkerContext, batch_id: str, line: int) -> LineResult:
    try:
        claim = ctx.lines.claim(batch_id, line, ctx.leases.owner, ctx.settings.lease_s)
    except Exception as exc:  # noqa: BLE001 - Redis away: the message comes back, nothing was taken
        log.warning("batch %s line %d: claim failed (%s: %s); will retry", batch_id, line, type(exc).__name__, exc)
        return Requeue(min(ctx.settings.max_countdown_s, 5.0), type(exc).__name__)
    if claim.verdict == "done":
        return Skipped("already done")
    if claim.verdict == "held":
        return Skipped("leased by another worker", duplicate=True)
    if claim.verdict != "claimed":
        return Skipped(f"batch is {claim.status or 'gone'}")
    ctx.leases.hold(batch_id, line)
    try:
        return _run_claimed(ctx, batch_id, line, claim)
    except Exception as exc:  # noqa: BLE001 - a request task never raises: Redis/store outages delay, not fail
        log.warning("batch %s line %d: %s: %s; will retry", batch_id, line, type(exc).__name__, exc)
        return _requeue(ctx, batch_id, line, min(ctx.settings.max_countdown_s, 5.0), type(exc).__name__)
    finally:
        ctx.leases.drop(batch_id, line)


def _requeue(
    ctx: WorkerContext, batch_id: str, line: int, delay_s: float, reason: str, *, refund_attempt: bool = False
) -> Requeue:
    try:
        ctx.lines.hold_for_requeue(batch_id, line, delay_s, ctx.settings.lease_s, refund_attempt=refund_attempt)
    except Exception:  # noqa: BLE001 - Redis away: the lease lapses and the sweeper sends the line again
        pass
    return Requeue(delay_s, reason)


def _run_claimed(ctx: WorkerContext, batch_id: str, line: int, claim: Claim) -> LineResult:
    account = claim.account
    if claim.stop_code:  # cancelled or expired lines are recorded under the lease: a call in flight is never overruled
        return record_stop(ctx, batch_id, account, line, claim.stop_code)
    if claim.entry is None:
        # The index is gone although the batch runs (Redis lost the key): the sweeper rebuilds it; come back then.
        return _requeue(ctx, batch_id, line, ctx.settings.max_countdown_s, "line index missing", refund_attempt=True)
    try:
        raw = ctx.inputs.read(claim.input_storage_key, claim.entry)
    except ObjectNotFoundError:
        # The input is gone from the store: that will not heal, so the line ends now instead of looping.
        return record_failure(
            ctx,
            batch_id,
            account,
            line,
            placeholder_custom_id(claim.entry.line_no),
            "input_file_missing",
            "The batch's input file is no longer in storage, so this request could not be read.",
        )
    try:
        request = normalize_line(raw, claim.entry.line_no, claim.endpoint)
    except ValueError as exc:
        return record_failure(
            ctx, batch_id, account, line, placeholder_custom_id(claim.entry.line_no), "invalid_request_line", str(exc)
        )
    return _call_until_settled(ctx, batch_id, account, line, request, claim.attempt)


def _call_until_settled(
    ctx: WorkerContext, batch_id: str, account: str, line: int, request: RequestLine, attempt: int
) -> LineResult:
    s = ctx.settings
    try:
        route = ctx.routes.route_for(request.model)
    except LookupError:
        message = f"No upstream route serves model {request.model!r}."
        return record_failure(ctx, batch_id, account, line, request.custom_id, "model_not_found", message)
    limiter = ctx.limiter(route)
    url = ctx.routes.url_for(route, request.url)
    estimate = estimate_tokens(request.body, request.url)
    while True:
        asked = time.monotonic()
        grant = limiter.acquire(estimate, max_wait_s=s.max_inline_wait_s)
        if isinstance(grant, Denied):
            delay = min(grant.retry_after_s, s.max_countdown_s)
            return _requeue(ctx, batch_id, line, delay, f"rate limit ({grant.reason})", refund_attempt=True)
        if time.monotonic() - asked > STALE_CLAIM_S:
            # The claim's view of the batch is old after a wait for a slot: a cancel meanwhile stops this call.
            record = ctx.state.get_record(batch_id)
            stop_code = record.stop_code() if record is not None else "batch_cancelled"
            if stop_code:
                limiter.release(grant, 0)
                return record_stop(ctx, batch_id, account, line, stop_code)
        released = False
        try:
            with ctx.leases.holding_grant(limiter, grant):
                answer = ctx.upstream.post(
                    url, request.body, api_key=route.api_key, batch_id=batch_id, custom_id=request.custom_id
                )
            if isinstance(answer, UpstreamAnswer) and answer.ok:
                usage = Usage.from_body(answer.body)
                slot = Slot(limiter, grant, usage.total_tokens)
                done = record_success(ctx, batch_id, account, line, request.custom_id, answer, usage, slot)
                released = True  # in the same round trip as the outcome
                return done
            limiter.release(grant, 0)
            released = True
        finally:
            if not released:  # whatever went wrong, the in-flight slot goes back
                limiter.release(grant, 0)
        if isinstance(answer, UpstreamAnswer):
            if answer.status_code == 429:
                # Every worker pauses this route briefly; this request itself waits its Retry-After below.
                limiter.cooldown(s.rate_limit_cooldown_s)
            retryable = is_retryable_status(answer.status_code, answer.headers)
            delay = next_delay(attempt, answer.headers, base_s=s.retry_base_delay_s, max_s=s.retry_max_delay_s)
        else:
            retryable = True
            delay = backoff_delay(attempt, base_s=s.retry_base_delay_s, max_s=s.retry_max_delay_s)
        if not retryable or attempt >= s.max_attempts:
            return record_last_answer(ctx, batch_id, account, line, request.custom_id, answer)
        record = ctx.state.get_record(batch_id)
        stop_code = record.stop_code() if record is not None else "batch_cancelled"
        if stop_code:
            return record_stop(ctx, batch_id, account, line, stop_code)
        if delay > s.max_inline_wait_s or isinstance(answer, UpstreamFailure):
            # A timeout already held this slot for a whole read timeout: give the slot back rather than
            # chaining calls inside one task (a rollout's grace period must cover one call, not six).
            return _requeue(ctx, batch_id, line, min(delay, s.max_countdown_s), f"retry after {answer_label(answer)}")
        time.sleep(delay)
        attempt = ctx.lines.add_attempt(batch_id, line)


def answer_label(answer: UpstreamAnswer | UpstreamFailure) -> str:
    return f"HTTP {answer.status_code}" if isinstance(answer, UpstreamAnswer) else answer.code
