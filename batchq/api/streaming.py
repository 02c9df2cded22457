"""Streamed answers that never end as a silently short body.

The first chunk is read before the 200 goes out, so a missing object is a 404 and an outage a 503 envelope.
A failure after that re-raises: uvicorn then closes the connection without finishing the body (no final
chunk, fewer bytes than Content-Length), and the client sees a broken transfer, not a complete-looking file.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

log = logging.getLogger("batchq.api")


def primed_stream(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """``chunks`` with its first item already read (errors raise here, before any byte is sent)."""
    first = next(chunks, None)
    head = [first] if first is not None else []
    return _aborting(itertools.chain(head, chunks), what)


def _aborting(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    try:
        yield from chunks
    except Exception:
        log.warning("streaming %s failed midway; aborting the connection", what, exc_info=True)
        raise
