"""The API's side of the broker: it sends tasks by name and never imports worker code."""

from __future__ import annotations

from typing import Any

from kombu.exceptions import KombuError

from batchq.broker.config import make_producer
from batchq.broker.names import INTAKE_TASK
from batchq.config import Settings


class BrokerUnavailable(Exception):
    """The broker could not take the task (Redis down or stalled)."""


class TaskSender:
    """Sends the API's tasks, with the API's short socket timeouts and one quick publish retry."""

    def __init__(self, settings: Settings) -> None:
        producer = make_producer(settings)
        timeout = settings.api_redis_timeout_s
        transport: dict[str, Any] = dict(producer.conf.broker_transport_options or {})
        transport.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        producer.conf.broker_transport_options = transport
        producer.conf.broker_connection_timeout = timeout
        producer.conf.task_publish_retry_policy = {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        }
        self.app = producer

    def send_intake(self, batch_id: str) -> None:
        """Queue the batch's intake (one copy: its task id is derived from the batch).

        Raises:
            BrokerUnavailable: the broker did not take it.
        """
        try:
            # ignore_result: nothing waits on intake's result, and without it Celery's Redis backend subscribes
            # the API to a pub/sub channel per batch (with the backend's own, much longer socket timeout).
            self.app.send_task(INTAKE_TASK, args=[batch_id], task_id=f"intake-{batch_id}", ignore_result=True)
        except KombuError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self.app.close()
