"""``LeaseKeeper``: one heartbeat thread per process that renews the in-flight leases of every call in progress.

A lease says its holder is alive: short (30 s), renewed every ~lease / 3 while the upstream call runs, however long
that takes. When the process dies the renewals stop, and the slot returns within one lease. The keeper renews all
of a limiter's grants in one round trip per beat, whatever the number of calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from batchq.ratelimit.limiter import DEFAULT_LEASE_S, Grant, RateLimiter

logger = logging.getLogger(__name__)

#: Beats per lease: a renewal may fail (or come late) twice before the lease lapses.
BEATS_PER_LEASE = 3


class LeaseKeeper:
    """Renews registered grants every ``interval_s`` on a daemon thread (started on first use).

    Args:
        interval_s: Time between beats; ``lease_s / 3`` of the limiters it serves (10 s with the default lease).
    """

    def __init__(self, interval_s: float = DEFAULT_LEASE_S / BEATS_PER_LEASE) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_s = interval_s
        self._held: dict[int, tuple[RateLimiter, dict[str, Grant]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, limiter: RateLimiter, grant: Grant) -> None:
        """Renew ``grant`` (of ``limiter``) on every beat until :meth:`discard`."""
        with self._lock:
            self._held.setdefault(id(limiter), (limiter, {}))[1][grant.grant_id] = grant
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="batchq-lease-keeper", daemon=True)
                self._thread.start()

    def discard(self, grant: Grant) -> None:
        """Stop renewing ``grant`` (its call ended). Unknown grants are ignored."""
        with self._lock:
            for key, (_, grants) in list(self._held.items()):
                if grants.pop(grant.grant_id, None) is not None and not grants:
                    del self._held[key]

    @contextmanager
    def holding(self, limiter: RateLimiter, grant: Grant) -> Iterator[Grant]:
        """``with keeper.holding(limiter, grant):`` renews it for the block's duration."""
        self.add(limiter, grant)
        try:
            yield grant
        finally:
            self.discard(grant)

    def beat(self) -> list[Grant]:
        """Renew everything once (one round trip per limiter). Lapsed grants stop being renewed.

        Returns:
            The grants found lapsed: their calls are no longer covered by the in-flight cap.
        """
        with self._lock:
            work = [(limiter, list(grants.values())) for limiter, grants in self._held.values()]
        lapsed: list[Grant] = []
        for limiter, grants in work:
            try:
                flags = limiter.renew(grants)
            except redis.RedisError as exc:  # Redis away for a moment: the next beat tries again
                logger.warning("lease renewal of %d grant(s) on %s failed: %s", len(grants), limiter.route, exc)
                continue
            lapsed.extend(g for g, ok in zip(grants, flags, strict=True) if not ok)
        for grant in lapsed:
            logger.warning("in-flight lease of grant %s on %s had lapsed", grant.grant_id, grant.route)
            self.discard(grant)
        return lapsed

    def stop(self) -> None:
        """End the heartbeat thread (it also ends with the process)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:  # never let the heartbeat die silently: leases would lapse under live calls
                logger.exception("lease keeper beat failed")
