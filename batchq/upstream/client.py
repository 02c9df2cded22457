"""Calls to the OpenAI-compatible upstream over httpx, each answer sorted into one of a few outcomes.

Retrying is not done here: the request task decides (it shares the rate limiter and the attempt count).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from batchq.redact import redact, redact_json

#: Header names that carry the line's identity upstream (the simulator counts deliveries by them).
BATCH_ID_HEADER = "X-Batchq-Batch-Id"
CUSTOM_ID_HEADER = "X-Batchq-Custom-Id"


@dataclass(frozen=True)
class UpstreamAnswer:
    """An HTTP answer from the upstream (any status)."""

    status_code: int
    body: Any
    """Parsed JSON, or the raw text when the upstream did not answer JSON."""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300 and isinstance(self.body, dict)

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")

    def error_code(self) -> str:
        """The upstream's own error code when its body has one, else ``upstream_http_<status>``."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(err, dict) and isinstance(err.get("code"), str) and err["code"]:
            return str(err["code"])
        return f"upstream_http_{self.status_code}"

    def error_message(self) -> str:
        """The upstream's message for the error line, with secrets and token-looking strings redacted."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return redact(str(err["message"]))
        if 200 <= self.status_code < 300:
            return "The upstream answered 2xx without a JSON object body."
        return f"The upstream answered HTTP {self.status_code}."


@dataclass(frozen=True)
class UpstreamFailure:
    """No HTTP answer: a timeout or a connection that failed or dropped."""

    code: str
    """``upstream_timeout`` or ``upstream_unreachable``."""
    message: str


#: Connections one client keeps to upstreams (one call at a time; two covers a second route).
PER_CLIENT_CONNECTIONS = 2


class UpstreamClient:
    """httpx clients lent out one per call in progress, each with its own small pool.

    One client shared by 64+ concurrent calls spends much of a request's CPU in httpcore's pool bookkeeping (a
    lock and a scan of every connection on each checkout and return, measured with py-spy); a client that makes
    one call at a time needs no sharing at all. Clients are lent, not kept per thread: gevent makes a greenlet
    (so a new ``threading.local``) for every task, which would build a client, with its connection, per call.
    The most recently returned client goes out first, so warm keep-alive connections are reused.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=60.0, pool=read_timeout_s)
        self._limits = httpx.Limits(max_connections=min(max_connections, PER_CLIENT_CONNECTIONS))
        self._ssl = ssl.create_default_context()  # one context for every client (each costs ~1 MB)
        self._transport = transport
        self._clients: list[httpx.Client] = []
        self._idle: list[httpx.Client] = []
        self._lock = threading.Lock()

    @contextmanager
    def _borrow(self) -> Iterator[httpx.Client]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = httpx.Client(
                timeout=self._timeout, limits=self._limits, transport=self._transport, verify=self._ssl
            )
            with self._lock:
                self._clients.append(client)
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)

    def post(
        self, url: str, body: dict[str, Any], *, api_key: str | None, batch_id: str, custom_id: str
    ) -> UpstreamAnswer | UpstreamFailure:
        headers = {BATCH_ID_HEADER: batch_id, CUSTOM_ID_HEADER: _header_safe(custom_id)}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        try:
            with self._borrow() as client:
                response = client.post(
                    url, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
                )
        except httpx.TimeoutException as exc:
            return UpstreamFailure("upstream_timeout", f"The upstream did not answer in time ({type(exc).__name__}).")
        except httpx.TransportError as exc:
            detail = redact(str(exc)[:200], (api_key,))
            return UpstreamFailure(
                "upstream_unreachable", f"Could not reach the upstream: {type(exc).__name__}: {detail}"
            )
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = response.text[:4000]
        if not 200 <= response.status_code < 300:
            # An error body goes into the user's error line: OpenAI's 401 quotes parts of the key.
            parsed = redact_json(parsed, (api_key,))
        return UpstreamAnswer(response.status_code, parsed, {k.lower(): v for k, v in response.headers.items()})

    def close(self) -> None:
        with self._lock:
            clients, self._clients, self._idle = self._clients, [], []
        for client in clients:
            client.close()


def _header_safe(value: str) -> str:
    """custom_ids may hold any characters; headers may not. Percent-encode what does not fit."""
    if value.isascii() and value.isprintable():
        return value
    from urllib.parse import quote

    return quote(value, safe="")
