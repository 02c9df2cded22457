"""batchq's Redis transport for kombu: the fast path's consumer and ack bookkeeping (``BATCHQ_FAST_PATH``).

Every class here subclasses a kombu internal (``QoS``, ``Channel`` and its ``_brpop_start`` / ``_brpop_read`` /
``_create_client``, ``MultiChannelPoller``, ``Transport.cycle``); kombu is pinned in the lock file for that reason.
With ``BATCHQ_FAST_PATH=false`` Celery runs kombu's own Redis transport instead and nothing here is loaded.
"""

from __future__ import annotations

import os
import threading
import weakref
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from batchq.broker.names import REQUEST_QUEUE

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
