"""Calls to the OpenAI-compatible upstream over urllib3, each answer sorted into one of a few outcomes.

Retrying is not done here: the request task decides (it shares the rate limiter and the attempt count).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3

from batchq.redact import redact, redact_json

log = logging.getLogger(__name__)

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


class UpstreamClient:
    """One urllib3 pool manager for every upstream call of the process (thread-safe; a pool per host).

    urllib3 over http.client costs ~0.45 ms of CPU a call here against httpx's ~0.77 (its client layers: auth and
    redirect flows, cookies, h11), and every task of the worker pays it (docs/bench.md). Connections are kept
    per host, most recently used first; past ``max_connections`` a call opens a connection that is not kept.
    No retries, no redirects: the request task decides, under the rate limiter. ``HTTP(S)_PROXY``/``ALL_PROXY``
    and ``NO_PROXY`` from the environment are honoured (HTTP proxies), as they were with httpx.
    """

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float, max_connections: int) -> None:
        self._options: dict[str, Any] = {
            "maxsize": max_connections,
            "block": False,
            "timeout": urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            "retries": False,
            "ssl_context": ssl.create_default_context(),
        }
        self._pool = urllib3.PoolManager(num_pools=32, **self._options)
        self._proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https", "all")}
        self._via: dict[tuple[str, str], urllib3.PoolManager] = {}
        """(scheme, host) -> the manager its calls go through (direct or one proxy's)."""
        self._proxy_managers: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def _manager_for(self, url: str) -> urllib3.PoolManager:
        if not self._proxies:
            return self._pool
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        manager = self._via.get(key)
        if manager is None:
            proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
            if not proxy or urllib.request.proxy_bypass(key[1]):
                manager = self._pool
            else:
                with self._lock:
                    if proxy not in self._proxy_managers:
                        self._proxy_managers[proxy] = urllib3.ProxyManager(proxy, **self._options)
                    manager = self._proxy_managers[proxy]
            self._via[key] = manager
        return manager

    def post(
        self, url: str, body: dict[str, Any], *, api_key: str | None, batch_id: str, custom_id: str
    ) -> UpstreamAnswer | UpstreamFailure:
        headers = {
            BATCH_ID_HEADER: batch_id,
            CUSTOM_ID_HEADER: _header_safe(custom_id),
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        try:
            response = self._manager_for(url).request(
                "POST", url, body=json.dumps(body).encode(), headers=headers, redirect=False
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # no answer: refused, unresolvable, timeout, TLS, ...
            return _failure(exc, url, api_key)
        data = response.data
        try:
            parsed: Any = json.loads(data)
        except ValueError:
            parsed = data.decode("utf-8", "replace")[:4000]
        if not 200 <= response.status < 300:
            # An error body goes into the user's error line: OpenAI's 401 quotes parts of the key.
            parsed = redact_json(parsed, (api_key,))
        # One value per name, repeated headers joined with ", " (as httpx and the HTTP spec do).
        return UpstreamAnswer(response.status, parsed, {k.lower(): response.headers[k] for k in response.headers})

    def close(self) -> None:
        for manager in [self._pool, *self._proxy_managers.values()]:
            manager.clear()


#: (exception class, error code, message) for a call without an answer, the first match wins (urllib3 makes
#: NewConnectionError a ConnectTimeoutError, and NameResolutionError a NewConnectionError). The message goes
#: into tenants' error files, so it names the kind of failure only: urllib3's own text holds the upstream's host
#: name, port and address (internal names, for a self-hosted upstream), which goes to the worker's log instead.
_FAILURE_CLASSES: tuple[tuple[type[BaseException], str, str], ...] = (
    (urllib3.exceptions.NameResolutionError, "upstream_unreachable", "Could not resolve the upstream's host name."),
    (urllib3.exceptions.NewConnectionError, "upstream_unreachable", "Could not connect to the upstream."),
    (urllib3.exceptions.ConnectTimeoutError, "upstream_timeout", "The upstream did not accept the connection in time."),
    (urllib3.exceptions.TimeoutError, "upstream_timeout", "The upstream did not answer in time."),
    (urllib3.exceptions.SSLError, "upstream_unreachable", "Could not reach the upstream: the TLS handshake failed."),
    (urllib3.exceptions.ProxyError, "upstream_unreachable", "Could not reach the upstream through the proxy."),
    (urllib3.exceptions.ProtocolError, "upstream_unreachable", "The connection to the upstream broke mid-answer."),
)  # fmt: skip


def _failure(exc: BaseException, url: str, api_key: str | None) -> UpstreamFailure:
    """A generic failure for the error line; the details (host, urllib3's text) go to the worker's log."""
    host = urlsplit(url).netloc
    log.warning("upstream call to %s failed: %s: %s", host, type(exc).__name__, redact(str(exc)[:500], (api_key,)))
    for kind, code, message in _FAILURE_CLASSES:
        if isinstance(exc, kind):
            return UpstreamFailure(code, message)
    return UpstreamFailure("upstream_unreachable", "Could not reach the upstream.")


def _header_safe(value: str) -> str:
    """custom_ids may hold any characters; headers may not. Percent-encode what does not fit."""
    if value.isascii() and value.isprintable():
        return value
    from urllib.parse import quote

    return quote(value, safe="")
