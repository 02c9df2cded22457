"""What the sweeper does each round besides batches: send due webhook deliveries, delete expired files."""

from __future__ import annotations

import logging

import redis

from batchq.pipeline.retention import reap_expired
from batchq.state.files import FileRegistry
from batchq.storage import ObjectStore
from batchq.webhooks.dispatch import drain_due, get_sender

log = logging.getLogger(__name__)


def housekeep(client: redis.Redis[bytes], files: FileRegistry, store: ObjectStore) -> None:
    """One round; each part's failure is logged and leaves the other to run."""
    try:
        drain_due(client, get_sender())
    except Exception:  # noqa: BLE001 - e.g. Redis restarting: the next round drains them
        log.warning("webhook drain failed", exc_info=True)
    try:
        reap_expired(client, files, store)
    except Exception:  # noqa: BLE001 - e.g. the store unreachable: the next round tries again
        log.warning("retention reaper failed", exc_info=True)
