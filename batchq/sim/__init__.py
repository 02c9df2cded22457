"""``batchq sim``: an OpenAI-compatible upstream simulator for demos, tests and benchmarks.

It answers ``POST /v1/chat/completions``, ``/v1/embeddings`` and ``/v1/completions`` with well-formed,
deterministic OpenAI responses (and ``GET /v1/models``), and misbehaves on request the way real providers do:
it enforces RPM and TPM limits over a sliding window, and optionally requests per second (``--rps``, as an
upstream that quantizes its limit does), with 429 + ``Retry-After`` and ``retry-after-ms``; it injects 5xx
answers, spurious 429s, stalls (the client times out) and dropped connections, and fails chosen request
lines deterministically through ``fail_rules`` matched against the ``X-Batchq-Custom-Id`` header the workers send.

With ``--engine-slots N`` it models an inference engine (vLLM, SGLang, TGI) instead of answering everything after
``--latency-ms`` at once: N requests are served at a time, each for the latency; the others wait in a queue, in
arrival order or, with ``--scheduling-policy priority``, by the body's ``priority`` (lower first, as vLLM); with
``--max-queue`` a request that finds the queue full is shed (``--shed-status``, 503 by default, no Retry-After).
``GET /metrics`` shows the engine's running and waiting gauges under vLLM's, SGLang's or TGI's names
(``--metrics-flavor``). ``--interactive-rps`` adds the simulator's own interactive users: Poisson arrivals that go
through the same queue without HTTP (an HTTP request joins them with ``x-sim-class: interactive``), so a benchmark
can see what a batch does to the users' latency.

It also counts what it received, so tests can check what the workers did: ``GET /sim/stats`` reports totals and
the largest number of requests seen in any window and in any second (proof that a rate limit held), and with
``?detail=1`` how many times each request line arrived; its ``engine`` section gives per-class counts, latency and
queue-wait percentiles, shed answers and peaks over a window (``POST /sim/engine/mark`` sets its bounds) and, with
``?series=1``, the gauges every 100 ms. ``POST /sim/reset`` clears the counters and restores the command-line
settings; ``POST /sim/config`` changes faults, limits, the engine and the users at run time. ``GET /healthz``
answers 200.

Modules: ``payloads`` and ``more_payloads`` (validation and fake OpenAI bodies), ``server`` (state, fault logic),
``engine`` (slots and queue), ``engine_stats`` (what the engine records), ``users`` (the interactive users),
``metrics`` (``/metrics``), ``app`` (the aiohttp app and its background tasks).
Built on aiohttp.web on one event loop (uvloop when installed): several thousand requests per second on two
cores, and it can close a connection without answering. Nothing is logged per request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from aiohttp import web

from batchq.sim.app import create_app
from batchq.sim.engine import POLICIES
from batchq.sim.metrics import FLAVORS
from batchq.sim.payloads import EMBEDDING_DIM
from batchq.sim.server import (
    DEFAULT_COMPLETION_TOKENS,
    DEFAULT_STALL_S,
    DEFAULT_WINDOW_S,
    TUNABLES,
    SimConfig,
    Simulator,
    check_tunables,
)

__all__ = ["SimConfig", "Simulator", "create_app", "main", "parse_args"]

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the ``batchq sim`` command line (``argv`` excludes ``sim`` itself).

    Raises:
        SystemExit: bad arguments (status 2, after argparse printed the usage).
    """
    p = argparse.ArgumentParser(prog="batchq sim", description="OpenAI-compatible upstream simulator.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay of every answer but 401/429")
    p.add_argument("--latency-jitter-ms", type=float, default=0.0, help="uniform +/- jitter on the latency")
    p.add_argument("--rpm", type=int, default=0, help="requests per minute, all received ones count (0 = no limit)")
    p.add_argument("--rps", type=int, default=0, help="requests in any one second, all received count (0 = no limit)")
    p.add_argument("--tpm", type=int, default=0, help="tokens per minute of accepted requests (0 = no limit)")
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500/502/503")
    p.add_argument("--rate-429", type=float, default=0.0, help="fraction answered 429 regardless of limits")
    p.add_argument("--timeout-rate", type=float, default=0.0, help="fraction that stall --stall-s before answering")
    p.add_argument("--drop-rate", type=float, default=0.0, help="fraction whose connection is closed unanswered")
    p.add_argument("--stall-s", type=float, default=DEFAULT_STALL_S, help="length of a stall")
    p.add_argument("--models", default="", help="comma-separated served models (unset = any model)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")
    p.add_argument("--seed", type=int, default=None, help="random seed for fault decisions")
    p.add_argument("--completion-tokens", type=int, default=DEFAULT_COMPLETION_TOKENS, help="tokens per answer")
    p.add_argument("--window-s", type=float, default=DEFAULT_WINDOW_S, help="rate-limit window (tests shorten it)")
    p.add_argument("--embedding-dims", type=int, default=EMBEDDING_DIM, help="floats per embedding (1,536: ~30 KB)")
    _add_engine_args(p)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    try:
        args.tunables = check_tunables({name: getattr(args, name) for name in TUNABLES})
    except ValueError as exc:
        p.error(str(exc))  # exits with status 2, like any bad argument
    return args


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine model (off unless --engine-slots > 0)")
    g.add_argument("--engine-slots", type=int, default=0, help="requests served at once; the rest wait (0 = off)")
    g.add_argument("--scheduling-policy", choices=POLICIES, default="fcfs",
                   help="queue order; priority: the body's priority, lower first (vLLM); fcfs refuses a non-zero one")
    g.add_argument("--max-queue", type=int, default=-1, help="requests that may wait; one more is shed (-1 = no limit)")
    g.add_argument("--shed-status", type=int, default=503, help="status of a shed request: 503, 429 or 529")
    g.add_argument("--metrics-flavor", choices=tuple(FLAVORS), default="vllm", help="gauge names on GET /metrics")
    g.add_argument("--interactive-rps", type=float, default=0.0,
                   help="the simulator's own interactive users: Poisson arrivals a second")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted.

    Args:
        argv: the arguments after ``batchq sim``; ``None`` reads ``sys.argv``.

    Returns:
        The process exit status.
    """
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    models = frozenset(m.strip() for m in args.models.split(",") if m.strip())
    config = SimConfig(
        **args.tunables, models=models, api_key=args.api_key, seed=args.seed,
        scheduling_policy=args.scheduling_policy, metrics_flavor=args.metrics_flavor,
    )  # fmt: skip
    try:
        import uvloop  # optional, comes with uvicorn[standard]: about 10-15 % more requests per second

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    logger.info("batchq sim serving http://%s:%d/v1", args.host, args.port)
    web.run_app(
        create_app(config), host=args.host, port=args.port, loop=loop, print=None,
        access_log=None,  # no per-request logging
        handler_cancellation=True,  # a client that hangs up ends its (stalled) request, so in_flight stays true
        shutdown_timeout=1.0,
    )  # fmt: skip
    return 0
