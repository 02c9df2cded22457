"""What the engine model records for ``GET /sim/stats``: per-class samples, shed answers, peaks, marks, a time series.

Every request the engine served leaves one sample (arrival time, queue wait, latency = wait + service) under its class,
``batch`` or ``interactive``; every shed one leaves its arrival time. A summary covers the samples that *arrived* in a
window: since the last reset by default, or between two marks (``POST /sim/engine/mark``) or two unix times, so a
benchmark measures "users alone" and then "users beside a batch" in one run. The gauges are sampled every
``SERIES_INTERVAL_S`` into a ring buffer for plots. Samples are bounded too: the oldest go first.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

JSONDict = dict[str, Any]

#: Request classes: over HTTP a request is ``batch`` unless it says ``x-sim-class: interactive``.
BATCH, INTERACTIVE = "batch", "interactive"
CLASSES = (BATCH, INTERACTIVE)
#: Samples kept per class (about two hours at 30 requests a second); the oldest are dropped first.
MAX_SAMPLES = 200_000
#: How often the time series reads the gauges, and how many points it keeps (ten minutes).
SERIES_INTERVAL_S = 0.1
SERIES_POINTS = 6_000
#: Columns of a time-series point (``t`` in seconds after the first point reported).
SERIES_COLUMNS = ("t", "running", "waiting", "running_batch", "waiting_batch")
#: Percentiles each summary reports.
PERCENTILES = (50, 95, 99)


def percentiles_ms(values: list[float]) -> JSONDict:
    """p50/p95/p99 (nearest rank), mean and max of durations in seconds, as milliseconds (null when empty)."""
    if not values:
        return {**{f"p{p}": None for p in PERCENTILES}, "mean": None, "max": None}
    ordered = sorted(values)
    out: JSONDict = {f"p{p}": round(ordered[math.ceil(p / 100 * len(ordered)) - 1] * 1000, 1) for p in PERCENTILES}
    return {**out, "mean": round(sum(ordered) / len(ordered) * 1000, 1), "max": round(ordered[-1] * 1000, 1)}


class EngineRecord:
    """Samples and peaks since the last reset (``running``/``waiting``: the gauges at reset, the first peaks)."""

    def __init__(self, running: int = 0, waiting: int = 0) -> None:
        self.started_at = time.time()
        self.samples: dict[str, deque[tuple[float, float, float]]] = {c: deque(maxlen=MAX_SAMPLES) for c in CLASSES}
        self.sheds: dict[str, deque[float]] = {c: deque(maxlen=MAX_SAMPLES) for c in CLASSES}
        self.max_running, self.max_waiting = running, waiting
        self.series: deque[tuple[float, int, int, int, int]] = deque(maxlen=SERIES_POINTS)
        self.marks: list[float] = []

    def done(self, cls: str, arrived_at: float, wait_s: float, latency_s: float) -> None:
        self.samples[cls].append((arrived_at, wait_s, latency_s))

    def shed(self, cls: str) -> None:
        self.sheds[cls].append(time.time())

    def peak(self, running: int, waiting: int) -> None:
        self.max_running, self.max_waiting = max(self.max_running, running), max(self.max_waiting, waiting)

    def mark(self) -> JSONDict:
        """Record the present as a window boundary; marks count from 1 after each reset."""
        self.marks.append(time.time())
        return {"mark": len(self.marks), "at": self.marks[-1]}

    def at_mark(self, mark: int) -> float:
        """The time of mark number ``mark``.

        Raises:
            ValueError: no such mark since the last reset.
        """
        if not 1 <= mark <= len(self.marks):
            raise ValueError(f"unknown mark: {mark} (marks since the last reset: {len(self.marks)})")
        return self.marks[mark - 1]

    def summary(self, since: float | None, until: float | None, series: bool) -> JSONDict:
        """Per-class counts and latencies of the requests that arrived in ``[since, until)`` (None: open)."""
        start, end = since if since is not None else self.started_at, until if until is not None else math.inf
        duration = max(1e-9, min(end, time.time()) - start)
        out: JSONDict = {
            "window": {"since": start, "until": until, "duration_s": round(duration, 3)},
            "max_running": self.max_running, "max_waiting": self.max_waiting,
            "shed": sum(1 for c in CLASSES for t in self.sheds[c] if start <= t < end),
            "classes": {c: self._class_summary(c, start, end, duration) for c in CLASSES},
            "marks": [{"mark": i, "at": t} for i, t in enumerate(self.marks, 1)],
        }  # fmt: skip
        if series:
            out["series"] = self._series(start, end)
        return out

    def _class_summary(self, cls: str, start: float, end: float, duration: float) -> JSONDict:
        picked = [(wait, latency) for t, wait, latency in self.samples[cls] if start <= t < end]
        return {
            "completed": len(picked), "per_s": round(len(picked) / duration, 3),
            "shed": sum(1 for t in self.sheds[cls] if start <= t < end),
            "latency_ms": percentiles_ms([latency for _, latency in picked]),
            "wait_ms": percentiles_ms([wait for wait, _ in picked]),
        }  # fmt: skip

    def _series(self, start: float, end: float) -> JSONDict:
        points = [p for p in self.series if start <= p[0] < end]
        t0 = points[0][0] if points else start
        return {
            "interval_s": SERIES_INTERVAL_S, "t0": t0, "columns": list(SERIES_COLUMNS),
            "points": [[round(t - t0, 2), *gauges] for t, *gauges in points],
        }  # fmt: skip
