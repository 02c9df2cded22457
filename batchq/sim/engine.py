"""The simulator's inference-engine model: a number of slots, a waiting queue in front of them, and load shedding.

A request that reaches the engine holds one slot for its service time (``latency_ms`` plus jitter); with every slot
taken it waits in the queue, served in arrival order (``fcfs``) or by ``(priority, arrival)`` with the lower priority
first (``priority``, as vLLM's ``--scheduling-policy priority``). A request that finds ``max_queue`` others waiting is
shed at once. ``slots=0`` is the engine off: no queue, every request starts at once (the simulator's old behaviour),
still counted. Each request is of class ``batch`` or ``interactive``; ``EngineRecord`` keeps what the stats report.
Everything runs on the one event loop: a slot passes from one request to the next without a lock or a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import time
from collections import Counter

from batchq.sim.engine_stats import BATCH, CLASSES, SERIES_INTERVAL_S, EngineRecord
from batchq.sim.payloads import JSONDict, Reply, error_body

#: Queue orders ``--scheduling-policy`` accepts (vLLM's names).
POLICIES = ("fcfs", "priority")
#: Statuses a shed request may get: vLLM's and SGLang's queue caps answer 503, TGI 429, Anthropic 529.
SHED_STATUSES = frozenset({429, 503, 529})


@dataclasses.dataclass(eq=False)
class Ticket:
    """A request waiting for a slot; its ``grant`` is resolved when it gets one."""

    cls: str
    grant: asyncio.Future[None]


class Engine:
    """Slots, the waiting queue and the gauges of one simulated inference server."""

    def __init__(self, slots: int = 0, max_queue: int = -1, policy: str = "fcfs") -> None:
        self.slots, self.max_queue, self.policy = slots, max_queue, policy
        self.running: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self.queue: list[tuple[int, int, Ticket]] = []  # heap of (priority or 0, arrival number, ticket)
        self.arrivals = itertools.count()
        self.record = EngineRecord()
        self.shed_total: Counter[str] = Counter(dict.fromkeys(CLASSES, 0))  # for /metrics: never reset

    @property
    def n_running(self) -> int:
        return sum(self.running.values())

    @property
    def n_waiting(self) -> int:
        return sum(self.waiting.values())

    def configure(self, slots: int, max_queue: int) -> None:
        """Change the slots and the queue cap at run time; more slots start waiting requests now."""
        self.slots, self.max_queue = slots, max_queue
        self._dispatch()

    def reset(self) -> None:
        """Forget the counters and samples; requests running or waiting stay (they are gauges)."""
        self.record = EngineRecord(self.n_running, self.n_waiting)

    async def serve(self, cls: str, priority: int, service_s: float) -> bool:
        """Hold a slot for ``service_s`` (after waiting for one); False when the request was shed instead."""
        arrived, arrived_at = time.monotonic(), time.time()
        if self._must_wait():
            if 0 <= self.max_queue <= self.n_waiting:
                self.shed_total[cls] += 1
                self.record.shed(cls)
                return False
            await self._wait_turn(cls, priority if self.policy == "priority" else 0)
        else:
            self._start(cls)
        started = time.monotonic()
        try:
            if service_s > 0:
                await asyncio.sleep(service_s)
        finally:
            self._finish(cls)
        self.record.done(cls, arrived_at, started - arrived, time.monotonic() - arrived)
        return True

    async def sample_forever(self) -> None:
        """Append the gauges to the time series every ``SERIES_INTERVAL_S`` (a background task)."""
        while True:
            self.record.series.append((time.time(), *self.gauges()))
            await asyncio.sleep(SERIES_INTERVAL_S)

    def gauges(self) -> tuple[int, int, int, int]:
        """Running, waiting, running of class batch, waiting of class batch."""
        return self.n_running, self.n_waiting, self.running[BATCH], self.waiting[BATCH]

    def _must_wait(self) -> bool:
        # Someone already waiting keeps a newcomer behind (priority order is the queue's business).
        return self.n_waiting > 0 or (self.slots > 0 and self.n_running >= self.slots)

    async def _wait_turn(self, cls: str, priority: int) -> None:
        ticket = Ticket(cls, asyncio.get_running_loop().create_future())
        heapq.heappush(self.queue, (priority, next(self.arrivals), ticket))
        self.waiting[cls] += 1
        self.record.peak(self.n_running, self.n_waiting)
        try:
            await ticket.grant
        except asyncio.CancelledError:  # the client hung up
            if ticket.grant.cancelled():  # still waiting: it leaves the queue (its heap entry is skipped later)
                self.waiting[cls] -= 1
            else:  # granted just before: hand the slot on
                self._finish(cls)
            raise

    def _start(self, cls: str) -> None:
        self.running[cls] += 1
        self.record.peak(self.n_running, self.n_waiting)

    def _finish(self, cls: str) -> None:
        self.running[cls] -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Give free slots to the first waiting requests."""
        while self.queue and (self.slots <= 0 or self.n_running < self.slots):
            ticket = heapq.heappop(self.queue)[2]
            if ticket.grant.done():  # left while waiting
                continue
            self.waiting[ticket.cls] -= 1
            self._start(ticket.cls)
            ticket.grant.set_result(None)


def request_priority(body: JSONDict, policy: str) -> int:
    """The body's ``priority`` (0 when absent); under ``fcfs`` only 0 is allowed, as in vLLM.

    Raises:
        Reply: 400 for a non-integer, or a non-zero priority without priority scheduling.
    """
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise Reply(400, error_body("priority must be an integer", "BadRequestError", None, "priority"))
    if priority != 0 and policy != "priority":
        # vLLM's words and envelope (its ``code`` is the status, an integer).
        message = f"Got priority {priority} but Priority scheduling is not enabled."
        raise Reply(400, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}})
    return priority


def shed_reply(status: int, max_queue: int) -> Reply:
    """The answer to a request that found the queue full: ``status`` in OpenAI's envelope, no Retry-After."""
    message = f"The server is overloaded: {max_queue} requests are already waiting. Please try again later."
    return Reply(status, error_body(message, "server_error" if status == 503 else "overloaded_error", "overloaded"))
