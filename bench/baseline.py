"""The baseline: one asyncio process sending the batch's requests straight to the upstream.

In the style of the OpenAI cookbook's ``api_request_parallel_processor.py``: token buckets for requests and
tokens per minute, a cap on concurrent requests, retries on 429 / 408 / 409 / 5xx / connection errors (honouring
``Retry-After``, and pausing every request after a 429 as the cookbook does), answers appended to a JSONL file.
One difference on purpose: the cookbook's buckets hold a full minute of capacity, so at the start it may send a
whole minute's worth at once; here they hold one second's worth, the same burst batchq's limiter allows, so both
sides pace at the limit and "time vs N / limit" compares like with like.

Run by the bench as ``python -m bench.baseline --base-url ... --input F --result R`` so that its RSS and CPU
are measured alone; plain asyncio (no uvloop). ``--client aiohttp`` (the cookbook's client, one session) or
``--client httpx``: one ``httpx.AsyncClient`` per concurrent request (a pool of ``--concurrency`` clients), the
"plain asyncio client with 64 httpx clients" issue 10 compares with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import httpx

from bench.report import percentile

#: Answers worth another attempt (0 = no HTTP answer: timeout or connection error).
RETRYABLE = frozenset({0, 408, 409, 429})
#: First backoff delay and cap, seconds (a Retry-After header wins).
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
#: Completion tokens assumed when a request sets no max_tokens.
DEFAULT_COMPLETION_TOKENS = 256


@dataclass
class BaselineResult:
    """What one baseline run did; ``latencies_ms`` are per HTTP attempt, measured around the aiohttp call."""

    requests: int = 0
    completed: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    http_429: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """CPU time of this process while sending (interpreter start-up excluded)."""
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class Buckets:
    """Request and token buckets refilled continuously at rpm/60 and tpm/60 a second, one second deep."""

    def __init__(self, rpm: int, tpm: int) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.requests = max(rpm / 60, 1.0)
        self.tokens = max(tpm / 60, 1.0)
        self.updated = time.monotonic()
        self.paused_until = 0.0
        self._lock = asyncio.Lock()  # FIFO: requests are granted in the order they asked

    def pause(self, seconds: float) -> None:
        """Hold every request back (after a 429), as the cookbook does."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    async def acquire(self, tokens: int) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                elapsed, self.updated = now - self.updated, now
                wait = 0.0
                if self.rpm:
                    self.requests = min(self.requests + elapsed * self.rpm / 60, max(self.rpm / 60, 1.0))
                    wait = max(wait, (1 - self.requests) * 60 / self.rpm)
                if self.tpm:
                    depth = max(self.tpm / 60, float(tokens))  # a request larger than the bucket still fits once
                    self.tokens = min(self.tokens + elapsed * self.tpm / 60, depth)
                    wait = max(wait, (tokens - self.tokens) * 60 / self.tpm)
                if wait <= 0:
                    self.requests -= 1
                    self.tokens -= tokens
                    return
                await asyncio.sleep(wait)


def estimate_tokens(body: dict[str, Any]) -> int:
    """Prompt characters / 4 plus max_tokens (the cookbook counts with tiktoken; an estimate is enough here)."""
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []) if isinstance(m, dict))
    completion = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_COMPLETION_TOKENS
    return math.ceil(chars / 4) + int(completion)


def retry_delay(attempt: int, headers: Any) -> float:
    """``retry-after-ms`` / ``Retry-After`` when given, else capped exponential backoff with jitter."""
    if headers is not None:
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(name)
            if value is not None:
                try:
                    return max(float(value) * scale, 0.0)
                except ValueError:
                    pass
    base = min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_MAX_S)
    return float(base * (0.5 + random.random() / 2))


#: POST url with a JSON body -> (status, body bytes, headers); status 0 = no HTTP answer.
Post = Callable[[str, dict[str, Any]], Awaitable[tuple[int, bytes, Any]]]


@asynccontextmanager
async def aiohttp_post(concurrency: int, timeout_s: float) -> AsyncIterator[Post]:
    """One aiohttp session with a connector sized to the concurrency, as the cookbook does."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

        async def post(url: str, body: dict[str, Any]) -> tuple[int, bytes, Any]:
            try:
                async with session.post(url, json=body) as response:
                    return response.status, await response.read(), response.headers
            except (aiohttp.ClientError, TimeoutError):
                return 0, b"", None

        yield post


@asynccontextmanager
async def httpx_post(concurrency: int, timeout_s: float) -> AsyncIterator[Post]:
    """``concurrency`` httpx.AsyncClients; each request borrows one, so none is shared by concurrent requests."""
    clients: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    for _ in range(concurrency):
        clients.put_nowait(httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0)))
    try:

        async def post(url: str, body: dict[str, Any]) -> tuple[int, bytes, Any]:
            client = await clients.get()
            try:
                response = await client.post(url, json=body)
                return response.status_code, response.content, response.headers
            except httpx.TransportError:
                return 0, b"", None
            finally:
                clients.put_nowait(client)

        yield post
    finally:
        while not clients.empty():
            await clients.get_nowait().aclose()


CLIENTS = {"aiohttp": aiohttp_post, "httpx": httpx_post}


async def run(
    lines: list[dict[str, Any]],
    base_url: str,
    *,
    rpm: int,
    tpm: int,
    concurrency: int,
    max_attempts: int,
    output: IO[str],
    timeout_s: float = 600.0,
    client: str = "aiohttp",
) -> BaselineResult:
    """Send every line's body to ``base_url`` + its url (without ``/v1``) and wait for all of them."""
    result = BaselineResult(requests=len(lines))
    buckets = Buckets(rpm, tpm)
    slots = asyncio.Semaphore(concurrency)
    async with CLIENTS[client](concurrency, timeout_s) as post:

        async def one(line: dict[str, Any]) -> None:
            body, url = line["body"], base_url + str(line["url"]).removeprefix("/v1")
            tokens = estimate_tokens(body)
            for attempt in range(1, max_attempts + 1):
                async with slots:
                    await buckets.acquire(tokens)
                    started = time.perf_counter()
                    status, data, headers = await post(url, body)
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.attempts += 1
                if status == 200:
                    answer = json.loads(data)
                    output.write(json.dumps({"custom_id": line.get("custom_id"), "response": answer}) + "\n")
                    result.completed += 1
                    return
                retryable = status in RETRYABLE or status >= 500
                if not retryable or attempt == max_attempts:
                    result.failed += 1
                    return
                result.retries += 1
                delay = retry_delay(attempt, headers)
                if status == 429:
                    result.http_429 += 1
                    buckets.pause(delay)
                await asyncio.sleep(delay)

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(line) for line in lines))
        result.wall_s = time.perf_counter() - started
        result.cpu_s = time.process_time() - cpu_started
    result.latency_p50_ms = percentile(result.latencies_ms, 50)
    result.latency_p99_ms = percentile(result.latencies_ms, 99)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n")[0])
    p.add_argument("--base-url", required=True, help="upstream base URL including /v1")
    p.add_argument("--input", required=True, type=Path, help="JSONL in OpenAI batch form")
    p.add_argument("--output", required=True, type=Path, help="JSONL of the answers")
    p.add_argument("--result", required=True, type=Path, help="JSON file of the figures")
    p.add_argument("--rpm", type=int, default=0)
    p.add_argument("--tpm", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-attempts", type=int, default=6)
    p.add_argument("--client", choices=sorted(CLIENTS), default="aiohttp")
    args = p.parse_args(argv)
    lines = [json.loads(raw) for raw in args.input.read_text().splitlines() if raw.strip()]
    with args.output.open("w") as output:
        result = asyncio.run(
            run(
                lines,
                args.base_url.rstrip("/"),
                rpm=args.rpm,
                tpm=args.tpm,
                concurrency=args.concurrency,
                max_attempts=args.max_attempts,
                output=output,
                client=args.client,
            )
        )
    args.result.write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
