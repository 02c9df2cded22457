"""Handing request lines to the broker: each one a request task that is a part of its batch's chord.

The chord is made at intake with the batch's total (``set_chord_size``) and its parts are published as the
schedule feeds them, so the broker holds a window of lines, not the whole batch; the last part to finish runs
the chord's callback, finalize. Task ids are deterministic, so a line sent again is the same part.
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery

from batchq.broker import FINALIZE_TASK, REQUEST_TASK


def finalize_signature(app: Celery, batch_id: str) -> object:
    return app.signature(FINALIZE_TASK, args=(batch_id,), immutable=True)


def start_chord(app: Celery, batch_id: str, total: int) -> None:
    """Open the batch's chord: its callback runs once ``total`` parts have finished."""
    app.backend.set_chord_size(batch_id, total)


def publish_lines(app: Celery, lines: Iterable[tuple[str, int]]) -> None:
    callbacks: dict[str, object] = {}
    for batch_id, line in lines:
        callback = callbacks.get(batch_id)
        if callback is None:
            callback = callbacks[batch_id] = finalize_signature(app, batch_id)
        app.send_task(
            REQUEST_TASK,
            args=[batch_id, line],
            task_id=f"{batch_id}-{line}",
            group_id=batch_id,
            group_index=line,
            chord=callback,
        )
