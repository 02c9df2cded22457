"""The asyncio twin of :mod:`batchq.client.sync_client`: :class:`AsyncClient` with ``files`` and ``batches``.

Every method matches its sync twin's arguments and returns (it is the same operation); ``results`` and
``files.iter_lines`` return streams to ``async for`` over (and to ``aclose`` or use with ``async with``). This module
only performs the operations' I/O, with ``httpx.AsyncClient`` and ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx

from batchq.client.base import BaseClient, ClientSetup
from batchq.client.connection import Connection
from batchq.client.effects import Effect, Op, Send, Sleep, Steps
from batchq.client.lines import AsyncLineStream, Lines, aperform_body
from batchq.client.pages import AsyncPage, Listing
from batchq.client.resources import AsyncBinder, BatchEndpoints, BoundOp, FileEndpoints
from batchq.client.webhook_resources import WebhookEndpoints

__all__ = ["AsyncBatches", "AsyncClient", "AsyncFiles", "AsyncWebhooks"]

T = TypeVar("T")
AsyncSleep = Callable[[float], Awaitable[None]]


class AsyncRunner:
    """Runs operations with an ``httpx.AsyncClient``; arguments as :class:`SyncRunner` (``sleep`` is awaited)."""

    def __init__(self, conn: Connection, http: httpx.AsyncClient, *, owns_http: bool, sleep: AsyncSleep) -> None:
        self.conn = conn
        self._http = http
        self._owns_http = owns_http
        self._sleep = sleep

    async def run(self, op: Op[T]) -> T:
        with Steps(op) as steps:
            for effect in steps:
                await steps.asettle(self._perform(effect))
        return steps.value

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            response = await self._http.send(self._http.build_request(**effect.request), stream=effect.stream)
            if not response.is_success:  # the operation reads the error envelope
                await response.aread()
                await response.aclose()
            return response
        if isinstance(effect, Sleep):
            return await self._sleep(effect.seconds)
        return await aperform_body(effect)

    def deliver(self, value: object) -> Any:
        """What a method returns for an operation's value: a list page or a line stream of this client, or it."""
        if isinstance(value, Listing):
            listing = value

            async def fetch(last: str) -> Any:
                return self.deliver(await self.run(listing.after(last)))

            return AsyncPage.of(listing, fetch)
        if isinstance(value, Lines):
            return AsyncLineStream.of(value)
        return value

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


class _AsyncResource(AsyncBinder):
    def __init__(self, runner: AsyncRunner) -> None:
        self._runner = runner

    def _bind(self, op: BoundOp) -> Callable[..., Coroutine[Any, Any, Any]]:
        runner = self._runner

        async def method(*args: Any, **kwargs: Any) -> Any:
            return runner.deliver(await runner.run(op(runner.conn, *args, **kwargs)))

        return method


class AsyncFiles(FileEndpoints, _AsyncResource):
    """``client.files`` of :class:`AsyncClient`; see :class:`batchq.client.sync_client.Files`."""


class AsyncBatches(BatchEndpoints, _AsyncResource):
    """``client.batches`` of :class:`AsyncClient` (``results`` is ``async for``-able)."""


class AsyncWebhooks(WebhookEndpoints, _AsyncResource):
    """``client.webhooks`` of :class:`AsyncClient` (``verify`` is a plain function)."""


class AsyncClient(BaseClient[httpx.AsyncBaseTransport, httpx.AsyncClient, AsyncSleep]):
    """Asyncio client of a batchq server; arguments as :class:`Client` (``sleep`` is awaited, default
    ``asyncio.sleep``). Close with :meth:`aclose` or ``async with``."""

    files: AsyncFiles
    batches: AsyncBatches
    webhooks: AsyncWebhooks

    def _connect(self, setup: ClientSetup[httpx.AsyncBaseTransport, httpx.AsyncClient, AsyncSleep]) -> None:
        http = setup.http_client or httpx.AsyncClient(timeout=setup.timeout, transport=setup.transport)
        owns_http = setup.http_client is None
        self._runner = AsyncRunner(setup.conn, http, owns_http=owns_http, sleep=setup.sleep or asyncio.sleep)
        self.files = AsyncFiles(self._runner)
        self.batches = AsyncBatches(self._runner)
        self.webhooks = AsyncWebhooks(self._runner)

    async def aclose(self) -> None:
        await self._runner.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
