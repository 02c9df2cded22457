"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from batchq import keys
from batchq.api.deps import ServicesDep
from batchq.broker import QUEUES
from batchq.retention import storage_metric_lines

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> JSONResponse:
    """200 while the process serves requests (a liveness probe that does not restart it during an outage)."""
    return JSONResponse({"status": "ok"})


@router.get("/healthz")
def healthz(services: ServicesDep) -> JSONResponse:
    """200 when Redis and the object store answer, 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        services.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is "down", reported as such
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        services.store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["store"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)


@router.get("/metrics")
def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus text: active batches, queue depths, per-status batch counts of active batches."""
    r = services.redis
    lines = [
        "# HELP batchq_active_batches Batches not yet in a final status.",
        "# TYPE batchq_active_batches gauge",
        f"batchq_active_batches {r.scard(keys.active_batches())}",
        "# HELP batchq_queue_depth Messages waiting in each Celery queue (not counting prefetched ones).",
        "# TYPE batchq_queue_depth gauge",
    ]
    lines += [f'batchq_queue_depth{{queue="{q}"}} {r.llen(q)}' for q in QUEUES]
    totals = {k.decode(): int(v) for k, v in r.hgetall(keys.metrics_totals()).items()}
    lines += [
        "# HELP batchq_requests_total Request lines that reached an outcome, by outcome.",
        "# TYPE batchq_requests_total counter",
    ]
    lines += [f'batchq_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(totals.items())]
    lines += storage_metric_lines(services.files.storage_bytes())  # issue 14
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
