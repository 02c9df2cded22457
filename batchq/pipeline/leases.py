"""The heartbeat: one thread per worker process renews every lease the process holds, every third of a lease.

Two kinds of lease say that their holder is alive: a line's (so a killed worker's lines go back to the queue
within ``lease_s``) and a limiter grant's (so its in-flight slot comes back as fast). Both are renewed in one
round trip per beat, whatever the number of calls, and however long the upstream takes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import NoScriptError

from batchq.ratelimit import Grant, RateLimiter
from batchq.state import LineState

log = logging.getLogger(__name__)

#: Beats per lease: a renewal may fail (or come late) twice before the lease lapses.
BEATS_PER_LEASE = 3


class Heartbeat:
    """The leases of this process, and the daemon thread that keeps them alive (started on first use)."""

    def __init__(
        self, client: redis.Redis[bytes], lines: LineState, lease_s: float, *, interval_s: float | None = None
    ) -> None:
        self.redis = client
        self.lines = lines
        self.lease_s = lease_s
        self.interval_s = interval_s if interval_s is not None else lease_s / BEATS_PER_LEASE
        #: Unique per process (and per fork), so a renewal never touches another holder's lease.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        self._lines: dict[str, set[int]] = defaultdict(set)
        self._grants: dict[str, tuple[RateLimiter, Grant]] = {}
        self._lock = threading.Lock()
        #: True from the heartbeat thread's start until its loop ends. Checked instead of ``Thread.is_alive()``,
        #: which takes the thread's state lock (and under gevent yields to the hub while ``_lock`` is held).
        self._beating = False

    def hold(self, batch_id: str, line: int) -> None:
        with self._lock:
            self._lines[batch_id].add(line)
            self._start()

    def drop(self, batch_id: str, line: int) -> None:
        with self._lock:
            lines = self._lines.get(batch_id)
            if lines is not None:
                lines.discard(line)
                if not lines:
                    del self._lines[batch_id]

    @contextmanager
    def holding_grant(self, limiter: RateLimiter, grant: Grant) -> Iterator[Grant]:
        """``with heartbeat.holding_grant(limiter, grant):`` keeps the grant's slot for the block's duration."""
        with self._lock:
            self._grants[grant.grant_id] = (limiter, grant)
            self._start()
        try:
            yield grant
        finally:
            with self._lock:
                self._grants.pop(grant.grant_id, None)

    def beat(self) -> None:
        """Renew every held lease and grant once, in one round trip."""
        with self._lock:
            lines = {batch: sorted(held) for batch, held in self._lines.items()}
            by_limiter: dict[int, tuple[RateLimiter, list[Grant]]] = {}
            for limiter, grant in self._grants.values():
                by_limiter.setdefault(id(limiter), (limiter, []))[1].append(grant)
        if not lines and not by_limiter:
            return
        try:
            self._renew(lines, by_limiter)
        except NoScriptError:  # Redis restarted and lost its scripts
            self.lines.load_scripts()
            self._renew(lines, by_limiter)

    def _renew(self, lines: dict[str, list[int]], by_limiter: dict[int, tuple[RateLimiter, list[Grant]]]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for batch_id, held in lines.items():
                self.lines.renew_on(pipe, batch_id, self.owner, held, self.lease_s)
            for limiter, grants in by_limiter.values():
                limiter.renew_on(pipe, grants)
            pipe.execute()

    def _start(self) -> None:
        if not self._beating:
            self._beating = True
            threading.Thread(target=self._beat_forever, name="batchq-heartbeat", daemon=True).start()

    def _beat_forever(self) -> None:
        try:
            while True:
                time.sleep(self.interval_s)
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - Redis away for a moment: the next beat comes well within the lease
                    log.warning("lease heartbeat failed; retrying", exc_info=True)
        finally:
            self._beating = False  # the next hold starts a new thread
