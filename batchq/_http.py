"""The client's HTTP layer: where to connect, how to authenticate, when and how long to retry.

Retry policy (one place, like the openai SDK's ``_base_client``): 408, 429, 5xx, connection errors and timeouts are
retried up to ``max_retries`` times (default 2). ``x-should-retry: false`` forbids a retry, ``true`` forces one. The
delay is the server's ``retry-after-ms`` / ``Retry-After`` when it gives one of at most ``MAX_RETRY_AFTER_S``, else
a capped exponential backoff with jitter. A request body is rebuilt for each attempt (files are rewound), and its
headers, an ``Idempotency-Key`` included, stay the same.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from batchq.client_errors import APIConnectionError, APITimeoutError, error_from_response

#: Server root used when neither ``base_url`` nor ``BATCHQ_URL`` is given.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: Retries after the first attempt (so 3 attempts in all).
DEFAULT_MAX_RETRIES = 2
#: Per-request timeout: long, because uploads and result downloads may be large.
DEFAULT_TIMEOUT_S = 600.0
#: Time allowed to establish a connection.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: First backoff delay; doubles per retry.
INITIAL_RETRY_DELAY_S = 0.5
#: Longest computed backoff delay.
MAX_RETRY_DELAY_S = 8.0
#: Longest server-requested delay honoured; a longer one falls back to the computed backoff.
MAX_RETRY_AFTER_S = 60.0
#: Statuses worth retrying (unless the server says ``x-should-retry: false``).
RETRY_STATUSES = frozenset({408, 429})

#: Sent as User-Agent on every request.
USER_AGENT = "batchq-python/0.1.0"

T = TypeVar("T")

#: Request files for httpx multipart uploads, rebuilt for each attempt.
FilesFactory = Callable[[], Mapping[str, Any]]


def resolve_base_url(base_url: str | None) -> str:
    """The server root: the argument, else ``BATCHQ_URL``, else the default; a trailing ``/v1`` is dropped.

    Args:
        base_url: Explicit server root (``http://host:port``), or None.

    Returns:
        The root without a trailing slash or ``/v1``.
    """
    url = (base_url or os.environ.get("BATCHQ_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def resolve_api_key(api_key: str | None) -> str | None:
    """The API key: the argument, else ``BATCHQ_API_KEY``, else None (local mode: no Authorization header)."""
    return api_key or os.environ.get("BATCHQ_API_KEY") or None


def default_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def backoff_delay(retries_done: int) -> float:
    """Capped exponential backoff with up to 25 % jitter taken off, for the retry after ``retries_done`` retries."""
    delay = min(INITIAL_RETRY_DELAY_S * 2.0**retries_done, MAX_RETRY_DELAY_S)
    return delay * (1.0 - 0.25 * random.random())


def retry_after_s(headers: httpx.Headers) -> float | None:
    """The delay the server asks for, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return float(raw_ms) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def should_retry(response: httpx.Response) -> bool:
    """Whether an error answer is worth another attempt; ``x-should-retry`` overrides the status."""
    override = response.headers.get("x-should-retry", "").strip().lower()
    if override == "true":
        return True
    if override == "false":
        return False
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


def retry_delay(retries_done: int, response: httpx.Response | None) -> float:
    """How long to wait before the next attempt: the server's wish if sane, else the computed backoff."""
    if response is not None:
        wanted = retry_after_s(response.headers)
        if wanted is not None and 0 <= wanted <= MAX_RETRY_AFTER_S:
            return wanted
    return backoff_delay(retries_done)


def _connection_error(exc: httpx.TransportError) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"Request timed out: {exc}")
    return APIConnectionError(f"Connection error: {exc}")


class SyncHTTP:
    """Sends requests to ``{base_url}/v1…`` with authentication and retries.

    Args:
        base_url: Server root (already resolved).
        api_key: Bearer key, or None for local mode.
        timeout: httpx timeout for every request.
        max_retries: Retries after the first attempt.
        transport: httpx transport (e.g. ``httpx.MockTransport``) for a client built here.
        http_client: A ready httpx client to use instead (not closed by :meth:`close`).
        sleep: Function used to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        timeout: httpx.Timeout,
        max_retries: int,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url
        self.max_retries = max_retries
        self.sleep = sleep
        self._headers = default_headers(api_key)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout, transport=transport)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: FilesFactory | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        max_retries: int | None = None,
    ) -> httpx.Response:
        """Send one request, retrying per the module's policy; raise the mapped error if it finally fails.

        Args:
            method: HTTP method.
            path: Path under ``/v1`` (e.g. ``/batches``).
            params: Query parameters; None values are dropped.
            json: JSON body.
            files: Builds the multipart files for each attempt.
            data: Multipart form fields.
            headers: Extra headers, identical on every attempt.
            stream: Leave the body unread (the caller must close the response).
            max_retries: Overrides the client's retries for this request (0 for a body that cannot be replayed).

        Returns:
            The successful (2xx) response.

        Raises:
            APIError: The mapped subclass for the final error answer, or APIConnectionError / APITimeoutError.
        """
        retries = self.max_retries if max_retries is None else max_retries
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            request = self._client.build_request(
                method,
                f"{self.base_url}/v1{path}",
                params=query or None,
                json=json,
                files=files() if files else None,
                data=data,
                headers={**self._headers, **(headers or {})},
            )
            try:
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise _connection_error(exc) from exc
                self.sleep(retry_delay(attempt, None))
                attempt += 1
                continue
            if response.is_success:
                return response
            response.read()
            response.close()
            if attempt >= retries or not should_retry(response):
                raise error_from_response(response)
            self.sleep(retry_delay(attempt, response))
            attempt += 1

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


class AsyncHTTP:
    """The asyncio twin of :class:`SyncHTTP` (same arguments; ``sleep`` is awaited)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        timeout: httpx.Timeout,
        max_retries: int,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url
        self.max_retries = max_retries
        self.sleep = sleep
        self._headers = default_headers(api_key)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: FilesFactory | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        max_retries: int | None = None,
    ) -> httpx.Response:
        """Send one request with retries; see :meth:`SyncHTTP.request`."""
        retries = self.max_retries if max_retries is None else max_retries
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            request = self._client.build_request(
                method,
                f"{self.base_url}/v1{path}",
                params=query or None,
                json=json,
                files=files() if files else None,
                data=data,
                headers={**self._headers, **(headers or {})},
            )
            try:
                response = await self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise _connection_error(exc) from exc
                await self.sleep(retry_delay(attempt, None))
                attempt += 1
                continue
            if response.is_success:
                return response
            await response.aread()
            await response.aclose()
            if attempt >= retries or not should_retry(response):
                raise error_from_response(response)
            await self.sleep(retry_delay(attempt, response))
            attempt += 1

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class _LineSplitter:
    """Splits byte chunks into lines on ``\\n`` only (as the server counts lines), dropping a trailing ``\\r``.

    ``str.splitlines`` (used by httpx's ``iter_lines``) would also split inside a JSON string holding U+2028.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:
            self._parts.append(chunk)
            return []
        lines = [b"".join([*self._parts, pieces[0]]), *pieces[1:-1]]
        self._parts = [pieces[-1]] if pieces[-1] else []
        return [line.removesuffix(b"\r") for line in lines]

    def flush(self) -> list[bytes]:
        rest, self._parts = b"".join(self._parts), []
        return [rest.removesuffix(b"\r")] if rest else []


class LineStream(Iterator[T]):
    """The lines of a streamed response body, parsed one by one; closes the response when exhausted or on close().

    Usable as an iterator and as a context manager.

    Args:
        response: A streamed (unread) successful response.
        parse: Turns a line (UTF-8 decoded, line end removed) into an item; returning None skips the line.
    """

    def __init__(self, response: httpx.Response, parse: Callable[[str], T | None]) -> None:
        self._response = response
        self._chunks = response.iter_bytes()
        self._parse = parse
        self._splitter = _LineSplitter()
        self._pending: deque[bytes] = deque()
        self._done = False

    def __next__(self) -> T:
        while True:
            while not self._pending:
                if self._done:
                    self.close()
                    raise StopIteration
                try:
                    self._pending.extend(self._splitter.feed(next(self._chunks)))
                except StopIteration:
                    self._done = True
                    self._pending.extend(self._splitter.flush())
                except httpx.TransportError as exc:
                    self.close()
                    raise _connection_error(exc) from exc
            item = self._parse(self._pending.popleft().decode("utf-8", "replace"))
            if item is not None:
                return item

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> LineStream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncLineStream(AsyncIterator[T]):
    """The asyncio twin of :class:`LineStream` (``async for``, ``async with``, :meth:`aclose`)."""

    def __init__(self, response: httpx.Response, parse: Callable[[str], T | None]) -> None:
        self._response = response
        self._chunks = response.aiter_bytes()
        self._parse = parse
        self._splitter = _LineSplitter()
        self._pending: deque[bytes] = deque()
        self._done = False

    async def __anext__(self) -> T:
        while True:
            while not self._pending:
                if self._done:
                    await self.aclose()
                    raise StopAsyncIteration
                try:
                    self._pending.extend(self._splitter.feed(await self._chunks.__anext__()))
                except StopAsyncIteration:
                    self._done = True
                    self._pending.extend(self._splitter.flush())
                except httpx.TransportError as exc:
                    await self.aclose()
                    raise _connection_error(exc) from exc
            item = self._parse(self._pending.popleft().decode("utf-8", "replace"))
            if item is not None:
                return item

    async def aclose(self) -> None:
        await self._response.aclose()

    async def __aenter__(self) -> AsyncLineStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
