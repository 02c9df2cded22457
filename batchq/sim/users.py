"""Interactive users inside the simulator: Poisson arrivals at ``interactive_rps`` that go through the engine.

They never touch HTTP (so they cost no client process and never count in ``received``); each one waits for a slot
like any request, with priority 0, and is recorded under class ``interactive``. The rate can change at run time
(``POST /sim/config``): the generator draws its next gap again at once, which keeps the arrivals Poisson because
exponential gaps have no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from batchq.sim.engine import Engine
from batchq.sim.engine_stats import INTERACTIVE


class InteractiveUsers:
    """The generator of interactive requests; ``run`` is the background task, ``changed`` wakes it."""

    def __init__(
        self, engine: Engine, rate: Callable[[], float], service_s: Callable[[random.Random], float], seed: int | None
    ) -> None:
        """``rate``: arrivals a second, read before each gap; ``service_s``: a service time drawn from the given rng."""
        self.engine, self.rate, self.service_s = engine, rate, service_s
        self.rng = random.Random(seed)  # its own, so users do not shift the draws of HTTP requests
        self.changed = asyncio.Event()
        self.tasks: set[asyncio.Task[bool]] = set()

    async def run(self) -> None:
        """Start one request after each exponential gap, until cancelled (then cancel the requests in flight)."""
        try:
            while True:
                rate = self.rate()
                if rate <= 0:
                    await self.changed.wait()
                elif not await self._wait_changed(self.rng.expovariate(rate)):
                    self._start()
                self.changed.clear()
        finally:
            for task in self.tasks:
                task.cancel()

    async def _wait_changed(self, timeout_s: float) -> bool:
        """Sleep ``timeout_s`` unless the rate changes first; True when it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout_s)
            return True
        return False

    def _start(self) -> None:
        task = asyncio.create_task(self.engine.serve(INTERACTIVE, 0, self.service_s(self.rng)))
        self.tasks.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self.tasks.discard)
