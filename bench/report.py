"""Figures of one measurement, medians over repeats, and the tables the bench prints."""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

MB = 1024 * 1024


def emit(text: str = "") -> None:
    """Print a line and flush (the bench runs for minutes; show progress as it goes)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Measurement:
    """One side (``batchq``, ``celery``, ``asyncio``, ``cookbook``) of one run. None = does not apply here."""

    system: str
    requests: int
    completed: int = 0
    failed: int = 0
    wall_s: float = 0.0
    """batchq: POST /v1/batches returned -> GET shows ``completed``. celery: chord applied -> callback ran.
    Baselines: first request -> last answer. After a timeout: the time it was given."""
    in_flight: int | None = None
    """Requests in flight the ideal assumes: BATCHQ_MAX_IN_FLIGHT, the raw Celery concurrency, the baseline's cap."""
    ideal_s: float | None = None
    """N / rate limit, or N * latency / in_flight, whichever is longer (None at 0 ms without a limit)."""
    efficiency: float | None = None
    """ideal_s / wall_s (with a rate limit: its utilization)."""
    rps: float = 0.0
    """completed / wall_s."""
    utilization: float | None = None
    """(N / wall_s) / (rpm / 60) = ideal_s / wall_s."""
    upstream_rps: float | None = None
    """Calls the simulator received / (its last arrival - its first): the sending rate without intake/finalize."""
    peak_in_flight: int | None = None
    """The simulator's largest number of requests being answered at once."""
    http_429: int = 0
    retries: int = 0
    """Upstream calls beyond one a request (the simulator's ``received`` - N)."""
    requeues: int | None = None
    """batchq: lines sent back to the queue as a Celery retry (rate-limit waits over 5 s, backoffs)."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    """Upstream call latency measured client-side (in the worker around httpx; in the baselines around the call)."""
    peak_rss_mb: float = 0.0
    """batchq / celery: the worker process trees, summed; baselines: the client process."""
    peak_rss_per_worker_mb: float | None = None
    """The largest peak RSS of one worker process tree (prefork: parent and children together)."""
    idle_rss_mb: float | None = None
    """The worker trees' RSS, summed, just before the batch."""
    rss_per_in_flight_kb: float | None = None
    """(peak_rss_mb - idle_rss_mb) / peak_in_flight: what one more request in flight costs."""
    cpu_s: float = 0.0
    """batchq: workers + API + Redis; celery: worker + Redis + the driver that applies the chord; baselines: the
    client. The simulator is excluded on every side."""
    worker_cpu_s: float | None = None
    redis_peak_mb: float | None = None
    redis_commands_per_request: float | None = None
    """Redis commands (INFO commandstats calls, all clients, Lua-called ones included) / N."""
    max_in_window: int = 0
    publish_s: float | None = None
    """celery: how long applying the chord (publishing N header messages from the driver) took, within wall_s."""
    pool: str = ""
    """The pool and concurrency the workers reported at start, e.g. ``threads -c 64 x 1``."""
    timed_out: bool = False
    ok: bool = True
    error: str = ""

    @property
    def cpu_ms_per_request(self) -> float:
        """Per request done (all N, or those done before a timeout)."""
        done = (self.completed + self.failed) if self.timed_out else self.requests
        return self.cpu_s * 1000 / done if done else 0.0


def median_of(runs: Sequence[Measurement]) -> Measurement:
    """Field-by-field median of the successful runs (all runs if none succeeded)."""
    good = [r for r in runs if r.ok] or list(runs)
    values: dict[str, object] = {}
    for f in fields(Measurement):
        items = [getattr(r, f.name) for r in good]
        numbers = [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(items) and f.name != "requests":
            med = statistics.median(numbers)
            values[f.name] = round(med) if all(isinstance(v, int) for v in numbers) else med
    ok = all(r.ok for r in runs)
    error = "; ".join(r.error for r in runs if r.error)
    timed_out = any(r.timed_out for r in runs)
    return replace(good[0], **values, ok=ok, error=error, timed_out=timed_out)  # type: ignore[arg-type]


def _fmt(value: float | None, digits: int = 1, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{value * 100:.1f} %"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


#: Table rows: label, attribute, digits (-1 = percent), whether a ratio makes sense.
ROWS: tuple[tuple[str, str, int, bool], ...] = (
    ("time to complete (s)", "wall_s", 2, True),
    ("ideal (s)", "ideal_s", 2, False),
    ("efficiency (ideal / time)", "efficiency", -1, True),
    ("requests/s", "rps", 1, True),
    ("upstream rate first->last call (req/s)", "upstream_rps", 1, True),
    ("requests in flight: allowed", "in_flight", 0, False),
    ("requests in flight: peak at upstream", "peak_in_flight", 0, False),
    ("upstream 429s", "http_429", 0, False),
    ("retries (extra upstream calls)", "retries", 0, False),
    ("re-queued tasks", "requeues", 0, False),
    ("upstream call p50 (ms)", "latency_p50_ms", 1, True),
    ("upstream call p99 (ms)", "latency_p99_ms", 1, True),
    ("peak RSS, all processes (MB)", "peak_rss_mb", 1, True),
    ("peak RSS per worker process (MB)", "peak_rss_per_worker_mb", 1, True),
    ("RSS per in-flight request (KB)", "rss_per_in_flight_kb", 1, True),
    ("chord publish time, in the time (s)", "publish_s", 2, False),
    ("CPU time (s)", "cpu_s", 2, True),
    ("CPU per request (ms)", "cpu_ms_per_request", 2, True),
    ("Redis used_memory_peak (MB)", "redis_peak_mb", 1, False),
    ("Redis commands per request", "redis_commands_per_request", 1, True),
)

_W0, _W = 40, 13


def table(title: str, sides: Sequence[Measurement]) -> str:
    """Side-by-side figures of one scenario, batchq first, with batchq/other ratios."""
    others = list(sides[1:])
    head = f"{'metric':<{_W0}}" + "".join(f"{m.system:>{_W}}" for m in sides)
    head += "".join(f"{'bq/' + m.system:>{_W}}" for m in others)
    lines = [title, "  ran: " + "; ".join(f"{m.system} {m.pool or '-'}" for m in sides), head, "-" * len(head)]
    lines.append(f"{'completed / N':<{_W0}}" + "".join(f"{f'{m.completed}/{m.requests}':>{_W}}" for m in sides))
    for label, attr, digits, with_ratio in ROWS:
        values = [getattr(m, attr) for m in sides]
        row = f"{label:<{_W0}}" + "".join(f"{_fmt(v, max(digits, 0), digits < 0):>{_W}}" for v in values)
        if with_ratio:
            row += "".join(f"{_ratio(values[0], v):>{_W}}" for v in values[1:])
        lines.append(row)
    for side in sides:
        if not side.ok:
            lines.append(f"!! {side.system} {'TIMED OUT' if side.timed_out else 'FAILED'}: {side.error}")
    return "\n".join(lines)


def summary(rows: Sequence[tuple[str, dict[str, float | None], list[tuple[str, float | None, float]], bool]]) -> str:
    """One line per scenario: its headline figures and issue 10's targets (value vs threshold)."""
    cols = ("req_s", "efficiency", "x_celery", "x_asyncio", "x_cookbook", "cpu_ms", "redis_cmds", "rss_worker_mb")
    names = ("req/s", "effic.", "x celery", "x asyncio", "x cookbk", "CPU ms/rq", "Redis/rq", "RSS/wkr MB")
    head = f"{'scenario':<34}" + "".join(f"{n:>11}" for n in names) + "  targets"
    out = [head, "-" * (len(head) + 30)]
    for name, h, targets, ok in rows:
        cells = "".join(f"{_fmt(h.get(c), 2 if c.startswith(('x_', 'eff')) else 1):>11}" for c in cols)
        checks = ", ".join(
            f"{label}: {'-' if v is None else f'{v:.2f}'} {'ok' if v is not None and v >= t else 'MISSED'}"
            for label, v, t in targets
        )
        out.append(f"{name:<34}{cells}  {checks}{'' if ok else '  (a run FAILED or TIMED OUT)'}")
    return "\n".join(out)
