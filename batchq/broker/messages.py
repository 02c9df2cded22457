"""Request-task messages built by batchq itself (the fast path): Celery's protocol-2 message in kombu's Redis
envelope, pushed onto the queue's list in one command instead of one publish each.

The only place that knows the message format: the feed script fills in :func:`request_message_template`
(state/scripts/feed.lua, given it as opaque text), and :func:`queued_lines` reads the lines back for the sweeper.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from celery.utils.nodenames import anon_nodename

from batchq.broker.names import FINALIZE_TASK, REQUEST_QUEUE, REQUEST_TASK

#: Messages pushed by one LPUSH at most.
PUSH_CHUNK = 500
#: A request message's task id (``batch_…-<line>``) in kombu's JSON envelope (headers are never base64).
_TASK_ID = re.compile(rb'"id": "([^"]+)-(\d+)"')


def push_messages(client: Any, key: str, messages: Sequence[str]) -> None:
    """LPUSH ready-made messages onto the list ``key`` (a queue without a key prefix: its name), a chunk a command.

    Chunks keep one command's size bounded (~1.5 KB a message) when intake sends a large first window.
    """
    for start in range(0, len(messages), PUSH_CHUNK):
        client.lpush(key, *messages[start : start + PUSH_CHUNK])


def queued_lines(client: Any, limit: int) -> set[tuple[str, int]] | None:
    """The ``(batch_id, line)`` of every request message on the queue, or None when more than ``limit`` wait.

    Works for both paths' messages: kombu's publish and :func:`request_messages` write the headers as JSON text.
    """
    items = client.lrange(REQUEST_QUEUE, 0, limit)
    if len(items) > limit:
        return None
    return {(m[0].decode(), int(m[1])) for m in _TASK_ID.findall(b"\n".join(items))}


@dataclass(frozen=True)
class MessageTemplate:
    """One request message with placeholders, for a Lua script to fill in and push (see the feed script)."""

    queue: str
    """The broker's list (the request queue's name)."""
    text: str
    batch: str
    """Placeholder of the batch id."""
    line: str
    """Placeholder of the line number (a JSON number)."""
    tag: str
    """Placeholder of the delivery tag."""


def request_messages(lines: Iterable[tuple[str, int]], *, reply_to: str) -> list[str]:
    """Request-task messages for ``(batch_id, line)`` pairs, each a part of its batch's chord, as kombu stores them.

    The same JSON that ``app.send_task(REQUEST_TASK, args=[batch_id, line], task_id=f"{batch_id}-{line}",
    group_id=batch_id, group_index=line, chord=<finalize signature>)`` puts on the Redis list (Celery's message
    protocol 2 in kombu's Redis envelope), built without Celery's and kombu's publish machinery, which cost
    ~0.8 ms a line on the hot path (every recorded outcome feeds the next line). A test pops both and compares.
    """
    origin = anon_nodename()
    return [_request_message(b, line, reply_to, origin, str(uuid.uuid4()), raw_body=False) for b, line in lines]


#: Placeholders of :func:`request_message_template`: the batch id, the line (a JSON number) and the delivery tag.
#: Letters and digits only, so that a Lua ``gsub`` takes them as plain text.
TEMPLATE_BATCH = "BATCHQ0TEMPLATE0BATCH"
TEMPLATE_LINE = 900719925474099
TEMPLATE_TAG = "BATCHQ0TEMPLATE0TAG"


def request_message_template(*, reply_to: str) -> MessageTemplate:
    """One request-task message with placeholders, for a Lua script that fills them in and pushes the message
    itself (state/scripts/feed.lua: a recorded outcome feeds the next line in its own round trip).

    The body is stored as UTF-8 text (``body_encoding`` ``utf-8``, which kombu decodes and restores as is), not
    base64 as kombu's publish writes it: Lua fills in plain text. Everything else is :func:`request_messages`'s.
    """
    text = _request_message(TEMPLATE_BATCH, TEMPLATE_LINE, reply_to, anon_nodename(), TEMPLATE_TAG, raw_body=True)
    return MessageTemplate(REQUEST_QUEUE, text, TEMPLATE_BATCH, str(TEMPLATE_LINE), TEMPLATE_TAG)


def _request_message(batch_id: str, line: int, reply_to: str, origin: str, tag: str, *, raw_body: bool) -> str:
    task_id = f"{batch_id}-{line}"
    chord: dict[str, Any] = {
        "task": FINALIZE_TASK,
        "args": [batch_id],
        "kwargs": {},
        "options": {},
        "subtask_type": None,
        "immutable": True,
    }
    body = json.dumps([[batch_id, line], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": chord}])
    headers: dict[str, Any] = {
        "lang": "py",
        "task": REQUEST_TASK,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": batch_id,
        "group_index": line,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr([batch_id, line]),
        "kwargsrepr": "{}",
        "origin": origin,
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": task_id,
        "reply_to": reply_to,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": REQUEST_QUEUE},
        "priority": 0,
        "body_encoding": "utf-8" if raw_body else "base64",
        "delivery_tag": tag,
    }
    return json.dumps(
        {
            "body": body if raw_body else base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    )
