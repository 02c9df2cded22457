"""One hard deadline for a whole webhook attempt: connect, TLS handshake, the answer's headers and body.

httpx's timeouts apply per phase and per read, so a receiver that drips a header byte every few seconds keeps an
attempt (and one of the few delivery threads) alive for hours. Here every socket the attempt opens is watched, and
when the deadline passes a timer shuts them all down: whatever call is blocked on one returns at once (end of
stream, or an error), under threads and gevent alike, in the TLS handshake as in a header read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import httpcore
import httpx


class AttemptDeadline:
    """A context manager: ``seconds`` after entering it, every watched socket is shut down and ``expired`` is set."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._ends_at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._done = False
        # Duplicates of the attempt's sockets: ours to close, so a shutdown can never reach a descriptor that the
        # connection's owner closed and the process reused meanwhile.
        self._watched: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> AttemptDeadline:
        self._ends_at = time.monotonic() + self.seconds
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            watched, self._watched = self._watched, []
        for sock in watched:
            sock.close()

    def remaining(self) -> float:
        return max(0.0, self._ends_at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Cut ``sock`` off at the deadline (at once, when it has passed already)."""
        dup = sock.dup()
        with self._lock:
            if not (self.expired or self._done):
                self._watched.append(dup)
                return
        _shut(dup)
        dup.close()

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport whose every connection this deadline watches."""
        return _DeadlineTransport(self)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._watched:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer: nothing to cut
        sock.shutdown(socket.SHUT_RDWR)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each watched by the deadline, connect timeouts clamped to what is left of it."""

    def __init__(self, deadline: AttemptDeadline) -> None:
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.remaining()
        if left <= 0:
            raise httpcore.ConnectTimeout("the attempt's deadline passed")
        timeout = left if timeout is None else min(timeout, left)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            self._deadline.watch(sock)
        return stream

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.BaseTransport):
    """httpx.HTTPTransport's work on a connection pool with the deadline's backend (httpx takes no backend)."""

    def __init__(self, deadline: AttemptDeadline) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=1,
            network_backend=_DeadlineBackend(deadline),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        answer = self._pool.handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_AnswerStream(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _AnswerStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
