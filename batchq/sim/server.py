"""The simulator's state and request handling on aiohttp.web (``app`` wires the routes).

A request to one of the API endpoints goes through, in order: counting (``received``, the sliding windows
of arrivals, ``per_key``), auth (401), RPM and RPS (429), body (400/404; with the engine on, also its ``priority``),
fail rules, one random draw that picks at most one fault (drop, stall, 429, 5xx, by their fractions), TPM (429),
the engine (``engine``: wait for a slot or be shed, then hold it for the latency), and finally the 200 answer.
Latency delays every answer except 401, 429 and shed ones; error answers wait it without taking a slot. With
``engine_slots`` 0 (the default) the engine is off: no queue, every request sleeps its latency at once, as before.
Everything runs on one event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import re
import secrets
import time
from collections import Counter, deque
from typing import Any

from aiohttp import web

from batchq.sim.engine import POLICIES, SHED_STATUSES, Engine, request_priority, shed_reply
from batchq.sim.engine_stats import BATCH, INTERACTIVE
from batchq.sim.metrics import FLAVORS
from batchq.sim.more_payloads import build_response, validate  # every endpoint; chat/embeddings/completions in payloads
from batchq.sim.payloads import EMBEDDING_DIM, JSONDict, Reply, default_error, error_body, rate_limited
from batchq.sim.users import InteractiveUsers

#: Length of the sliding rate-limit window; only tests shorten it.
DEFAULT_WINDOW_S = 60.0
#: Length of the window the per-second limit (``rps``) counts over: an upstream that quantizes its limit.
RPS_WINDOW_S = 1.0
#: How long a "timeout" fault holds the request before answering.
DEFAULT_STALL_S = 3600.0
#: Completion tokens a fake answer uses, before max_tokens caps it.
DEFAULT_COMPLETION_TOKENS = 16
#: Model listed by ``GET /v1/models`` when no models are configured (any model is served then).
DEFAULT_MODEL = "batchq-sim"
#: Settings ``POST /sim/config`` may change (also command-line flags), with the type each one is coerced to.
TUNABLES: dict[str, type] = {
    "latency_ms": float, "latency_jitter_ms": float, "rpm": int, "rps": int, "tpm": int, "error_rate": float,
    "rate_429": float, "timeout_rate": float, "drop_rate": float, "stall_s": float, "completion_tokens": int,
    "window_s": float, "engine_slots": int, "max_queue": int, "shed_status": int, "interactive_rps": float,
    "embedding_dims": int,
}  # fmt: skip
#: Tunables that are fractions of requests, so within [0, 1].
FRACTIONS = frozenset({"error_rate", "rate_429", "timeout_rate", "drop_rate"})
#: Tunables whose smallest value is not 0 (``max_queue`` -1 is no limit).
MINIMUMS = {"max_queue": -1, "embedding_dims": 1}
#: Tunables limited to a few values.
CHOICES = {"shed_status": SHED_STATUSES}
#: Header that makes an HTTP request one of the interactive users' (``x-sim-class: interactive``).
CLASS_HEADER = "x-sim-class"


def check_tunables(values: dict[str, Any]) -> dict[str, Any]:
    """Validate and coerce tunable settings.

    Raises:
        ValueError: an unknown name, a non-number, a negative value or a fraction above 1.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = TUNABLES.get(name)
        if kind is None:
            raise ValueError(f"unknown setting: {name}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a number")
        if kind is int and value != int(value):
            raise ValueError(f"{name} must be an integer")
        if value < MINIMUMS.get(name, 0) or (name in FRACTIONS and value > 1):
            raise ValueError(f"{name} out of range: {value}")
        if name in CHOICES and value not in CHOICES[name]:
            raise ValueError(f"{name} must be one of {sorted(CHOICES[name])}")
        out[name] = kind(value)
    return out


@dataclasses.dataclass
class SimConfig:
    """Behaviour of the simulator; the command line gives the initial one, ``/sim/config`` edits a copy."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    rpm: int = 0
    rps: int = 0
    """Requests in any one second (0 = no limit): 1,200 RPM enforced as 25 a second is ``rpm=1200, rps=25``."""
    tpm: int = 0
    error_rate: float = 0.0
    rate_429: float = 0.0
    timeout_rate: float = 0.0
    drop_rate: float = 0.0
    stall_s: float = DEFAULT_STALL_S
    completion_tokens: int = DEFAULT_COMPLETION_TOKENS
    window_s: float = DEFAULT_WINDOW_S
    engine_slots: int = 0
    """Requests served at once (0 = the engine is off: no queue, no limit)."""
    max_queue: int = -1
    """Requests that may wait for a slot; one more is shed with ``shed_status`` (-1 = no limit)."""
    shed_status: int = 503
    interactive_rps: float = 0.0
    """Poisson arrivals a second of the simulator's own interactive users (0 = none)."""
    embedding_dims: int = EMBEDDING_DIM
    scheduling_policy: str = "fcfs"
    """``fcfs`` or ``priority`` (by the body's ``priority``, lower first, then arrival); fixed at start."""
    metrics_flavor: str = "vllm"
    """Names of the ``/metrics`` gauges: ``vllm``, ``sglang`` or ``tgi``; fixed at start."""
    models: frozenset[str] = frozenset()
    api_key: str | None = None
    seed: int | None = None


@dataclasses.dataclass
class FailRule:
    """The first ``times`` requests of each key whose custom id matches ``pattern`` get ``status`` (-1 = always)."""

    pattern: re.Pattern[str]
    status: int = 500
    times: int = -1
    body: JSONDict | None = None
    action: str = "status"
    """``status`` answers ``status``; ``drop`` closes the connection; ``stall`` stalls for ``stall_s`` first."""
    hits: Counter[str] = dataclasses.field(default_factory=Counter)

    @classmethod
    def parse(cls, raw: Any) -> FailRule:
        """Validate one rule of ``POST /sim/config``.

        Raises:
            ValueError: the rule is malformed or its regex does not compile.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("match", ""), str):
            raise ValueError("each fail rule must be an object with a string 'match'")
        status, times, body, action = raw.get("status", 500), raw.get("times", -1), raw.get("body"), raw.get("action")
        if not isinstance(status, int) or not 100 <= status <= 599 or not isinstance(times, int):
            raise ValueError("fail rule 'status' must be an HTTP status and 'times' an integer")
        if (body is not None and not isinstance(body, dict)) or action not in (None, "status", "drop", "stall"):
            raise ValueError("fail rule 'body' must be an object and 'action' one of status, drop, stall")
        try:
            pattern = re.compile(raw.get("match", ""))
        except re.error as exc:
            raise ValueError(f"fail rule 'match' is not a valid regex: {exc}") from None
        return cls(pattern, status, times, body, action or "status")


class SlidingWindow:
    """Weighted events of the last ``window_s`` seconds, with their running total."""

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def prune(self, now: float, window_s: float) -> int:
        """Forget events at or before ``now - window_s``; return the remaining total."""
        events, horizon = self.events, now - window_s
        while events and events[0][0] <= horizon:
            self.total -= events.popleft()[1]
        return self.total

    def add(self, now: float, weight: int) -> int:
        """Record an event (after ``prune``); return the new total."""
        self.events.append((now, weight))
        self.total += weight
        return self.total

    def wait_s(self, now: float, window_s: float, shed: int) -> float:
        """Seconds until events worth at least ``shed`` have left the window (a whole window if never)."""
        for t, weight in self.events:
            shed -= weight
            if shed <= 0:
                return max(0.0, t + window_s - now)
        return window_s


@dataclasses.dataclass
class SimStats:
    """Counters behind ``GET /sim/stats``."""

    received: int = 0
    by_status: Counter[int] = dataclasses.field(default_factory=Counter)
    dropped: int = 0
    stalled: int = 0
    max_in_window: int = 0
    max_in_second: int = 0
    max_tokens_in_window: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    first_at: float | None = None
    last_at: float | None = None
    per_key: Counter[str] = dataclasses.field(default_factory=Counter)
    per_key_status: dict[str, list[int]] = dataclasses.field(default_factory=dict)


class Simulator:
    """State and request handling of one simulator process."""

    def __init__(self, config: SimConfig) -> None:
        if config.scheduling_policy not in POLICIES or config.metrics_flavor not in FLAVORS:
            raise ValueError(f"scheduling_policy must be one of {POLICIES}, metrics_flavor one of {tuple(FLAVORS)}")
        self.base = config
        self.stats = SimStats()
        self.engine = Engine(policy=config.scheduling_policy)
        self.users = InteractiveUsers(self.engine, lambda: self.config.interactive_rps, self._service_s, config.seed)
        self.reset()

    def reset(self) -> None:
        """Clear every counter and restore the initial configuration (and random sequence)."""
        in_flight = self.stats.in_flight  # a gauge, not a counter: those requests are still being handled
        self.config = dataclasses.replace(self.base)
        self.rules: list[FailRule] = []
        self.stats = SimStats(in_flight=in_flight, max_in_flight=in_flight)
        self.requests = SlidingWindow()
        self.second = SlidingWindow()  # arrivals of the last RPS_WINDOW_S, for the per-second limit
        self.tokens = SlidingWindow()
        self.rng = random.Random(self.base.seed)
        self.jitter_rng = random.Random(self.base.seed)  # separate, so latency settings don't shift fault draws
        self.engine.reset()
        self._configured()

    def _configured(self) -> None:
        """Hand the run-time settings to the engine and the users."""
        self.engine.configure(self.config.engine_slots, self.config.max_queue)
        self.users.changed.set()

    def configure(self, data: Any) -> None:
        """Apply a ``POST /sim/config`` body: tunables by name, and ``fail_rules`` (replacing the current ones).

        Raises:
            ValueError: unknown field or bad value; nothing is changed then.
        """
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        changes = check_tunables({k: v for k, v in data.items() if k != "fail_rules"})
        rules = data.get("fail_rules", self.rules)
        if not isinstance(rules, list):
            raise ValueError("fail_rules must be a list")
        parsed = [r if isinstance(r, FailRule) else FailRule.parse(r) for r in rules]
        self.config, self.rules = dataclasses.replace(self.config, **changes), parsed
        self._configured()

    def settings(self) -> JSONDict:
        """The present settings (the ``config`` of the stats, and the answer to ``POST /sim/config``)."""
        cfg = self.config
        return {**{k: getattr(cfg, k) for k in TUNABLES}, "models": sorted(cfg.models), "fail_rules": len(self.rules),
                "scheduling_policy": cfg.scheduling_policy, "metrics_flavor": cfg.metrics_flavor}  # fmt: skip

    def snapshot(
        self, detail: bool, since: float | None = None, until: float | None = None, series: bool = False
    ) -> JSONDict:
        """The ``GET /sim/stats`` document; the engine section covers requests that arrived in ``[since, until)``."""
        st, cfg = self.stats, self.config
        out: JSONDict = {
            "received": st.received, "by_status": {str(k): v for k, v in sorted(st.by_status.items())},
            "dropped": st.dropped, "stalled": st.stalled, "max_in_window": st.max_in_window,
            "max_in_second": st.max_in_second,
            "max_tokens_in_window": st.max_tokens_in_window, "in_flight": st.in_flight,
            "max_in_flight": st.max_in_flight, "first_at": st.first_at, "last_at": st.last_at,
            "latency_ms": cfg.latency_ms, "config": self.settings(),
        }  # fmt: skip
        running, waiting, _, _ = self.engine.gauges()
        out["engine"] = {
            "slots": cfg.engine_slots, "max_queue": cfg.max_queue, "scheduling_policy": cfg.scheduling_policy,
            "interactive_rps": cfg.interactive_rps, "running": running, "waiting": waiting,
            **self.engine.record.summary(since, until, series),
        }  # fmt: skip
        if detail:
            out["per_key"] = dict(st.per_key)
            out["per_key_status"] = st.per_key_status
        return out

    async def handle(self, request: web.Request, kind: str) -> web.StreamResponse:
        """Count one API request, decide its fate and answer it (or drop its connection)."""
        st, now = self.stats, time.monotonic()
        st.received += 1
        st.last_at = time.time()
        if st.first_at is None:
            st.first_at = st.last_at
        # Every arrival enters the window, so max_in_window is exact: the busiest window ends on an arrival.
        self.requests.prune(now, self.config.window_s)
        in_window = self.requests.add(now, 1)
        st.max_in_window = max(st.max_in_window, in_window)
        self.second.prune(now, RPS_WINDOW_S)
        st.max_in_second = max(st.max_in_second, self.second.add(now, 1))
        custom_id = request.headers.get("X-Batchq-Custom-Id")
        key: str | None = None
        if custom_id is not None:
            batch_id = request.headers.get("X-Batchq-Batch-Id")
            key = f"{batch_id}/{custom_id}" if batch_id else custom_id
            st.per_key[key] += 1
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        body: JSONDict | None
        headers: dict[str, str] = {}
        try:
            status, body = 200, await self._answer(request, kind, now, in_window, custom_id or "", key or "")
        except Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
        finally:
            st.in_flight -= 1
        if key is not None:
            st.per_key_status.setdefault(key, []).append(status)
        if status == 0:  # drop: close the connection without an answer
            st.dropped += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)  # never sent: the transport is gone
        st.by_status[status] += 1
        headers["x-request-id"] = "req_" + secrets.token_hex(12)
        return web.json_response(body, status=status, headers=headers)

    async def _answer(
        self, request: web.Request, kind: str, now: float, in_window: int, custom_id: str, key: str
    ) -> JSONDict:
        """Everything after counting; returns the 200 body or raises ``Reply``."""
        cfg = self.config
        if cfg.api_key is not None and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
            raise Reply(401, error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
        if cfg.rpm and in_window > cfg.rpm:
            # Rejected requests count too, so a retry is accepted once this one and one more have left the window.
            wait = self.requests.wait_s(now, cfg.window_s, in_window + 1 - cfg.rpm)
            raise rate_limited("requests", f"requests per min (RPM): Limit {cfg.rpm}", wait)
        in_second = self.second.total
        if cfg.rps and in_second > cfg.rps:
            # As for RPM, rejected requests count: the retry fits once enough arrivals have left the second.
            wait = self.second.wait_s(now, RPS_WINDOW_S, in_second + 1 - cfg.rps)
            raise rate_limited("requests", f"requests per second (RPS): Limit {cfg.rps}", wait)
        delay = self._service_s()
        try:
            try:
                body = json.loads(await request.read())
            except ValueError:  # includes UnicodeDecodeError
                raise Reply(400, error_body("We could not parse the JSON body of your request.",
                                            "invalid_request_error", "invalid_json")) from None  # fmt: skip
            prompt, completion = validate(kind, body, cfg.models, cfg.completion_tokens)
            priority = request_priority(body, cfg.scheduling_policy) if cfg.engine_slots else 0
            for rule in self.rules:
                if rule.pattern.search(custom_id) and (rule.times < 0 or rule.hits[key] < rule.times):
                    rule.hits[key] += 1
                    if rule.action == "drop":
                        raise Reply(0)
                    if rule.action == "stall":
                        await self._stall(cfg)
                        break
                    headers = {"Retry-After": "1", "retry-after-ms": "1000"} if rule.status == 429 else None
                    raise Reply(rule.status, rule.body or default_error(rule.status), headers)
            else:
                await self._random_fault(cfg)
        except Reply as reply:
            if reply.status not in (0, 429) and delay > 0:
                await asyncio.sleep(delay)
            raise
        if cfg.tpm:
            tokens, now = prompt + completion, time.monotonic()  # later than arrival if the request stalled
            total = self.tokens.prune(now, cfg.window_s)
            if total + tokens > cfg.tpm:
                wait = self.tokens.wait_s(now, cfg.window_s, total + tokens - cfg.tpm) if tokens <= cfg.tpm else 0.0
                raise rate_limited("tokens", f"tokens per min (TPM): Limit {cfg.tpm}", wait or cfg.window_s)
            self.stats.max_tokens_in_window = max(self.stats.max_tokens_in_window, self.tokens.add(now, tokens))
        interactive = request.headers.get(CLASS_HEADER, "").lower() == INTERACTIVE
        if not await self.engine.serve(INTERACTIVE if interactive else BATCH, priority, delay):
            raise shed_reply(cfg.shed_status, cfg.max_queue)
        return build_response(kind, body, prompt, completion, cfg.embedding_dims)

    def _service_s(self, rng: random.Random | None = None) -> float:
        """The latency of one answer: ``latency_ms`` plus a uniform draw of the jitter (from ``jitter_rng``)."""
        cfg, delay, rng = self.config, self.config.latency_ms / 1000.0, rng or self.jitter_rng
        if cfg.latency_jitter_ms:
            delay = max(0.0, delay + rng.uniform(-cfg.latency_jitter_ms, cfg.latency_jitter_ms) / 1000.0)
        return delay

    async def _random_fault(self, cfg: SimConfig) -> None:
        """One uniform draw picks at most one fault, so each configured fraction holds exactly."""
        if not (cfg.drop_rate or cfg.timeout_rate or cfg.rate_429 or cfg.error_rate):
            return
        draw = self.rng.random()
        for fraction, fault in ((cfg.drop_rate, "drop"), (cfg.timeout_rate, "stall"), (cfg.rate_429, "429")):
            if draw < fraction:
                if fault == "drop":
                    raise Reply(0)
                if fault == "429":
                    raise rate_limited("requests", "requests (injected)", 1.0)
                await self._stall(cfg)
                return
            draw -= fraction
        if draw < cfg.error_rate:
            status = self.rng.choice((500, 502, 503))
            raise Reply(status, default_error(status))

    async def _stall(self, cfg: SimConfig) -> None:
        self.stats.stalled += 1
        await asyncio.sleep(cfg.stall_s)
