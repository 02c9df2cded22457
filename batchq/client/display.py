"""Terminal output of the client: the progress display used while waiting, and batches as tables.

rich is imported only when something is drawn, so ``import batchq`` stays cheap.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from batchq.schemas import Batch

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

#: Seconds between two progress lines when the stream is not a terminal.
PLAIN_PROGRESS_EVERY_S = 10.0
#: Width of tables written to a pipe or file (a terminal's own width is used otherwise).
PIPE_WIDTH = 200


# --- progress --------------------------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressDisplay:
    """Shows a batch's progress while waiting: a rich bar on a terminal, else a plain line now and then.

    Use as a context manager and pass :meth:`update` as ``on_update`` to ``batches.wait``.

    Args:
        stream: Where to draw (default stderr).
        live: Force the rich bar on or off (default: on when ``stream`` is a terminal or in Jupyter).
        every_s: Seconds between plain lines (a status change always prints one).
        clock: Monotonic clock, for tests.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        live: bool | None = None,
        every_s: float = PLAIN_PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._live = live if live is not None else _is_interactive(self._stream)
        self._every_s = every_s
        self._clock = clock
        self._first: tuple[float, int] | None = None
        self._last_status: str | None = None
        self._last_print_at = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if self._live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            console = Console(file=self._stream)
            columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[summary]}"))
            self._progress = Progress(*columns, console=console, transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, batch: Batch) -> None:
        """Show the batch as just polled."""
        counts = batch.request_counts
        done = counts.completed + counts.failed
        now = self._clock()
        rate = self._rate(batch, done, now)
        remaining = max(counts.total - done, 0)
        eta = remaining / rate if rate and counts.total else None
        summary = progress_summary(batch, rate, eta)
        if self._progress is not None:
            total = counts.total or None
            if self._task is None:
                self._task = self._progress.add_task(batch.status, total=total, completed=done, summary=summary)
            else:
                self._progress.update(
                    self._task, description=batch.status, total=total, completed=done, summary=summary
                )
            return
        if batch.status != self._last_status or now - self._last_print_at >= self._every_s:
            print(f"{batch.id} {batch.status}: {summary}", file=self._stream, flush=True)
            self._last_status, self._last_print_at = batch.status, now

    def _rate(self, batch: Batch, done: int, now: float) -> float | None:
        """Requests per second: as observed while waiting, else since the batch started (server's clock)."""
        if self._first is None:
            self._first = (now, done)
        first_at, first_done = self._first
        if now - first_at >= 1.0 and done > first_done:
            return (done - first_done) / (now - first_at)
        if batch.in_progress_at and done:
            elapsed = time.time() - batch.in_progress_at
            if elapsed > 0:
                return done / elapsed
        return None


def _is_interactive(stream: IO[str]) -> bool:
    """A terminal, or a Jupyter notebook (where rich draws the bar as a widget)."""
    if stream.isatty():
        return True
    from rich.console import Console

    return Console(file=stream).is_jupyter


def progress_summary(batch: Batch, rate: float | None, eta: float | None) -> str:
    """``120/1000 done (3 failed) · 12.5 req/s · ETA 1m10s``."""
    counts = batch.request_counts
    parts = [f"{counts.completed + counts.failed}/{counts.total} done ({counts.failed} failed)"]
    if rate:
        parts.append(f"{rate:.1f} req/s")
    if eta is not None and batch.status == "in_progress":
        parts.append(f"ETA {format_duration(eta)}")
    return " · ".join(parts)


# --- output ----------------------------------------------------------------------------------------------------


def print_json(value: Any) -> None:
    """Pretty JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def when(timestamp: int | None) -> str:
    """A Unix timestamp as local ``YYYY-mm-dd HH:MM:SS`` (``-`` for None)."""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


def show_batch(batch: Batch) -> None:
    """A batch as a two-column table on stdout."""
    from rich.table import Table

    counts = batch.request_counts
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("id", batch.id),
        ("status", batch.status),
        ("endpoint", batch.endpoint),
        ("model", batch.model or "-"),
        ("requests", f"{counts.completed} completed, {counts.failed} failed, {counts.total} total"),
        ("created", when(batch.created_at)),
        ("input file", batch.input_file_id),
        ("output file", batch.output_file_id or "-"),
        ("error file", batch.error_file_id or "-"),
    ]
    for name in ("in_progress_at", "completed_at", "failed_at", "expired_at", "cancelled_at"):
        if getattr(batch, name):
            rows.append((name.removesuffix("_at").replace("_", " "), when(getattr(batch, name))))
    if batch.usage is not None:
        usage = batch.usage
        rows.append(("tokens", f"{usage.input_tokens} in, {usage.output_tokens} out, {usage.total_tokens} total"))
    cost = getattr(batch, "estimated_cost", None)
    if isinstance(cost, dict) and cost.get("amount") is not None:
        discount = f" (batch discount {cost.get('discount', 0):.0%})" if cost.get("discount") else ""
        rows.append(("estimated cost", f"{cost['amount']:.6f} {cost.get('currency', 'USD')}{discount}"))
    if batch.metadata:
        rows.append(("metadata", ", ".join(f"{k}={v}" for k, v in batch.metadata.items())))
    for error in batch.errors.data if batch.errors else []:
        rows.append(("error", f"line {error.line}: {error.code}: {error.message}" if error.line else error.message))
    for name, value in rows:
        table.add_row(name, value)
    stdout_console().print(table)


def stdout_console() -> Console:
    """A rich console on stdout; when that is not a terminal, wide enough that tables keep every column whole."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, PIPE_WIDTH)
    return console


def emit_batch(batch: Batch, as_json: bool, headline: str | None = None) -> None:
    """A batch on stdout: as JSON, else as ``headline`` when given, else as a table."""
    if as_json:
        print_json(batch.model_dump(mode="json"))
    elif headline is None:
        show_batch(batch)
    else:
        sys.stdout.write(headline + "\n")
