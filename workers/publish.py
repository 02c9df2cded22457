"""Handing request lines to the broker: each one a request task that is a part of its batch's chord.

The chord is made at intake with the batch's total (``set_chord_size``) and its parts are published as the
schedule feeds them, so the broker holds a window of lines, not the whole batch; the last part to finish runs
the chord's callback, finalize. Task ids are deterministic, so a line sent again is the same part.
The messages are built and pushed in one command, not published one by one through Celery (the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import Celery

from batchq.broker import FINALIZE_TASK, REQUEST_QUEUE, push_messages, request_messages


def finalize_signature(app: Celery, batch_id: str) -> object:
    return app.signature(FINALIZE_TASK, args=(batch_id,), immutable=True)


def start_chord(app: Celery, batch_id: str, total: int) -> None:
    """Open the batch's chord: its callback runs once ``total`` parts have finished."""
    app.backend.set_chord_size(batch_id, total)


def publish_lines(app: Celery, lines: Iterable[tuple[str, int]], *, client: Any = None) -> None:
    """Put the lines' request tasks on the broker in one LPUSH (see :func:`batchq.broker.request_messages`).

    ``client``: a Redis client on the broker's Redis (the request task passes its worker's own: kombu's producer
    pool and a per-thread oid cost ~7 % of a gevent worker's CPU at 0 ms, where every task feeds the next line).
    The reply-to is the app's process-wide oid: request tasks store no result, so nobody listens on it.
    """
    messages = request_messages(lines, reply_to=app.oid)
    if not messages:
        return
    if client is not None:
        push_messages(client, REQUEST_QUEUE, messages)
        return
    with app.producer_or_acquire() as producer:
        producer.channel.push_messages(REQUEST_QUEUE, messages)
