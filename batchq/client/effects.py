"""What an operation asks its runner to do, so one operation serves both clients.

The client's operations (:mod:`batchq.client.file_ops`, :mod:`batchq.client.batch_ops`) are generators: they yield
these effects, get each one's result sent back (or its exception thrown in), and return their value. The sync client
performs the effects with ``httpx.Client`` and ``time.sleep``, the async one with ``httpx.AsyncClient`` and
``asyncio.sleep``; requests, retries, decoding and paging are written once. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    """Send a request; the result is the response, read and closed unless it is a streamed success.

    Attributes:
        request: Arguments of httpx's ``build_request`` (so the client's timeout applies).
        stream: Leave a successful body unread.
    """

    request: Mapping[str, Any]
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait (between retries and polls); the result is None."""

    seconds: float


@dataclass(slots=True)
class Body:
    """The body of a streamed response, read chunk by chunk.

    Attributes:
        response: The streamed response.
        chunks: The runner's iterator over the body, made on the first read.
    """

    response: httpx.Response
    chunks: Any = None


@dataclass(frozen=True, slots=True)
class NextChunk:
    """Read the next chunk of a body; the result is the bytes, or None at its end."""

    body: Body


@dataclass(frozen=True, slots=True)
class Close:
    """Close a streamed response; the result is None."""

    response: httpx.Response


Effect = Send | Sleep | NextChunk | Close
#: An operation: yields effects, returns a T.
Op = Generator[Effect, Any, T]


class Steps(Generic[T]):
    """One operation walked effect by effect: iterate for the effects, settle each with its outcome.

    A runner's loop is ``with Steps(op) as steps: for effect in steps: steps.settle(...)``, then ``steps.value``.
    Leaving the ``with`` early (Ctrl-C, cancellation) closes the operation, so its own cleanup runs.
    """

    def __init__(self, op: Op[T]) -> None:
        self._op = op
        self._effect: Effect | None = None
        self._value: T  # set when the operation returns
        self._advance(op.send, None)

    def _advance(self, step: Callable[[Any], Effect], arg: Any) -> None:
        try:
            self._effect = step(arg)
        except StopIteration as stop:
            self._effect, self._value = None, stop.value

    def __iter__(self) -> Iterator[Effect]:
        while self._effect is not None:
            yield self._effect

    def settle(self, perform: Callable[[], Any]) -> None:
        """Perform the current effect and hand its result, or its error, to the operation."""
        try:
            result = perform()
        except Exception as exc:  # the operation decides: retry, map the error, close a stream
            self._advance(self._op.throw, exc)
        else:
            self._advance(self._op.send, result)

    async def asettle(self, performing: Awaitable[Any]) -> None:
        """:meth:`settle` for an effect being performed by a coroutine."""
        try:
            result = await performing
        except Exception as exc:
            self._advance(self._op.throw, exc)
        else:
            self._advance(self._op.send, result)

    @property
    def value(self) -> T:
        """What the operation returned (once iterating is over)."""
        return self._value

    def __enter__(self) -> Steps[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._op.close()
