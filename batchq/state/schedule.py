"""The scheduler's state: which batches have lines left to feed, and the window of lines handed to the broker.

Instead of publishing a whole batch at once, lines are fed a window at a time: intake puts the batch on the
schedule and feeds what the window allows; every recorded outcome frees a place and feeds the next line; the
sweeper tops the window up. So the broker never holds more than ``window`` request messages whatever the
backlog, a batch that arrives later starts at once, and accounts share the slots by weight.
"""

from __future__ import annotations

from typing import Any

import redis

from batchq import keys, lua
from batchq.broker import MessageTemplate
from batchq.state.lines import script

#: The keys the feed script names from the batches and accounts it picks ('%s' for the id).
_FEED_KEY_TEMPLATES = (
    keys.batch_record("%s"),
    keys.batch_open("%s"),
    keys.sched_account_batches("%s"),
    keys.sched_account_queued("%s"),
)


class Schedule:
    """Feeds lines fairly. One instance per process; safe to share between threads."""

    def __init__(
        self, client: redis.Redis[bytes], *, window: int, chunk: int, due_back_s: float, weights: dict[str, float]
    ) -> None:
        self.redis = client
        self.window = window
        self.chunk = chunk
        self.due_back_ms = int(due_back_s * 1000)
        self._feed = client.register_script(script("feed.lua"))
        self._schedule = client.register_script(script("schedule.lua"))
        self._weights = weights
        self._weights_written = False

    def add(self, batch_id: str, account: str, urgent_at: int) -> None:
        """Put the batch on the schedule (again: harmless)."""
        self._write_weights()
        self._schedule(
            keys=[keys.sched_accounts(), keys.sched_urgent(), keys.sched_account_batches(account)],
            args=[batch_id, account, urgent_at],
        )

    def feed_on(
        self, pipe: redis.client.Pipeline[bytes] | None, limit: int, *, push: MessageTemplate | None = None
    ) -> Any:
        """Pick up to ``limit`` lines (within the window); queued on ``pipe``, or run now when it is None.

        ``push``: the script also pushes the picked lines' request messages onto the broker's queue (no second
        round trip to publish them); without it the caller publishes what :meth:`picked` returns.
        """
        args: list[Any] = [self.window, self.chunk, self.due_back_ms, limit, *_FEED_KEY_TEMPLATES]
        if push is not None:
            args += [push.queue, push.text, push.batch, push.line, push.tag]
        return lua.run(
            self.redis,
            pipe,
            self._feed,
            [keys.sched_accounts(), keys.sched_urgent(), keys.sched_queued(), keys.sched_weights()],
            args,
        )

    def load_scripts(self) -> None:
        lua.load(self.redis, self._feed, self._schedule)

    def feed(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Pick up to ``limit`` lines (default: as many as the window has room for), now."""
        return self.picked(self.feed_on(None, self.window if limit is None else limit))

    @staticmethod
    def picked(reply: Any) -> list[tuple[str, int]]:
        flat = list(reply or [])
        return [(lua.text(flat[i]), int(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]

    def queued(self) -> int:
        return int(self.redis.get(keys.sched_queued()) or 0)

    def set_queued(self, total: int, per_account: dict[str, int]) -> None:
        """Repair the window's counters from the open sets (the sweeper; counters only drift after a crash)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.sched_queued(), total)
            for account, n in per_account.items():
                pipe.set(keys.sched_account_queued(account), n)
            pipe.execute()

    def _write_weights(self) -> None:
        if self._weights_written:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.sched_weights())
            if self._weights:
                pipe.hset(keys.sched_weights(), mapping={k: str(v) for k, v in self._weights.items()})
            pipe.execute()
        self._weights_written = True
