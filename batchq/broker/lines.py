"""The request queue as the pipeline and the sweeper see it: push these lines, which lines are queued.

Each line is a request task that is a part of its batch's chord (the chord is opened at intake with the batch's
total; its callback is finalize). Task ids are deterministic, so a line sent again is the same part. On the fast
path the messages are built here and pushed in one command (and the feed script pushes the lines it picks itself,
from :attr:`RequestLines.feed_template`); on the stock path each line is one ``send_task`` of Celery's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import Celery

from batchq.broker.messages import (
    MessageTemplate,
    push_messages,
    queued_lines,
    request_message_template,
    request_messages,
)
from batchq.broker.names import FINALIZE_TASK, REQUEST_QUEUE, REQUEST_TASK

#: Request messages read to tell a queued line from a lost one; a longer queue (the feeding window keeps it far
#: shorter) cannot tell.
QUEUE_SCAN_MAX = 5000


def finalize_signature(app: Celery, batch_id: str) -> Any:
    """The chord's callback of the batch."""
    return app.signature(FINALIZE_TASK, args=(batch_id,), immutable=True)


def start_chord(app: Celery, batch_id: str, total: int) -> None:
    """Open the batch's chord: its callback runs once ``total`` parts have finished."""
    app.backend.set_chord_size(batch_id, total)


class RequestLines:
    """Sends request lines to the broker and reads which wait on its queue. Thread-safe."""

    def __init__(self, app: Celery, client: Any, *, fast: bool) -> None:
        """``client``: a Redis client on the broker's Redis (the worker's own: kombu's producer pool and a
        per-thread oid cost ~7 % of a gevent worker's CPU at 0 ms, where every task feeds the next line)."""
        self.app = app
        self.client = client
        self.fast = fast
        # The reply-to is the app's process-wide oid: request tasks store no result, so nobody listens on it.
        self._template = request_message_template(reply_to=app.oid) if fast else None

    @property
    def feed_template(self) -> MessageTemplate | None:
        """The message the feed script fills in and pushes for each line it picks (None: the caller pushes)."""
        return self._template

    def push(self, lines: Iterable[tuple[str, int]]) -> None:
        """Put the lines' request tasks on the queue, in this order."""
        if self.fast:
            messages = request_messages(lines, reply_to=self.app.oid)
            if messages:
                push_messages(self.client, REQUEST_QUEUE, messages)
            return
        for batch_id, line in lines:
            self.app.send_task(
                REQUEST_TASK,
                args=[batch_id, line],
                task_id=f"{batch_id}-{line}",
                group_id=batch_id,
                group_index=line,
                chord=finalize_signature(self.app, batch_id),
            )

    def queued(self) -> set[tuple[str, int]] | None:
        """The lines whose message waits on the queue; None when too many wait to read them all."""
        return queued_lines(self.client, QUEUE_SCAN_MAX)
