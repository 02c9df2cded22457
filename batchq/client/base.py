"""What both clients share: their arguments, how those resolve, and what a client is built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from batchq.client.connection import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    Connection,
    default_headers,
    resolve_api_key,
    resolve_base_url,
    to_timeout,
)

TransportT = TypeVar("TransportT")
HTTPClientT = TypeVar("HTTPClientT")
SleepT = TypeVar("SleepT")


@dataclass(frozen=True, slots=True)
class ClientSetup(Generic[TransportT, HTTPClientT, SleepT]):
    """A client's resolved arguments, from which it makes its runner."""

    conn: Connection
    timeout: httpx.Timeout
    transport: TransportT | None
    http_client: HTTPClientT | None
    sleep: SleepT | None


class BaseClient(Generic[TransportT, HTTPClientT, SleepT]):
    """A client of a batchq server; :class:`batchq.Client` documents the arguments."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: TransportT | None = None,
        http_client: HTTPClientT | None = None,
        sleep: SleepT | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        conn = Connection(self.base_url, default_headers(self.api_key), max_retries)
        self._connect(ClientSetup(conn, to_timeout(timeout), transport, http_client, sleep))

    def _connect(self, setup: ClientSetup[TransportT, HTTPClientT, SleepT]) -> None:
        """Make the runner and the ``files`` and ``batches`` resources."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"
