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
    """One side (``batchq`` or ``baseline``) of one run. None = does not apply to this side or scenario."""

    system: str
    requests: int
    completed: int = 0
    failed: int = 0
    wall_s: float = 0.0
    """batchq: POST /v1/batches returned -> GET shows ``completed``. Baseline: first request -> last answer."""
    ideal_s: float | None = None
    """N / limit (None without a limit)."""
    rps: float = 0.0
    """completed / wall_s."""
    utilization: float | None = None
    """(N / wall_s) / (rpm / 60) = ideal_s / wall_s."""
    upstream_rps: float | None = None
    """Calls the simulator received / (its last arrival - its first): the sending rate without intake/finalize."""
    http_429: int = 0
    retries: int = 0
    """Upstream calls beyond one a request (the simulator's ``received`` - N)."""
    requeues: int | None = None
    """batchq: lines sent back to the queue as a Celery retry (rate-limit waits over 5 s, backoffs)."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    """Upstream call latency measured client-side (in the worker around httpx; in the baseline around aiohttp)."""
    peak_rss_mb: float = 0.0
    """batchq: the worker process trees, summed; baseline: the client process."""
    cpu_s: float = 0.0
    """batchq: workers + API + Redis; baseline: the client. The simulator is excluded on both sides."""
    worker_cpu_s: float | None = None
    redis_peak_mb: float | None = None
    redis_commands_per_request: float | None = None
    """Redis commands (INFO commandstats calls, all clients: API, workers, Celery) / N."""
    max_in_window: int = 0
    ok: bool = True
    error: str = ""

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000 / self.requests if self.requests else 0.0


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
    return replace(good[0], **values, ok=ok, error=error)  # type: ignore[arg-type]


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
    ("ideal N / limit (s)", "ideal_s", 2, False),
    ("requests/s", "rps", 1, True),
    ("rate-limit utilization", "utilization", -1, True),
    ("upstream rate first->last call (req/s)", "upstream_rps", 1, True),
    ("upstream 429s", "http_429", 0, False),
    ("retries (extra upstream calls)", "retries", 0, False),
    ("re-queued tasks", "requeues", 0, False),
    ("upstream call p50 (ms)", "latency_p50_ms", 1, True),
    ("upstream call p99 (ms)", "latency_p99_ms", 1, True),
    ("peak RSS (MB)", "peak_rss_mb", 1, True),
    ("CPU time (s)", "cpu_s", 2, True),
    ("CPU per request (ms)", "cpu_ms_per_request", 2, True),
    ("Redis used_memory_peak (MB)", "redis_peak_mb", 1, False),
    ("Redis commands per request", "redis_commands_per_request", 1, False),
)


def table(title: str, batchq: Measurement, baseline: Measurement | None) -> str:
    """The side-by-side table of one scenario and pool, with batchq/baseline ratios."""
    base = baseline or Measurement("baseline", batchq.requests)  # not run: its cells show "-"
    lines = [title, f"{'metric':<40}{'batchq':>14}{'baseline':>14}{'batchq/baseline':>17}"]
    lines.append("-" * len(lines[-1]))
    base_done = f"{base.completed}/{base.requests}" if baseline else "-"
    lines.append(f"{'completed / N':<40}{f'{batchq.completed}/{batchq.requests}':>14}{base_done:>14}{'':>17}")
    for label, attr, digits, with_ratio in ROWS:
        a, b = getattr(batchq, attr), (getattr(base, attr) if baseline else None)
        cells = [_fmt(a, max(digits, 0), digits < 0), _fmt(b, max(digits, 0), digits < 0)]
        ratio = _ratio(a, b) if with_ratio else ""
        lines.append(f"{label:<40}{cells[0]:>14}{cells[1]:>14}{ratio:>17}")
    for side in (batchq, base):
        if not side.ok:
            lines.append(f"!! {side.system} FAILED: {side.error}")
    return "\n".join(lines)


def summary(rows: Sequence[tuple[str, str, Measurement, Measurement | None]]) -> str:
    """One line per (configuration, scenario): the figures the pool choice rests on."""
    head = (
        f"{'configuration':<28}{'scenario':<12}{'req/s':>9}{'x base':>8}{'util':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'RSS MB':>9}{'CPU ms/req':>12}  status"
    )
    out = [head, "-" * len(head)]
    for config, scenario, m, base in rows:
        status = "ok" if m.ok else "FAILED"
        out.append(
            f"{config:<28}{scenario:<12}{m.rps:>9.1f}{_ratio(m.rps, base.rps if base else None):>8}"
            f"{_fmt(m.utilization, 0, True):>8}{_fmt(m.latency_p50_ms):>9}{_fmt(m.latency_p99_ms):>9}"
            f"{m.peak_rss_mb:>9.1f}{m.cpu_ms_per_request:>12.2f}  {status}"
        )
    return "\n".join(out)
