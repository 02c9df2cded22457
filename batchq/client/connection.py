"""Where the client connects and how it authenticates: the server root, the API key, headers and timeouts."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

#: Server root used when neither ``base_url`` nor ``BATCHQ_URL`` is given.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: Retries after the first attempt (so 3 attempts in all).
DEFAULT_MAX_RETRIES = 2
#: Per-request timeout: long, because uploads and result downloads may be large.
DEFAULT_TIMEOUT_S = 600.0
#: Time allowed to establish a connection.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: Sent as User-Agent on every request.
USER_AGENT = "batchq-python/0.1.0"


@dataclass(frozen=True, slots=True)
class Connection:
    """What every operation needs to address the server.

    Attributes:
        base_url: Server root (resolved, without ``/v1``).
        headers: Sent on every request (User-Agent, Accept, Authorization).
        max_retries: Retries after the first attempt.
    """

    base_url: str
    headers: dict[str, str]
    max_retries: int


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


def to_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(timeout, DEFAULT_CONNECT_TIMEOUT_S))
