"""Streamed line-by-line bodies (result files, file contents): one reader, and its sync and async iterators."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, Generic, Self, TypeVar

import httpx

from batchq.client.effects import Body, Close, Effect, NextChunk, Op, Steps
from batchq.client.exceptions import connection_error

T = TypeVar("T")


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


class Lines(Generic[T]):
    """The lines of a streamed (unread, successful) response, parsed one by one; closed when exhausted.

    Args:
        response: The streamed response.
        parse: Turns a line (UTF-8 decoded, line end removed) into an item; returning None skips the line.
    """

    def __init__(self, response: httpx.Response, parse: Callable[[str], T | None]) -> None:
        self.response = response
        self._body = Body(response)
        self._parse = parse
        self._splitter = _LineSplitter()
        self._pending: deque[bytes] = deque()
        self._done = False

    def next_item(self) -> Op[T | None]:
        """The next item, or None once the body is exhausted (the response is closed then)."""
        while True:
            while not self._pending:
                if self._done:
                    yield Close(self.response)
                    return None
                try:
                    chunk = yield NextChunk(self._body)
                except httpx.TransportError as exc:
                    yield Close(self.response)
                    raise connection_error(exc) from exc
                if chunk is None:
                    self._done = True
                    self._pending.extend(self._splitter.flush())
                else:
                    self._pending.extend(self._splitter.feed(chunk))
            item = self._parse(self._pending.popleft().decode("utf-8", "replace"))
            if item is not None:
                return item

    def each(self, consume: Callable[[T], object]) -> Op[None]:
        """Hand every item to ``consume``, one at a time; the response is closed at the end or on an error."""
        try:
            while (item := (yield from self.next_item())) is not None:
                consume(item)
        except Exception:
            yield Close(self.response)
            raise


def perform_body(effect: Effect) -> Any:
    """Perform a body effect (:class:`NextChunk`, :class:`Close`) synchronously."""
    if isinstance(effect, NextChunk):
        body = effect.body
        if body.chunks is None:
            body.chunks = body.response.iter_bytes()
        return next(body.chunks, None)
    if isinstance(effect, Close):
        return effect.response.close()
    raise TypeError(f"not a body effect: {effect!r}")


async def aperform_body(effect: Effect) -> Any:
    """Perform a body effect with the response's async methods."""
    if isinstance(effect, NextChunk):
        body = effect.body
        if body.chunks is None:
            body.chunks = body.response.aiter_bytes()
        return await anext(body.chunks, None)
    if isinstance(effect, Close):
        return await effect.response.aclose()
    raise TypeError(f"not a body effect: {effect!r}")


class _Stream(Generic[T]):
    """What both line streams hold: the reader of a streamed response."""

    def __init__(self, response: httpx.Response, parse: Callable[[str], T | None]) -> None:
        self._lines = Lines(response, parse)

    @classmethod
    def of(cls, lines: Lines[T]) -> Self:
        """The stream of a reader an operation returned."""
        stream = cls.__new__(cls)
        stream._lines = lines
        return stream


class LineStream(_Stream[T], Iterator[T]):
    """The lines of a streamed response body, parsed one by one; closes the response when exhausted or on close().

    Usable as an iterator and as a context manager.

    Args:
        response: A streamed (unread) successful response.
        parse: Turns a line (UTF-8 decoded, line end removed) into an item; returning None skips the line.
    """

    def __next__(self) -> T:
        with Steps(self._lines.next_item()) as steps:
            for effect in steps:
                steps.settle(partial(perform_body, effect))
        if steps.value is None:
            raise StopIteration
        return steps.value

    def close(self) -> None:
        self._lines.response.close()

    def __enter__(self) -> LineStream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncLineStream(_Stream[T], AsyncIterator[T]):
    """The asyncio twin of :class:`LineStream` (``async for``, ``async with``, :meth:`aclose`)."""

    async def __anext__(self) -> T:
        with Steps(self._lines.next_item()) as steps:
            for effect in steps:
                await steps.asettle(aperform_body(effect))
        if steps.value is None:
            raise StopAsyncIteration
        return steps.value

    async def aclose(self) -> None:
        await self._lines.response.aclose()

    async def __aenter__(self) -> AsyncLineStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
