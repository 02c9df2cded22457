"""The SDK: a client of the batchq HTTP API, sync (:class:`Client`) and async (:class:`AsyncClient`).

Rooms: the operations (:mod:`~batchq.client.file_ops`, :mod:`~batchq.client.batch_ops`) are written once as
generators of effects (:mod:`~batchq.client.effects`): requests with retries by the one policy of
:mod:`batchq.retry` (:mod:`~batchq.client.retrying`), body chunks, sleeps. :mod:`~batchq.client.resources` declares
``files`` and ``batches`` of them; :mod:`~batchq.client.sync_client` and :mod:`~batchq.client.async_client` only
perform the effects. Errors are in :mod:`~batchq.client.exceptions`, the progress display in
:mod:`~batchq.client.display`. This package imports only the wire schemas and the retry policy of batchq.
"""

from __future__ import annotations

from batchq.client.async_client import AsyncBatches, AsyncClient, AsyncFiles
from batchq.client.sync_client import Batches, Client, Files

__all__ = ["AsyncBatches", "AsyncClient", "AsyncFiles", "Batches", "Client", "Files"]
