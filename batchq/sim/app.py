"""The simulator's aiohttp application: the API endpoints, ``/metrics``, the ``/sim`` control endpoints, and the
background tasks (the gauges' time series, the interactive users) that live as long as the app.

``GET /sim/stats`` takes ``detail=1`` (per-key counts), ``series=1`` (the gauges' time series), and a window for its
``engine`` section: ``since_mark`` / ``until_mark`` (numbers ``POST /sim/engine/mark`` returned) or ``since`` /
``until`` (unix seconds); by default everything since the last ``/sim/reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from batchq.sim import metrics
from batchq.sim.payloads import error_body
from batchq.sim.server import DEFAULT_MODEL, SimConfig, Simulator

#: Where ``create_app`` keeps its ``Simulator`` (for in-process use).
SIMULATOR: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") not in ("", "0", "false")


def stats_window(sim: Simulator, query: dict[str, str]) -> tuple[float | None, float | None]:
    """The ``[since, until)`` of a stats query, from marks or unix times (None: open).

    Raises:
        ValueError: a mark that does not exist or a value that is not a number.
    """
    bounds: list[float | None] = []
    for end in ("since", "until"):
        mark, at = query.get(f"{end}_mark"), query.get(end)
        if mark is not None:
            bounds.append(sim.engine.record.at_mark(int(mark)))
        elif at is not None and math.isfinite(float(at)):
            bounds.append(float(at))
        elif at is not None:
            raise ValueError(f"{end} must be a finite number")
        else:
            bounds.append(None)
    return bounds[0], bounds[1]


def _bad_value(exc: ValueError) -> web.Response:
    return web.json_response(error_body(str(exc), "invalid_request_error", "invalid_value"), status=400)


def create_app(config: SimConfig) -> web.Application:
    """Build the aiohttp application serving the simulated API and the ``/sim`` control endpoints."""
    sim = Simulator(config)
    app = web.Application()
    app[SIMULATOR] = sim

    def endpoint(kind: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await sim.handle(request, kind)

        return handler

    async def models(request: web.Request) -> web.Response:
        names = sorted(sim.config.models) or [DEFAULT_MODEL]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "batchq-sim"} for n in names]
        return web.json_response({"object": "list", "data": data})

    async def stats(request: web.Request) -> web.Response:
        try:
            since, until = stats_window(sim, dict(request.query))
        except ValueError as exc:
            return _bad_value(exc)
        return web.json_response(sim.snapshot(_flag(request, "detail"), since, until, _flag(request, "series")))

    async def reset(request: web.Request) -> web.Response:
        sim.reset()
        return web.json_response({"ok": True})

    async def configure(request: web.Request) -> web.Response:
        try:
            sim.configure(json.loads(await request.read()))
        except ValueError as exc:  # bad JSON or a bad value
            return _bad_value(exc)
        return web.json_response(sim.settings())

    async def mark(request: web.Request) -> web.Response:
        return web.json_response(sim.engine.record.mark())

    async def prometheus(request: web.Request) -> web.Response:
        running, waiting, _, _ = sim.engine.gauges()
        model = min(sim.config.models, default=DEFAULT_MODEL)  # one engine, one model name (as vLLM serves one)
        text = metrics.render(sim.config.metrics_flavor, model, running, waiting, sim.engine.shed_total)
        return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_post("/v1/chat/completions", endpoint("chat"))
    app.router.add_post("/v1/embeddings", endpoint("embeddings"))
    app.router.add_post("/v1/completions", endpoint("completions"))
    app.router.add_post("/v1/responses", endpoint("responses"))  # batchq/sim/more_payloads.py
    app.router.add_post("/v1/moderations", endpoint("moderations"))
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/sim/stats", stats)
    app.router.add_post("/sim/reset", reset)
    app.router.add_post("/sim/config", configure)
    app.router.add_post("/sim/engine/mark", mark)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_background(sim))
    return app


def _background(sim: Simulator) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's background tasks, started with it and cancelled at shutdown."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(sim.engine.sample_forever()), asyncio.create_task(sim.users.run())]
        yield
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks)

    return run
