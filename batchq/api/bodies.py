"""Request bodies read with a cap while they stream: the declared Content-Length is a hint, never trusted.

A refused body is drained (read and thrown away, up to ``DRAIN_LIMIT_B``) before the answer goes out: a server
that answers and closes while the client is still sending makes the client's kernel see a reset, and the
client then reports a broken connection instead of our 413.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from batchq.api.deps import ServicesDep
from batchq.api.errors import PayloadTooLargeProblem

#: Most bytes of a refused body read and discarded so the client sees our answer; past it the connection closes.
DRAIN_LIMIT_B = 64 * 1024 * 1024
#: Longest time spent draining a refused body.
DRAIN_LIMIT_S = 10.0


async def read_capped(request: Request, limit: int, what: str, setting: str) -> bytes:
    """The whole body, or PayloadTooLargeProblem as soon as it passes ``limit`` bytes.

    Raises:
        PayloadTooLargeProblem: the body (declared or actual) is larger than ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        await drain(request)
        raise too_large(limit, what, setting)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            del body[:]
            await drain(request)
            raise too_large(limit, what, setting)
    return bytes(body)


async def drain(request: Request) -> None:
    """Read and discard what is left of the body, within ``DRAIN_LIMIT_B`` and ``DRAIN_LIMIT_S``."""
    seen, deadline = 0, time.monotonic() + DRAIN_LIMIT_S
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_LIMIT_B or time.monotonic() > deadline:
                return
    except Exception:  # noqa: BLE001 - the client went away or the stream was consumed: nothing left to drain
        return


def too_large(limit: int, what: str, setting: str) -> PayloadTooLargeProblem:
    return PayloadTooLargeProblem(
        f"{what} is too large: the limit is {limit} bytes ({setting}).", code="request_too_large"
    )


async def create_body(request: Request, services: ServicesDep) -> bytes:
    """The ``POST /v1/batches`` body, at most BATCHQ_MAX_CREATE_BODY_BYTES (read on the event loop, not a thread)."""
    limit = services.settings.max_create_body_bytes
    return await read_capped(request, limit, "The request body", "BATCHQ_MAX_CREATE_BODY_BYTES")


CreateBodyDep = Annotated[bytes, Depends(create_body)]
