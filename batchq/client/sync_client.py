"""Python client for the batchq HTTP API, in the openai SDK's style: ``client.files`` and ``client.batches``.

    client = batchq.Client()                      # base_url from BATCHQ_URL, api_key from BATCHQ_API_KEY
    batch = client.batches.submit("requests.jsonl", model="Llama-3.3-70B-Instruct")
    batch = client.batches.wait(batch.id)
    for result in client.batches.results(batch.id):
        ...

The methods are the operations of :mod:`batchq.client.resources`; this module only performs their I/O, with
``httpx.Client`` and ``time.sleep``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import httpx

from batchq.client.base import BaseClient, ClientSetup
from batchq.client.connection import Connection
from batchq.client.effects import Effect, Op, Send, Sleep, Steps
from batchq.client.lines import Lines, LineStream, perform_body
from batchq.client.pages import Listing, SyncPage
from batchq.client.resources import BatchEndpoints, BoundOp, FileEndpoints, SyncBinder
from batchq.client.webhook_resources import WebhookEndpoints

__all__ = ["Batches", "Client", "Files", "Webhooks"]

T = TypeVar("T")
SyncSleep = Callable[[float], None]


class SyncRunner:
    """Runs operations with an ``httpx.Client``.

    Args:
        conn: The server and its headers.
        http: The httpx client.
        owns_http: Close ``http`` in :meth:`close` (False for a client the caller passed in).
        sleep: Waits between retries and polls.
    """

    def __init__(self, conn: Connection, http: httpx.Client, *, owns_http: bool, sleep: SyncSleep) -> None:
        self.conn = conn
        self._http = http
        self._owns_http = owns_http
        self._sleep = sleep

    def run(self, op: Op[T]) -> T:
        with Steps(op) as steps:
            for effect in steps:
                steps.settle(partial(self._perform, effect))
        return steps.value

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            response = self._http.send(self._http.build_request(**effect.request), stream=effect.stream)
            if not response.is_success:  # the operation reads the error envelope
                response.read()
                response.close()
            return response
        if isinstance(effect, Sleep):
            return self._sleep(effect.seconds)
        return perform_body(effect)

    def deliver(self, value: object) -> Any:
        """What a method returns for an operation's value: a list page or a line stream of this client, or it."""
        if isinstance(value, Listing):
            listing = value
            return SyncPage.of(listing, lambda last: self.deliver(self.run(listing.after(last))))
        if isinstance(value, Lines):
            return LineStream.of(value)
        return value

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


class _Resource(SyncBinder):
    def __init__(self, runner: SyncRunner) -> None:
        self._runner = runner

    def _bind(self, op: BoundOp) -> Callable[..., Any]:
        runner = self._runner

        def method(*args: Any, **kwargs: Any) -> Any:
            return runner.deliver(runner.run(op(runner.conn, *args, **kwargs)))

        return method


class Files(FileEndpoints, _Resource):
    """``client.files``: upload, list, read and delete files."""


class Batches(BatchEndpoints, _Resource):
    """``client.batches``: create and follow batches, read their results, retry their failures."""


class Webhooks(WebhookEndpoints, _Resource):
    """``client.webhooks``: endpoints for batch events, their delivery log, ``verify`` for receivers."""


class Client(BaseClient[httpx.BaseTransport, httpx.Client, SyncSleep]):
    """Synchronous client of a batchq server.

    Args:
        base_url: Server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is fine); else ``BATCHQ_URL``,
            else ``http://127.0.0.1:8000``.
        api_key: Sent as ``Authorization: Bearer``; else ``BATCHQ_API_KEY``; else none (local mode).
        timeout: Seconds per request, or an ``httpx.Timeout``.
        max_retries: Retries of 408/429/5xx answers and connection errors (default 2).
        transport: An httpx transport (``httpx.MockTransport`` in tests).
        http_client: A ready ``httpx.Client`` to use instead (left open by :meth:`close`).
        sleep: Waits between retries and polls (default ``time.sleep``).
    """

    files: Files
    batches: Batches
    webhooks: Webhooks

    def _connect(self, setup: ClientSetup[httpx.BaseTransport, httpx.Client, SyncSleep]) -> None:
        http = setup.http_client or httpx.Client(timeout=setup.timeout, transport=setup.transport)
        sleep = setup.sleep or time.sleep
        self._runner = SyncRunner(setup.conn, http, owns_http=setup.http_client is None, sleep=sleep)
        self.files = Files(self._runner)
        self.batches = Batches(self._runner)
        self.webhooks = Webhooks(self._runner)

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
