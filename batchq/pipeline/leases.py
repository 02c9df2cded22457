"""The heartbeat: one thread per worker process renews every lease the process holds, every third of a lease.

A lease therefore says whether its holder is alive, however long the upstream takes: a killed worker's lines
are free again ``lease_s`` after its last beat.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections import defaultdict

import redis

from batchq.state import LineState

log = logging.getLogger(__name__)


class LeaseKeeper:
    """The leases of this process, and the thread that keeps them alive."""

    def __init__(self, client: redis.Redis[bytes], lines: LineState, lease_s: float) -> None:
        self.redis = client
        self.lines = lines
        self.lease_s = lease_s
        #: Unique per process (and per fork), so a renewal never touches another holder's lease.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        self._held: dict[str, set[int]] = defaultdict(set)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, batch_id: str, line: int) -> None:
        with self._lock:
            self._held[batch_id].add(line)
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat_forever, name="batchq-leases", daemon=True)
                self._thread.start()

    def drop(self, batch_id: str, line: int) -> None:
        with self._lock:
            lines = self._held.get(batch_id)
            if lines is not None:
                lines.discard(line)
                if not lines:
                    del self._held[batch_id]

    def held(self) -> dict[str, list[int]]:
        with self._lock:
            return {batch: sorted(lines) for batch, lines in self._held.items()}

    def beat(self) -> int:
        """Renew every held lease in one round trip; returns how many batches it covered."""
        held = self.held()
        if not held:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for batch_id, lines in held.items():
                self.lines.renew_on(pipe, batch_id, self.owner, lines, self.lease_s)
            pipe.execute()
        return len(held)

    def _beat_forever(self) -> None:
        while True:
            self._wake.wait(self.lease_s / 3)
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - Redis away for a moment: the next beat comes well within the lease
                log.warning("lease heartbeat failed; retrying", exc_info=True)
