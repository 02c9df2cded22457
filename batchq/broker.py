"""The broker: Celery configuration shared by the workers and by the API's producer-only app, its Redis transport
and the request-task messages the hot path pushes itself.

Both sides must agree on every broker setting (the shortest visibility timeout on a broker wins), so they
build it here from the same Settings.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
import weakref
from collections.abc import Iterable, Sequence
from queue import Empty
from time import monotonic
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from batchq.config import Settings

#: Task names: the API sends tasks by name and never imports worker code.
INTAKE_TASK = "batchq.intake_batch"
REQUEST_TASK = "batchq.process_request"
FINALIZE_TASK = "batchq.finalize_batch"
SWEEP_TASK = "batchq.sweep"
WEBHOOK_TASK = "batchq.deliver_webhook"
#: Webhook deliveries' own queue (workers/webhooks.py adds it to every worker consuming "finalize").
WEBHOOK_QUEUE = "webhooks"

#: The request tasks' queue.
REQUEST_QUEUE = "requests"

QUEUES = ("intake", REQUEST_QUEUE, "finalize", WEBHOOK_QUEUE)


#: batchq's threads pool (batchq/threadpool.py), as Celery resolves a pool name; ``threads`` means this one.
THREADS_POOL = "batchq.threadpool:TaskPool"

#: Messages pushed by one LPUSH at most.
PUSH_CHUNK = 500
#: Messages one BLMPOP takes at most (fewer when the prefetch limit leaves less room).
POP_CHUNK = 16
#: The first Redis with BLMPOP; an older server gets kombu's BRPOP, one message a round trip.
BLMPOP_SINCE = (7, 0)


class _QoS(kombu_redis.QoS):
    """kombu's Redis ack emulation, except that request-task messages are tracked in this process's memory only.

    For every delivered message kombu writes the whole message to an "unacked" hash (a MULTI) and deletes it at the
    ack (another MULTI): ~15 % of a busy worker's time (py-spy, docs/bench.md). That copy only brings a message back
    after the visibility timeout (2 h). A request line does not need it: the line's lease and the sweeper send it
    again within seconds of its holder's death (pipeline/leases.py, pipeline/sweep.py), and a copy that comes twice
    is turned away by the claim. The in-memory record stays: the prefetch limit counts it, a requeueing reject and a
    warm shutdown put the message back on its queue. Intake, finalize and webhook messages keep kombu's full path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._in_memory: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if message.delivery_info.get("routing_key") == REQUEST_QUEUE:
            self._in_memory.add(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        if delivery_tag in self._in_memory:
            self._in_memory.discard(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        cycle = getattr(self.channel.connection, "cycle", None)
        if isinstance(cycle, _Poller):
            cycle.wake()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if delivery_tag in self._in_memory:
            if requeue:
                self._put_back(self._delivered[delivery_tag], leftmost=True)
            self.ack(delivery_tag)
        else:
            super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]

    def restore_unacked(self, client: Any = None) -> None:
        """At shutdown: every message delivered and not acked goes back to its queue (kombu's, plus ours)."""
        for tag in [t for t in self._delivered if t in self._in_memory]:
            self._put_back(self._delivered.pop(tag), client=client)
            self._in_memory.discard(tag)
        super().restore_unacked(client)  # type: ignore[no-untyped-call]

    def _put_back(self, message: Any, *, leftmost: bool = False, client: Any = None) -> None:
        delivery = message.delivery_info
        with self.channel.conn_or_acquire(client) as conn:
            self.channel._do_restore_message(
                message._raw, delivery["exchange"], delivery["routing_key"], conn, leftmost
            )


class _Channel(kombu_redis.Channel):
    """kombu's Redis channel, with one reusable client where kombu builds a new one for every operation.

    kombu makes a fresh ``redis.Redis`` (a dict of ~250 response callbacks) for each publish, ack and unacked
    bookkeeping: ~12 % of a busy worker's time (py-spy, docs/bench.md). A
    ``redis.Redis`` over a connection pool is thread-safe (each command borrows a pool connection), so one per
    channel serves every thread. The asynchronous client (the consumer's pop) is kombu's own.
    """

    QoS = _QoS
    _sync_client: Any = None
    _sync_client_lock = threading.Lock()
    #: Whether the server has BLMPOP (None: not asked yet).
    _has_blmpop: bool | None = None
    #: The pop command in flight on the consumer's connection.
    _pop_command = "BRPOP"

    def _brpop_start(self, timeout: float | None = None) -> None:
        """kombu's BRPOP, as a BLMPOP that takes up to the prefetch room (at most POP_CHUNK) in one round trip.

        The consumer loop paid a BRPOP command, a poll registration and a read per message: ~20 % of a busy
        worker's time (py-spy, docs/bench.md). The same keys in the same order: BLMPOP, like BRPOP, pops from the
        first non-empty one.
        """
        if not self._can_pop_many():
            self._pop_command = "BRPOP"
            super()._brpop_start(timeout)  # type: ignore[no-untyped-call]
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]  # type: ignore[no-untyped-call]
        room = self.qos.can_consume_max_estimate()
        count = POP_CHUNK if room is None else max(1, min(room, POP_CHUNK))
        wait = self.brpop_timeout if timeout is None else timeout
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        self._pop_command = "BLMPOP"
        self.client.connection.send_command("BLMPOP", wait or 0, len(keys), *keys, "RIGHT", "COUNT", count)

    def _brpop_read(self, **options: Any) -> bool:
        if self._pop_command != "BLMPOP":
            return bool(super()._brpop_read(**options))  # type: ignore[no-untyped-call]
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "BLMPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next round reconnects (as kombu does)
                raise
            if not reply:
                raise Empty()
            key, items = reply
            key = bytes_to_str(key)  # type: ignore[no-untyped-call]
            dest = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            for i, item in enumerate(items):
                try:
                    self.connection._deliver(loads(bytes_to_str(item)), dest)  # type: ignore[no-untyped-call]
                except BaseException:
                    # Popped but not handed over: back where they were, next in line (BRPOP would not have
                    # taken them yet).
                    if items[i + 1 :]:
                        self._create_client().rpush(key, *reversed(items[i + 1 :]))
                    raise
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def _can_pop_many(self) -> bool:
        if self._has_blmpop is None:
            if self.global_keyprefix:
                self._has_blmpop = False  # kombu prefixes the keys of the commands it knows; BLMPOP is not one
            else:
                self._has_blmpop = has_blmpop(str(self._create_client().info("server").get("redis_version", "")))
        return self._has_blmpop

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            with self._sync_client_lock:
                client = self._sync_client
                if client is None or client.connection_pool is not self.pool:
                    client = self._sync_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client

    def push_messages(self, queue: str, messages: Sequence[str]) -> None:
        """:func:`push_messages` on this channel's key for ``queue`` (kombu's ``_put``, many at a time)."""
        push_messages(self._create_client(), self._q_for_pri(queue, 0), messages)  # type: ignore[no-untyped-call]


def push_messages(client: Any, key: str, messages: Sequence[str]) -> None:
    """LPUSH ready-made messages onto the list ``key`` (a queue without a key prefix: its name), a chunk a command.

    Chunks keep one command's size bounded (~1.5 KB a message) when intake sends a large first window.
    """
    for start in range(0, len(messages), PUSH_CHUNK):
        client.lpush(key, *messages[start : start + PUSH_CHUNK])


def has_blmpop(redis_version: str) -> bool:
    """Whether a server that reports this ``redis_version`` (INFO server) has BLMPOP."""
    parts = redis_version.split(".")[:2]
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return False  # unknown: kombu's BRPOP works everywhere
    return (int(parts[0]), int(parts[1])) >= BLMPOP_SINCE


class _Poller(kombu_redis.MultiChannelPoller):
    """kombu's poller for consumers without an event loop (gevent and eventlet pools), woken when an ack frees room.

    Without a hub, Celery's loop waits in :meth:`get` with a 2 s timeout. Once the prefetch limit is reached kombu
    stops polling the pop's socket, so the wait only ends when that timeout runs out, even though the acks of
    finished tasks free room long before: a gevent worker at 200 ms and 64 slots took 64 tasks every 2 s (31 req/s,
    docs/bench.md). An ack writes one byte to a pipe the wait also watches, so the loop takes the next messages at
    once. Consumers with an event loop (the threads pool) never call :meth:`get` and never pay for the pipe.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # The pipe is made at the first get(): producers and hub-driven consumers never need one.
        self._wake: tuple[int, int] | None = None
        self._wake_registered: Any = None  # the poller the pipe is registered with
        self._waiting = False
        self._woken = False
        self._stopping = False
        _POLLERS.add(self)

    def stop_waiting(self) -> None:
        """The worker is shutting down: end the wait now, and every later one at once (see :func:`stop_waits`)."""
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        """Called at every ack: end a wait that has no room to pop (a write only while such a wait is on)."""
        if self._waiting and not self._woken and self._wake is not None:
            self._woken = True
            try:
                os.write(self._wake[1], b"x")
            except OSError:
                pass  # the pipe is full: the wait ends anyway

    def get(self, callback: Any, timeout: float | None = None) -> Any:
        if self._wake is None:
            self._wake = os.pipe()
            for fd in self._wake:
                os.set_blocking(fd, False)
        if self._wake_registered is not self.poller:
            self.poller.register(self._wake[0], self.eventflags)
            self._wake_registered = self.poller
        self._waiting = True
        try:
            return super().get(callback, timeout)  # type: ignore[no-untyped-call]
        except Empty:
            if self._stopping:
                # kombu's drain_events polls again until its timeout (Celery's: 2 s) on Empty; a timeout ends it,
                # and Celery's loop then sees the shutdown.
                raise TimeoutError() from None
            raise
        finally:
            self._waiting = False
            if self._woken:
                self._drain_wake()

    def handle_event(self, fileno: int, event: int) -> Any:
        if self._wake is not None and fileno == self._wake[0]:
            self._drain_wake()
            return None  # nothing delivered: get() raises Empty and drain_events polls again, with room now
        return super().handle_event(fileno, event)  # type: ignore[no-untyped-call]

    def _drain_wake(self) -> None:
        self._woken = False
        if self._wake is None:
            return
        try:
            while os.read(self._wake[0], 512):
                pass
        except OSError:
            pass  # empty (BlockingIOError)

    def close(self) -> None:
        super().close()  # type: ignore[no-untyped-call]
        if self._wake is not None:
            if self._wake_registered is not None:
                try:
                    self._wake_registered.unregister(self._wake[0])
                except (KeyError, ValueError, OSError):
                    pass
            for fd in self._wake:
                os.close(fd)
            self._wake = None
            self._wake_registered = None


_POLLERS: weakref.WeakSet[_Poller] = weakref.WeakSet()


def stop_waits() -> None:
    """End the waits of this process's green consumers (the task consumer's and the remote-control one's).

    Called when a worker starts shutting down: each would otherwise finish its wait first (2 s and 1 s in Celery's
    loops, and kombu polls again until then), and a gevent worker's warm shutdown took 5 s instead of 1.
    """
    for poller in list(_POLLERS):
        poller.stop_waiting()


class Transport(kombu_redis.Transport):
    """The ``redis://`` transport of both the workers and the API (``broker_transport`` below)."""

    Channel = _Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.cycle = _Poller()  # type: ignore[assignment]


#: Import path of :class:`Transport`, as kombu resolves ``broker_transport``.
TRANSPORT = f"{__name__}:Transport"


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


def request_message_template(*, reply_to: str) -> str:
    """One request-task message with placeholders, for a Lua script that fills them in and pushes the message
    itself (state/scripts/feed.lua: a recorded outcome feeds the next line in its own round trip).

    The body is stored as UTF-8 text (``body_encoding`` ``utf-8``, which kombu decodes and restores as is), not
    base64 as kombu's publish writes it: Lua fills in plain text. Everything else is :func:`request_messages`'s.
    """
    return _request_message(TEMPLATE_BATCH, TEMPLATE_LINE, reply_to, anon_nodename(), TEMPLATE_TAG, raw_body=True)


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


#: Slots a worker has beyond the in-flight cap (half the cap at most): requests claimed and read, waiting in the
#: limiter for the next freed call slot. 32 cover the round trips between two calls of one slot (record, feed,
#: chord part, fetch, claim, acquire) at the few hundred calls a second one process makes; more only wait in
#: Redis's queue at three round trips each (docs/bench.md, fifth pass).
READY_SLOTS = 32


def worker_concurrency(settings: Settings) -> int:
    """Slots per worker process: BATCHQ_WORKER_CONCURRENCY, else the in-flight cap plus :data:`READY_SLOTS`
    (half the cap at most), at least 64. Calls wait on I/O: a slot per call the cap allows, and a few more."""
    if settings.worker_concurrency > 0:
        return settings.worker_concurrency
    cap = settings.max_in_flight
    return max(64, cap + min(READY_SLOTS, cap // 2))


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.visibility_timeout_s
    transport = {
        "visibility_timeout": vt,
        "health_check_interval": 25,
        "socket_keepalive": True,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "retry_on_timeout": True,
        # kombu 5.7: scan for unacked messages of dead workers this often (default ~100 s).
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": 1,
        # kombu's own Redis pool defaults to 10 connections: a worker with more concurrent tasks fails acks
        # with MaxConnectionsError and stalls (measured with gevent -c 256; see docs/bench.md).
        "max_connections": 512,
    }
    return {
        "broker_url": settings.redis_url,
        "broker_transport": TRANSPORT,
        "result_backend": settings.redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": vt, "retry_policy": {"timeout": 5.0}},
        "visibility_timeout": vt,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # At-least-once delivery; exactly-once outcomes come from the HSETNX outcome script.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # The plain `celery -A workers worker` runs batchq's pool and size; -P and -c still override them.
        "worker_pool": THREADS_POOL if settings.worker_pool == "threads" else settings.worker_pool,
        "worker_concurrency": worker_concurrency(settings),
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 30,
        "worker_eta_task_limit": 1000,
        "worker_hijack_root_logger": False,
        # Off by default (three pub/sub messages per task); Flower turns them on in running workers when it starts.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "task_track_started": False,
        "result_expires": 3 * 24 * 3600,
        "result_chord_expires": 3 * 24 * 3600,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "result_backend_thread_safe": True,
        "redis_max_connections": 512,
        "redis_socket_keepalive": True,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 25,
        "task_default_queue": "requests",
        # Only used when someone runs `celery -A workers beat`; workers sweep on their own timer anyway
        # (both take the same Redis lock, so running both is harmless).
        "beat_schedule": {"batchq-sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s}},
        "task_routes": {
            INTAKE_TASK: {"queue": "intake"},
            REQUEST_TASK: {"queue": "requests"},
            FINALIZE_TASK: {"queue": "finalize"},
            SWEEP_TASK: {"queue": "finalize"},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
        },
    }


def make_producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks (by name); used by the API."""
    app = Celery("batchq-producer", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
