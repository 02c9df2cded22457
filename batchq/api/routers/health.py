"""Liveness, readiness and Prometheus metrics.

``/livez`` is async and touches nothing, so it answers while every threadpool slot waits on a stalled
dependency. ``/healthz`` checks Redis and the store in threads of its own limiter, each within a deadline.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from batchq import keys
from batchq.api.deps import Services, ServicesDep
from batchq.broker import QUEUES
from batchq.pipeline.retention import storage_metric_lines
from batchq.state.metrics import AccountLines, account_lines

router = APIRouter(tags=["health"])

#: Threads for health checks, apart from the request handlers' pool (which a stall may have filled).
_HEALTH_THREADS = anyio.CapacityLimiter(4)


@router.get("/livez")
async def livez() -> JSONResponse:
    """200 while the process serves requests (a liveness probe that does not restart it during an outage)."""
    return JSONResponse({"status": "ok"})


@router.get("/healthz")
async def healthz(services: ServicesDep) -> JSONResponse:
    """200 when Redis and the object store answer, 503 with what is down otherwise."""
    # One read timeout and a second of slack: a stalled dependency is reported, not waited out with retries.
    checks = {
        "redis": await _check(services.redis.ping, services.settings.api_redis_timeout_s + 1),
        "store": await _check(services.store.ping, services.settings.api_store_timeout_s + 1),
    }
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)


async def _check(ping: Callable[[], object], deadline_s: float) -> str:
    try:
        with anyio.fail_after(deadline_s):
            await anyio.to_thread.run_sync(ping, abandon_on_cancel=True, limiter=_HEALTH_THREADS)
        return "ok"
    except TimeoutError:
        return "error: no answer within the deadline"
    except Exception as exc:  # noqa: BLE001 - any failure is "down", reported as such
        return f"error: {type(exc).__name__}"


def account_metric_lines(figures: dict[str, AccountLines]) -> list[str]:
    """Per-account lines: waiting their turn, handed out and not yet recorded, recorded (by outcome)."""
    out = [
        "# HELP batchq_account_lines_waiting Lines of running batches not yet handed to a worker (queued).",
        "# TYPE batchq_account_lines_waiting gauge",
        *(f'batchq_account_lines_waiting{{account="{_label(a)}"}} {f.waiting}' for a, f in sorted(figures.items())),
        "# HELP batchq_account_lines_in_flight Lines handed to the workers and not yet recorded.",
        "# TYPE batchq_account_lines_in_flight gauge",
        *(f'batchq_account_lines_in_flight{{account="{_label(a)}"}} {f.in_flight}' for a, f in sorted(figures.items())),
        "# HELP batchq_account_lines_total Lines recorded, by outcome.",
        "# TYPE batchq_account_lines_total counter",
    ]
    for account, f in sorted(figures.items()):
        out.append(f'batchq_account_lines_total{{account="{_label(account)}",outcome="completed"}} {f.completed}')
        out.append(f'batchq_account_lines_total{{account="{_label(account)}",outcome="failed"}} {f.failed}')
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


#: One part of /metrics: its lines, from maintained counters (a scrape never scans the keyspace).
MetricSection = Callable[[Services], list[str]]


def batch_and_queue_lines(services: Services) -> list[str]:
    r = services.redis
    with r.pipeline(transaction=False) as pipe:
        pipe.scard(keys.active_batches())
        for queue in QUEUES:
            pipe.llen(queue)
        pipe.hgetall(keys.metrics_totals())
        active, *depths, raw_totals = pipe.execute()
    totals = {k.decode(): int(v) for k, v in raw_totals.items()}
    return [
        "# HELP batchq_active_batches Batches not yet in a final status.",
        "# TYPE batchq_active_batches gauge",
        f"batchq_active_batches {active}",
        "# HELP batchq_queue_depth Messages waiting in each Celery queue (not counting prefetched ones).",
        "# TYPE batchq_queue_depth gauge",
        *(f'batchq_queue_depth{{queue="{q}"}} {depth}' for q, depth in zip(QUEUES, depths, strict=True)),
        "# HELP batchq_requests_total Request lines that reached an outcome, by outcome.",
        "# TYPE batchq_requests_total counter",
        *(f'batchq_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(totals.items())),
    ]


def storage_lines(services: Services) -> list[str]:
    return storage_metric_lines(services.files.storage_bytes())


def per_account_lines(services: Services) -> list[str]:
    return account_metric_lines(account_lines(services.redis))


#: The sections of /metrics, in order; a new figure is one more function here.
METRIC_SECTIONS: tuple[MetricSection, ...] = (batch_and_queue_lines, storage_lines, per_account_lines)


async def metrics_access(request: Request, services: ServicesDep) -> None:
    """BATCHQ_METRICS_TOKEN, or loopback clients only (async: pure CPU, no threadpool slot)."""
    host = request.client.host if request.client else ""
    services.metrics_guard.check(request.headers.get("authorization"), host)


@router.get("/metrics", dependencies=[Depends(metrics_access)])
def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus text: active batches, queue depths, outcomes, stored bytes, per-account lines."""
    lines = [line for section in METRIC_SECTIONS for line in section(services)]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
